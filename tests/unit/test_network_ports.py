"""conch.network.ports (host port reservations, real sockets on 127.0.0.x) and
conch.network.firewall_state (parsing libnftables JSON, pure)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from conch.errors import Conflict, InvalidArgument
from conch.network.firewall_state import parse_listing
from conch.network.ports import PortReservation


@pytest.fixture
def ports():
    p = PortReservation()
    yield p
    p.close()


def test_port_zero_picks_a_free_port_and_holds_it(ports):
    port = ports.reserve(proto="tcp", host_ip="127.0.0.51", host_port=0)
    assert 1024 <= port <= 65535
    with socket.socket() as other, pytest.raises(OSError):
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # even with reuse
        other.bind(("127.0.0.51", port))
    assert ports.reserve(proto="tcp", host_ip="127.0.0.51", host_port=port) == port  # again
    assert ports.held() == [("tcp", "127.0.0.51", port)]
    ports.release(proto="tcp", host_ip="127.0.0.51", host_port=port)
    ports.release(proto="tcp", host_ip="127.0.0.51", host_port=port)  # not held: no-op
    with socket.socket() as other:
        other.bind(("127.0.0.51", port))  # free again


def test_taken_port_is_a_clear_conflict(ports):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.52", 0))
        port = squatter.getsockname()[1]
        with pytest.raises(Conflict, match=rf"0\.0\.0\.0:{port}/udp: port is already allocated"):
            ports.reserve(proto="udp", host_ip="0.0.0.0", host_port=port)
        with pytest.raises(Conflict, match="already allocated"):
            PortReservation().reserve(proto="udp", host_ip="127.0.0.52", host_port=port)
    tcp = ports.reserve(proto="tcp", host_ip="", host_port=0)  # "" means 0.0.0.0
    with pytest.raises(Conflict):
        PortReservation().reserve(proto="tcp", host_ip="127.0.0.53", host_port=tcp)
    assert ports.held() == [("tcp", "0.0.0.0", tcp)]


@pytest.mark.parametrize("kw, match", [
    (dict(proto="icmp", host_ip="0.0.0.0", host_port=80), "protocol"),
    (dict(proto="tcp", host_ip="::1", host_port=80), "IPv4"),
    (dict(proto="tcp", host_ip="0.0.0.0", host_port=70000), "host port"),
    (dict(proto="tcp", host_ip="0.0.0.0", host_port=-1), "host port"),
    (dict(proto="tcp", host_ip="192.0.2.123", host_port=0), "not an address of this host"),
])
def test_bad_arguments(ports, kw, match):
    with pytest.raises(InvalidArgument, match=match):
        ports.reserve(**kw)


def test_parse_listing_reads_networks_and_ports_back():
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "ip", "name": "conch", "handle": 3}},
        {"set": {"name": "bridges", "elem": ["br1", "br2", "stray"]}},
        {"set": {"name": "internal", "elem": ["br2"]}},
        {"set": {"name": "masq", "elem": [{"prefix": {"addr": "10.1.0.0", "len": 16}}]}},
        {"set": {"name": "hairpin", "elem": [
            {"concat": ["br1", {"prefix": {"addr": "10.1.0.0", "len": 16}}]},
            {"concat": ["br2", {"range": ["10.2.0.0", "10.2.0.255"]}]}]}},
        {"map": {"name": "ports_any", "elem": [
            [{"concat": ["tcp", 8080]}, {"concat": ["10.1.0.2", 80]}],
            {"elem": {"val": [{"concat": [17, "53"]}, {"concat": ["10.1.0.3", 53]}]}}]}},
        {"map": {"name": "ports_addr", "elem": [
            [{"concat": ["tcp", "127.0.0.1", 9000]}, {"concat": ["10.1.0.2", "http"]}]]}},
    ]}
    nets, ports = parse_listing(listing)
    assert nets == {
        "br1": {"bridge": "br1", "subnet": ipaddress.IPv4Network("10.1.0.0/16"),
                "internal": False, "masquerade": True},
        "br2": {"bridge": "br2", "subnet": ipaddress.IPv4Network("10.2.0.0/24"),
                "internal": True, "masquerade": False},
    }  # "stray" has no subnet: skipped
    assert ports == [
        {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 9000,
         "container_ip": "10.1.0.2", "container_port": 80},
        {"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080,
         "container_ip": "10.1.0.2", "container_port": 80},
        {"proto": "udp", "host_ip": "0.0.0.0", "host_port": 53,
         "container_ip": "10.1.0.3", "container_port": 53},
    ]
    assert parse_listing({"nftables": []}) == ({}, [])
