"""Pure parts of conch.engine.network.records and conch.engine.network.sandbox: filters,
``until`` parsing, port requests, exposed keys, /etc/hosts and resolv.conf text, and the
``--network container:`` conflicts. No kernel, no root."""

from __future__ import annotations

import types

import pytest

from conch.engine.network import sandbox
from conch.engine.network.records import Network, created_before, matches, parse_until
from conch.errors import InvalidArgument


def _net(**kw) -> Network:
    base = dict(id="ab" * 32, name="minha-rede", driver="bridge", created="2026-01-02T03:04:05.123456789Z",
                labels={"time": "azul"})
    return Network(**{**base, **kw})


@pytest.mark.parametrize("filters, hit", [
    ({"name": ["rede"]}, True), ({"name": ["outra"]}, False), ({"id": ["abab"]}, True),
    ({"driver": ["bridge"]}, True), ({"type": ["custom"]}, True), ({"type": ["builtin"]}, False),
    ({"label": ["time"]}, True), ({"label": ["time=verde"]}, False),
    ({"label!": ["time=azul"]}, False), ({"label!": ["time=verde"]}, True),
])
def test_matches(filters, hit):
    assert matches(_net(), filters, dangling=False) is hit


def test_parse_until_forms():
    now = 1_800_000_000.0
    assert parse_until("1700000000", now) == 1_700_000_000.0
    assert parse_until("1h30m", now) == now - 5400
    assert parse_until("2026-01-02T03:04:05Z", now) == pytest.approx(1767323045.0)
    with pytest.raises(InvalidArgument, match="until"):
        parse_until("ontem", now)


def test_created_before():
    net = _net()
    assert created_before(net, parse_until("2026-01-02T03:04:06Z", 0))
    assert not created_before(net, parse_until("2026-01-02T03:04:05Z", 0))


def _spec(**kw):
    base = dict(port_bindings={}, publish_all=False, exposed_ports=(), hostname="", dns=(),
                extra_hosts=(), links=(), endpoints={})
    return types.SimpleNamespace(**{**base, **kw})


def test_port_requests_bindings_ranges_and_publish_all():
    spec = _spec(port_bindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080-8082"}],
                                "53/udp": [{}]}, publish_all=True, exposed_ports=("81/tcp",))
    reqs = sandbox.port_requests(spec, ["80/tcp", "443"])
    assert {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 8080, "host_port_end": 8082,
            "container_port": 80} in reqs
    assert {"proto": "udp", "host_ip": "0.0.0.0", "host_port": 0, "host_port_end": 0,
            "container_port": 53} in reqs
    assert {(r["container_port"], r["proto"]) for r in reqs} == {(80, "tcp"), (53, "udp"), (443, "tcp"), (81, "tcp")}
    with pytest.raises(InvalidArgument):
        sandbox.port_requests(_spec(port_bindings={"80/sctp": [{}]}))
    with pytest.raises(InvalidArgument):
        sandbox.port_requests(_spec(port_bindings={"80": [{"HostPort": "9-1"}]}))


def test_exposed_keys_normalised():
    assert sandbox.exposed_keys(["80", "80/TCP", "53/udp", "x"]) == ["80/tcp", "53/udp"]


def test_hosts_and_resolv_text(tmp_path, monkeypatch):
    hosts = sandbox.hosts_text(hostname="web", domainname="lan", own_ips=["10.0.0.2"],
                               extra_hosts=["db:10.9.9.9", "gw:host-gateway"],
                               links=[("10.0.0.3", ["c1", "abc", "container1"])], gateway="10.0.0.1")
    assert "10.9.9.9\tdb" in hosts and "10.0.0.1\tgw" in hosts
    assert "10.0.0.3\tc1 abc container1" in hosts and hosts.endswith("10.0.0.2\tweb.lan web\n")
    text = sandbox.resolv_text(dns=["1.1.1.1"], dns_search=["x.test"], dns_options=["ndots:2"],
                               embedded="10.0.0.1")
    assert text.splitlines()[:2] == ["nameserver 10.0.0.1", "# ExtServers: [1.1.1.1]"]
    assert "search x.test" in text and "options ndots:2" in text
    plain = sandbox.resolv_text(dns=["1.1.1.1"], dns_search=[], dns_options=[])
    assert plain.startswith("nameserver 1.1.1.1\n")


@pytest.mark.parametrize("kw, what", [
    (dict(port_bindings={"80/tcp": [{}]}), "port publishing"), (dict(hostname="h"), "hostname"),
    (dict(dns=("1.1.1.1",)), "dns"), (dict(extra_hosts=("a:1.2.3.4",)), "host-to-IP"),
    (dict(links=("a",)), "links"),
])
def test_container_mode_conflicts(kw, what):
    with pytest.raises(InvalidArgument, match=what):
        sandbox.check_joining(_spec(**kw))
    sandbox.check_joining(_spec())


def test_joined_netns():
    assert sandbox.joined_netns({"netns": "/run/x/netns/id"}, 42) == "/run/x/netns/id"
    assert sandbox.joined_netns(None, 42) == "/proc/42/ns/net"
