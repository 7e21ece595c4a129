"""conch.network.dns: the embedded DNS server on 127.0.0.x loopback addresses, with a fake
lookup and fake upstream servers (conch.testing.fakedns) on other 127.0.0.x addresses.
No root needed (high ports); nothing is ever sent to a real resolver."""

from __future__ import annotations

import asyncio
import os

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from conch.errors import Conflict, InvalidArgument, NotFound
from conch.network.dns import DnsServer
from conch.network.dnsanswer import answer
from conch.network.dnsforward import host_upstreams, parse_upstream
from conch.testing.fakedns import FakeUpstream, ask_tcp, ask_udp, free_port

SERVER, UP1, UP2 = "127.0.0.41", "127.0.0.42", "127.0.0.43"
NAMES = {"web": ["10.0.0.2"], "db": ["10.0.0.3", "10.0.0.4"], "nov4": [],
         "many": [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(100)]}


def lookup(network_id: str, client_ip: str, name: str):
    assert network_id == "net1"
    if name == "badip":
        return ["not-an-ip"]
    if name == "boom":
        raise RuntimeError("engine bug")
    return NAMES.get(name)


def reverse(network_id: str, ip: str):
    return {"10.0.0.2": "web.net1"}.get(ip)


def q(name: str, qtype: str = "A", **kw) -> bytes:
    return DNSRecord.question(name, qtype, **kw).pack()


def parse(data: bytes) -> DNSRecord:
    assert data is not None, "no reply"
    return DNSRecord.parse(data)


def a_records(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


class Env:
    def __init__(self, server: DnsServer, port: int, up1: FakeUpstream, up2: FakeUpstream):
        self.server, self.port, self.up1, self.up2 = server, port, up1, up2

    async def udp(self, data: bytes, timeout: float = 3.0):
        return await ask_udp(data, SERVER, self.port, timeout)

    async def tcp(self, data: bytes):
        return await ask_tcp(data, SERVER, self.port)


def run(scenario, *, upstream_order=(UP1, UP2), timeout: float = 0.5):
    """Start two fake upstreams and a DnsServer forwarding to them, run ``scenario(env)``."""

    async def main():
        p1, p2 = free_port(UP1), free_port(UP2)
        up1 = await FakeUpstream(UP1, p1, records={"example.test": ["192.0.2.10"]}).start()
        up2 = await FakeUpstream(UP2, p2, records={"example.test": ["192.0.2.20"]}).start()
        ports = {UP1: p1, UP2: p2}
        server = DnsServer(lookup=lookup, reverse=reverse, timeout=timeout,
                           upstreams=[f"{a}:{ports[a]}" for a in upstream_order])
        port = free_port(SERVER)
        await server.add_listener(network_id="net1", address=SERVER, port=port, domain="net1")
        try:
            await scenario(Env(server, port, up1, up2))
        finally:
            await server.close()
            await up1.stop()
            await up2.stop()

    asyncio.run(main())


def test_known_names_answered_with_ttl_600_case_insensitive():
    async def scenario(env):
        reply = parse(await env.udp(q("WEB")))
        assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
        assert a_records(reply) == ["10.0.0.2"] and reply.rr[0].ttl == 600
        assert str(reply.rr[0].rname) == "WEB."  # the question as asked
        assert sorted(a_records(parse(await env.udp(q("db."))))) == ["10.0.0.3", "10.0.0.4"]
        assert a_records(parse(await env.udp(q("web.NET1")))) == ["10.0.0.2"]  # domain
        assert a_records(parse(await env.tcp(q("web")))) == ["10.0.0.2"]
        assert env.up1.queries == []  # nothing of ours went upstream
    run(scenario)


def test_known_name_without_that_type_is_noerror_empty():
    async def scenario(env):
        for data in (q("web", "AAAA"), q("web", "MX"), q("nov4"), q("nov4", "AAAA")):
            reply = parse(await env.udp(data))
            assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
        assert env.up1.queries == []
    run(scenario)


def test_ptr_for_known_ips_and_forward_for_others():
    async def scenario(env):
        reply = parse(await env.udp(q("2.0.0.10.in-addr.arpa", "PTR")))
        assert [str(rr.rdata) for rr in reply.rr] == ["web.net1."]
        reply = parse(await env.udp(q("9.0.0.10.in-addr.arpa", "PTR")))
        assert reply.header.rcode == RCODE.NXDOMAIN  # from the upstream
        assert env.up1.queries == [("udp", "9.0.0.10.in-addr.arpa")]
    run(scenario)


def test_other_names_forwarded_udp_as_udp_tcp_as_tcp():
    async def scenario(env):
        assert a_records(parse(await env.udp(q("example.test")))) == ["192.0.2.10"]
        assert a_records(parse(await env.tcp(q("Example.test")))) == ["192.0.2.10"]
        assert parse(await env.udp(q("nosuch.test"))).header.rcode == RCODE.NXDOMAIN
        assert env.up1.queries == [("udp", "example.test"), ("tcp", "example.test"),
                                   ("udp", "nosuch.test")]
    run(scenario)


def test_dead_or_failing_upstream_falls_over_to_the_next_then_servfail():
    async def scenario(env):
        env.up1.silent = True
        assert a_records(parse(await env.udp(q("example.test")))) == ["192.0.2.20"]
        assert a_records(parse(await env.tcp(q("example.test")))) == ["192.0.2.20"]
        env.up1.silent = False
        env.up1.servfail.add("example.test")
        assert a_records(parse(await env.udp(q("example.test")))) == ["192.0.2.20"]
        env.up2.silent = True
        reply = parse(await env.udp(q("example.test")))
        assert reply.header.rcode == RCODE.SERVFAIL  # up1's own SERVFAIL, passed on
        env.up1.silent = True
        reply = parse(await env.udp(q("other.test")))
        assert reply.header.rcode == RCODE.SERVFAIL  # nobody answered: ours
    run(scenario, timeout=0.3)


def test_truncation_udp_tc_then_tcp_full():
    async def scenario(env):
        env.up1.records["big.test"] = [f"192.0.2.{i}" for i in range(1, 61)]
        # Upstream truncates over UDP -> forwarder asks again over TCP -> 60 answers do
        # not fit the client's 512 bytes -> TC to the client, which then uses TCP.
        reply = parse(await env.udp(q("big.test")))
        assert reply.header.tc == 1 and reply.rr == [] and str(reply.q.qname) == "big.test."
        assert ("tcp", "big.test") in env.up1.queries
        assert len(a_records(parse(await env.tcp(q("big.test"))))) == 60
        edns = DNSRecord.question("big.test")
        edns.add_ar(EDNS0(udp_len=4096))
        assert len(a_records(parse(await env.udp(edns.pack())))) == 60  # fits in EDNS size
        # Our own big answers too.
        reply = parse(await env.udp(q("many")))
        assert reply.header.tc == 1 and reply.rr == []
        assert len(a_records(parse(await env.tcp(q("many"))))) == 100
    run(scenario)


def test_garbage_is_dropped_and_the_server_keeps_serving():
    async def scenario(env):
        for junk in (b"", b"\x00", os.urandom(11), os.urandom(300), b"\xff" * 12,
                     q("web")[:-3], parse(await env.udp(q("web"))).pack()):  # a response
            assert await env.udp(junk, timeout=0.3) is None
        assert await env.tcp(os.urandom(40)) is None  # hung up on
        assert a_records(parse(await env.udp(q("web")))) == ["10.0.0.2"]
        reply = parse(await env.udp(q("boom")))
        assert reply.header.rcode == RCODE.SERVFAIL  # lookup raised
        reply = parse(await env.udp(q("badip")))
        assert reply.header.rcode == RCODE.SERVFAIL and reply.rr == []  # lookup lied
        two = DNSRecord.question("web")
        two.add_question(*DNSRecord.question("db").questions)
        assert parse(await env.udp(two.pack())).header.rcode == RCODE.FORMERR
        assert env.up1.queries == []
    run(scenario)


def test_listener_lifecycle_and_errors():
    async def scenario(env):
        await env.server.add_listener(network_id="net1", address=SERVER, port=env.port)  # same
        with pytest.raises(Conflict, match="net1"):
            await env.server.add_listener(network_id="net2", address=SERVER, port=env.port)
        with pytest.raises(NotFound, match="192.0.2.254"):
            await env.server.add_listener(network_id="net2", address="192.0.2.254", port=5300)
        await env.server.remove_listener(address=SERVER)
        await env.server.remove_listener(address=SERVER)  # unknown: no-op
        assert env.server.listeners() == []
        assert await env.udp(q("web"), timeout=0.3) is None
        await env.server.add_listener(network_id="net1", address=SERVER, port=env.port)
        assert a_records(parse(await env.udp(q("web")))) == ["10.0.0.2"]
    run(scenario)


def test_pure_answer_and_upstream_parsing(tmp_path):
    kw = dict(network_id="net1", client_ip="10.0.0.9", domain=None, lookup=lookup,
              reverse=None)
    request, reply = answer(q("example.test"), **kw)
    assert request is not None and reply is None  # not ours: forward
    assert answer(b"\x12", **kw) == (None, None)
    assert answer(q("2.0.0.10.in-addr.arpa", "PTR"), **kw)[1] is None  # no reverse callback
    assert answer(q("1.2.3.300.in-addr.arpa", "PTR"), **{**kw, "reverse": reverse})[1] is None
    assert parse_upstream("1.2.3.4") == ("1.2.3.4", 53)
    assert parse_upstream("1.2.3.4:5353") == ("1.2.3.4", 5353)
    assert parse_upstream("[::1]:54") == ("::1", 54) and parse_upstream("::1") == ("::1", 53)
    with pytest.raises(InvalidArgument, match="upstream"):
        DnsServer(lookup=lookup, upstreams=["dns.example"])
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nsearch x\nnameserver 10.9.9.9\nnameserver fe80::1%eth0\n"
                    "nameserver bogus\noptions ndots:2\n")
    assert host_upstreams(str(conf)) == [("10.9.9.9", 53), ("fe80::1", 53)]
    assert host_upstreams(str(tmp_path / "missing")) == []


def test_several_addresses_are_shuffled_per_answer():
    """A service name shared by replicas: every address in each answer, in an order that
    changes between answers (docker's resolver shuffles too), so clients spread."""
    kw = dict(network_id="net1", client_ip="10.0.0.9", domain=None, lookup=lookup,
              reverse=None)
    orders = set()
    for _ in range(40):
        reply = parse(answer(q("many"), **kw)[1])
        got = a_records(reply)
        assert sorted(got) == sorted(NAMES["many"])
        orders.add(tuple(got))
    assert len(orders) > 1
