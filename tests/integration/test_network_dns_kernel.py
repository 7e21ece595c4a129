"""conch.network.dns as the engine runs it: listening on a bridge's gateway address, port
53, in the host's namespace, queried from a network namespace on that bridge (an
internal network with the firewall's rules in place), forwarding to a fake upstream on
127.0.0.x. Nothing is sent to a real resolver; links, namespaces and nft tables made
here are removed and checked for."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import uuid

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from conch.network import netlink, netns
from conch.network.dns import DnsServer
from conch.network.firewall import Firewall
from conch.network.ipam import Pool
from conch.testing.fakedns import FakeUpstream, free_port

pytestmark = pytest.mark.root


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "needs root (port 53, namespaces)"
    for tool in ("unshare", "nsenter", "nft"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed"
    return None


_SKIP = _probe()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)

# In the namespace: send each hex query over (udp|tcp) to SERVER:53, print replies as hex.
_CLIENT = r"""
import socket, struct, sys
server, out = sys.argv[1], []
for arg in sys.argv[2:]:
    proto, hexq = arg.split(":")
    data = bytes.fromhex(hexq)
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(data, (server, 53)); reply = s.recv(65535)
        else:
            s = socket.create_connection((server, 53), timeout=2)
            s.sendall(struct.pack("!H", len(data)) + data)
            n = struct.unpack("!H", s.recv(2))[0]; reply = b""
            while len(reply) < n: reply += s.recv(n - len(reply))
        out.append(reply.hex())
    except OSError:
        out.append("-")
print(" ".join(out))
"""


def _tables() -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True,
                         check=True).stdout
    return {o["table"]["name"] for o in json.loads(out)["nftables"] if "table" in o}


@pytest.fixture
def bridge_ns(tmp_path, no_leaks):
    """A bridge (internal network, firewall rules on) with one namespace on it."""
    tag = uuid.uuid4().hex[:5]
    pool = Pool(f"10.217.{random.randrange(0, 250)}.0/24")
    br, veth, path = f"cndb{tag}", f"cndv{tag}", tmp_path / "ns"
    fw = Firewall(f"conch_d{tag}")
    try:
        netlink.ensure_bridge(br, pool.cidr(str(pool.gateway)))
        fw.ensure()
        fw.add_network(bridge=br, subnet=str(pool.subnet), internal=True)
        netns.create(path)
        netlink.create_veth(veth, "tmp0", str(path))
        netlink.attach_to_bridge(veth, br)
        ip = pool.allocate()
        netlink.configure(str(path), "tmp0", pool.cidr(ip), str(pool.gateway))
        yield path, str(pool.gateway), ip
    finally:
        fw.destroy()
        netlink.delete_link(veth)
        netns.remove(path)
        netlink.delete_link(br)
    # Scoped to this test's names: other tests may make links and tables meanwhile.
    assert [n for n in os.listdir("/sys/class/net") if tag in n] == []
    assert fw.table not in _tables()
    assert not path.exists()


def test_container_resolves_names_through_its_gateway(bridge_ns):
    path, gateway, container_ip = bridge_ns
    seen: list[tuple[str, str, str]] = []

    def lookup(network_id, client_ip, name):
        seen.append((network_id, client_ip, name))
        return {"web": ["10.217.0.5"]}.get(name)

    queries = [
        ("udp", DNSRecord.question("web").pack()),
        ("tcp", DNSRecord.question("WEB", "AAAA").pack()),
        ("udp", os.urandom(30)),  # garbage: dropped
        ("udp", DNSRecord.question("example.test").pack()),  # forwarded, UDP
        ("tcp", DNSRecord.question("example.test").pack()),  # forwarded, TCP
        ("udp", DNSRecord.question("web").pack()),  # still serving
    ]

    async def main():
        up_addr = "127.0.0.44"
        upstream = await FakeUpstream(up_addr, free_port(up_addr),
                                      records={"example.test": ["192.0.2.7"]}).start()
        server = DnsServer(lookup=lookup, upstreams=[f"{up_addr}:{upstream.port}"])
        await server.add_listener(network_id="n1", address=gateway)
        try:
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--net={path}", "--", sys.executable, "-I", "-c", _CLIENT,
                gateway, *(f"{p}:{d.hex()}" for p, d in queries),
                stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            return out.decode().split(), upstream.queries
        finally:
            await server.close()
            await upstream.stop()

    replies, upstream_seen = asyncio.run(main())
    web, aaaa, junk, ext_udp, ext_tcp, web2 = replies
    assert junk == "-"
    for hexed in (web, web2):
        reply = DNSRecord.parse(bytes.fromhex(hexed))
        assert [str(rr.rdata) for rr in reply.rr] == ["10.217.0.5"] and reply.rr[0].ttl == 600
    reply = DNSRecord.parse(bytes.fromhex(aaaa))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
    for hexed in (ext_udp, ext_tcp):
        reply = DNSRecord.parse(bytes.fromhex(hexed))
        assert [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A] == ["192.0.2.7"]
    assert upstream_seen == [("udp", "example.test"), ("tcp", "example.test")]
    assert ("n1", container_ip, "web") in seen  # the lookup sees who asked
