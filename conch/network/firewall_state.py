"""Reading the firewall's state back from ``nft -j list table ip <table>`` (pure).

:mod:`conch.network.firewall` keeps networks and ports only as set/map elements, so
after a daemon crash this parse is what tells it which bridges and ports it had. The
shapes are libnftables' JSON (``man libnftables-json``): a set's ``elem`` holds strings,
numbers, ``{"prefix": {"addr", "len"}}``, ``{"range": [lo, hi]}``, ``{"concat": [...]}``
and, for a map, ``[key, value]`` pairs; any of them may be wrapped in ``{"elem": {"val":
...}}`` when the element carries a timeout or comment.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

__all__ = ["parse_listing"]

_PROTO_NUMBERS = {6: "tcp", 17: "udp", 132: "sctp"}


def _unwrap(elem: Any) -> Any:
    if isinstance(elem, dict) and "elem" in elem:
        return elem["elem"]["val"]
    return elem


def _concat(value: Any) -> list:
    value = _unwrap(value)
    if isinstance(value, dict) and "concat" in value:
        return value["concat"]
    return [value]


def _network(value: Any) -> ipaddress.IPv4Network:
    value = _unwrap(value)
    if isinstance(value, dict) and "prefix" in value:
        p = value["prefix"]
        return ipaddress.IPv4Network(f"{p['addr']}/{p['len']}")
    if isinstance(value, dict) and "range" in value:
        lo, hi = (ipaddress.IPv4Address(a) for a in value["range"])
        return next(ipaddress.summarize_address_range(lo, hi))
    return ipaddress.IPv4Network(f"{value}/32")


def _port(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value) if str(value).isdigit() else socket.getservbyname(str(value))


def _proto(value: Any) -> str:
    if isinstance(value, int):
        return _PROTO_NUMBERS.get(value, str(value))
    return str(value)


def _sets(listing: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for obj in listing.get("nftables", []):
        body = obj.get("set") or obj.get("map")
        if body is not None:
            out[body["name"]] = body.get("elem", [])
    return out


def parse_listing(listing: dict) -> tuple[dict[str, dict], list[dict]]:
    """``(networks, ports)``: networks by bridge as ``{"bridge", "subnet"
    (IPv4Network), "internal", "masquerade"}``; ports as ``{"proto", "host_ip",
    "host_port", "container_ip", "container_port"}``. Bridges listed without a subnet
    (a table changed by hand) are skipped."""
    sets = _sets(listing)
    bridges = {_unwrap(e) for e in sets.get("bridges", [])}
    internal = {_unwrap(e) for e in sets.get("internal", [])}
    masq = {_network(e) for e in sets.get("masq", [])}
    subnets = {}
    for elem in sets.get("hairpin", []):
        bridge, subnet = _concat(elem)
        subnets[bridge] = _network(subnet)
    nets = {
        b: {"bridge": b, "subnet": subnets[b], "internal": b in internal,
            "masquerade": subnets[b] in masq}
        for b in sorted(bridges) if b in subnets
    }
    ports = []
    for name, any_ip in (("ports_addr", False), ("ports_any", True)):
        for pair in sets.get(name, []):
            key, value = _unwrap(pair)
            key, value = _concat(key), _concat(value)
            proto, host_ip, host_port = (key[0], "0.0.0.0", key[1]) if any_ip else key
            ports.append({"proto": _proto(proto), "host_ip": str(host_ip),
                          "host_port": _port(host_port), "container_ip": str(value[0]),
                          "container_port": _port(value[1])})
    return nets, ports
