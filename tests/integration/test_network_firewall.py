"""conch.network.firewall against the real kernel: bridges, namespaces and veths built
with conch.network, the rules in a private nftables table, real TCP/UDP traffic.

Safety: addresses are in 10.216.<random>.0/24 on bridges these tests create; traffic goes
only between namespaces they create and the host's own addresses (127.0.0.1 and the
addresses of its interfaces, where a DNAT sends it on into a test namespace). The table
is ``conch_t<hex>``; other tables are never touched. Every test asserts that no link,
namespace file, nft table or process is left.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conch.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from conch.network import netlink, netns
from conch.network.firewall import Firewall
from conch.network.ipam import Pool
from conch.network.ports import PortReservation
from conch.testing import echo

pytestmark = pytest.mark.root


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "nft", "ip"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"nftables unusable here: {probe.stderr.strip()}"
    return None


_SKIP = _probe()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)


def _tables() -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True,
                         check=True).stdout
    return {o["table"]["name"] for o in json.loads(out)["nftables"] if "table" in o}


class Topology:
    """Bridges, namespaces, veths and servers one test made; torn down in reverse."""

    def __init__(self, tmp: Path):
        self.tag = uuid.uuid4().hex[:5]
        self.tmp = tmp
        self.octet = random.randrange(16, 240)
        self.bridges: list[str] = []
        self.namespaces: list[Path] = []
        self.veths: list[str] = []
        self.servers: list[subprocess.Popen] = []
        self.fw = Firewall(f"conch_t{self.tag}")

    def pool(self, n: int) -> Pool:
        return Pool(f"10.216.{self.octet + n}.0/24")

    def bridge(self, n: int, pool: Pool) -> str:
        name = f"cnfb{self.tag}{n}"
        self.bridges.append(name)
        netlink.ensure_bridge(name, pool.cidr(str(pool.gateway)))
        return name

    def attach(self, n: int, bridge: str, pool: Pool) -> tuple[Path, str]:
        path = self.tmp / f"ns{n}"
        self.namespaces.append(path)
        netns.create(path)
        host = f"cnfv{self.tag}{n}"
        self.veths.append(host)
        netlink.create_veth(host, "tmp0", str(path))
        netlink.attach_to_bridge(host, bridge)
        # What the engine does for userland-proxy=false: a container can reach its own
        # published port through the host's address only if its bridge port hairpins.
        Path(f"/sys/class/net/{host}/brport/hairpin_mode").write_text("1")
        ip = pool.allocate()
        netlink.configure(str(path), "tmp0", pool.cidr(ip), str(pool.gateway))
        return path, ip

    def serve(self, ns: Path, name: str, port: int) -> None:
        proc = subprocess.Popen(["nsenter", f"--net={ns}", "--", sys.executable, "-I", "-c",
                                 echo.SERVER, name, str(port)], stdout=subprocess.PIPE, text=True)
        self.servers.append(proc)
        assert proc.stdout.readline().strip() == "ready"

    def cleanup(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
        self.fw.destroy()
        for name in reversed(self.veths):
            netlink.delete_link(name)
        for path in reversed(self.namespaces):
            netns.remove(path)
        for name in reversed(self.bridges):
            netlink.delete_link(name)


@pytest.fixture
def topo(tmp_path, no_leaks):
    # Scoped to this test's names: other tests may make links and tables meanwhile.
    t = Topology(tmp_path)
    t.fw.ensure()
    try:
        yield t
    finally:
        t.cleanup()
    assert [n for n in os.listdir("/sys/class/net") if t.tag in n] == []
    assert t.fw.table not in _tables()
    for path in t.namespaces:
        assert not path.exists() and not netns.is_bound(path)


def ns_ask(ns: Path, host: str, port: int, proto: str = "tcp") -> str:
    r = subprocess.run(["nsenter", f"--net={ns}", "--", sys.executable, "-I", "-c", echo.CLIENT,
                        host, str(port), proto], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def host_ask(host: str, port: int, proto: str = "tcp") -> str:
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=1.5) as s:
                return s.recv(100).decode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.5)
            s.sendto(b"?", (host, port))
            return s.recv(100).decode()
    except OSError as exc:
        return f"ERR {type(exc).__name__} {exc}"


def host_address(exclude: list[str]) -> str:
    """A global IPv4 address of this host on an interface the test did not make."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[1] not in exclude and not fields[1].startswith(("cnfb", "cnfv")):
            return fields[3].split("/")[0]
    pytest.skip("the host has no global IPv4 address to publish on")


def test_intra_bridge_allowed_and_bridges_isolated(topo):
    pa, pb = topo.pool(0), topo.pool(1)
    bra, brb = topo.bridge(0, pa), topo.bridge(1, pb)
    topo.fw.add_network(bridge=bra, subnet=str(pa.subnet))
    topo.fw.add_network(bridge=brb, subnet=str(pb.subnet))
    ns1, ip1 = topo.attach(1, bra, pa)
    ns2, ip2 = topo.attach(2, bra, pa)
    ns3, ip3 = topo.attach(3, brb, pb)
    topo.serve(ns1, "one", 7001)
    topo.serve(ns3, "three", 7001)
    assert ns_ask(ns2, ip1, 7001) == f"one {ip2}"  # same bridge: plain L2, source kept
    assert ns_ask(ns2, ip1, 7001, "udp") == f"one {ip2}"
    assert ns_ask(ns3, ip1, 7001).startswith("ERR")  # routable (both have gateways)...
    assert ns_ask(ns1, ip3, 7001).startswith("ERR")  # ...but isolated, both ways
    assert topo.fw.networks() == sorted([bra, brb])


def test_published_port_from_host_loopback_host_address_and_containers(topo):
    pa, pb = topo.pool(0), topo.pool(1)
    bra, brb = topo.bridge(0, pa), topo.bridge(1, pb)
    topo.fw.add_network(bridge=bra, subnet=str(pa.subnet))
    topo.fw.add_network(bridge=brb, subnet=str(pb.subnet))
    ns1, ip1 = topo.attach(1, bra, pa)
    ns2, _ = topo.attach(2, bra, pa)
    ns3, _ = topo.attach(3, brb, pb)
    topo.serve(ns1, "web", 8000)
    ports = PortReservation()
    try:
        hp = ports.reserve(proto="tcp", host_ip="0.0.0.0", host_port=0)
        up = ports.reserve(proto="udp", host_ip="127.0.0.1", host_port=0)
        topo.fw.publish(bridge=bra, proto="tcp", host_ip="0.0.0.0", host_port=hp,
                        container_ip=ip1, container_port=8000)
        topo.fw.publish(bridge=bra, proto="udp", host_ip="127.0.0.1", host_port=up,
                        container_ip=ip1, container_port=8000)
        addr = host_address(topo.bridges)
        assert host_ask("127.0.0.1", hp).startswith("web ")  # output DNAT + route_localnet
        assert host_ask(addr, hp).startswith("web ")
        assert host_ask("127.0.0.1", up, "udp").startswith("web ")
        assert host_ask(addr, up, "udp").startswith("ERR")  # bound to 127.0.0.1 only
        assert ns_ask(ns2, addr, hp).startswith("web ")  # sibling via the host address
        assert ns_ask(ns3, addr, hp).startswith("web ")  # another network, same way
        assert ns_ask(ns1, addr, hp).startswith("web ")  # hairpin: its own port
        assert ns_ask(ns3, str(pb.gateway), hp).startswith("web ")  # any host address
        assert sorted(p["host_port"] for p in topo.fw.published()) == sorted([hp, up])
        topo.fw.unpublish(proto="tcp", host_ip="0.0.0.0", host_port=hp)
        topo.fw.unpublish(proto="tcp", host_ip="0.0.0.0", host_port=hp)  # no-op
        assert host_ask(addr, hp).startswith("ERR")
    finally:
        ports.close()


def test_internal_network_has_no_way_out(topo):
    pa, pi, po = topo.pool(0), topo.pool(1), topo.pool(2)
    bra, bri = topo.bridge(0, pa), topo.bridge(1, pi)
    bro = topo.bridge(2, po)  # "outside": a bridge this firewall knows nothing of
    topo.fw.add_network(bridge=bra, subnet=str(pa.subnet))
    topo.fw.add_network(bridge=bri, subnet=str(pi.subnet), internal=True)
    ns1, ip1 = topo.attach(1, bra, pa)
    ns4, ip4 = topo.attach(4, bri, pi)
    ns5, ip5 = topo.attach(5, bri, pi)
    nso, ipo = topo.attach(9, bro, po)
    topo.serve(nso, "outside", 9000)
    topo.serve(ns4, "inside", 9000)
    # Masqueraded: the outside sees the address of the bridge the packet left by.
    assert ns_ask(ns1, ipo, 9000) == f"outside {po.gateway}"
    assert ns_ask(ns4, ipo, 9000).startswith("ERR")
    assert ns_ask(ns5, ip4, 9000) == f"inside {ip5}"  # inside an internal network: fine
    assert ns_ask(nso, ip4, 9000).startswith("ERR")  # and nothing gets in
    with pytest.raises(FailedPrecondition, match="internal"):
        topo.fw.publish(bridge=bri, proto="tcp", host_ip="0.0.0.0", host_port=9000,
                        container_ip=ip4, container_port=9000)


def test_conflicts_and_bad_input_are_clear(topo):
    pa = topo.pool(0)
    bra = topo.bridge(0, pa)
    topo.fw.add_network(bridge=bra, subnet=str(pa.subnet))
    kw = dict(bridge=bra, proto="tcp", host_ip="0.0.0.0", host_port=18080)
    topo.fw.publish(**kw, container_ip="10.216.%d.2" % topo.octet, container_port=80)
    topo.fw.publish(**kw, container_ip="10.216.%d.2" % topo.octet, container_port=80)  # same
    with pytest.raises(Conflict, match="18080/tcp is already published"):
        topo.fw.publish(**kw, container_ip="10.216.%d.3" % topo.octet, container_port=80)
    with pytest.raises(Conflict, match="already published"):
        topo.fw.publish(**{**kw, "host_ip": "127.0.0.1"},
                        container_ip="10.216.%d.3" % topo.octet, container_port=80)
    with pytest.raises(InvalidArgument, match="not in"):
        topo.fw.publish(**{**kw, "host_port": 1}, container_ip="10.9.9.9", container_port=80)
    with pytest.raises(InvalidArgument, match="protocol"):
        topo.fw.publish(**{**kw, "proto": "icmp"}, container_ip="10.9.9.9", container_port=1)
    with pytest.raises(FailedPrecondition, match="add_network first"):
        topo.fw.publish(**{**kw, "bridge": "nosuch0"}, container_ip="10.9.9.9",
                        container_port=1)
    c = f"10.216.{topo.octet}.4"
    with pytest.raises(Conflict):  # all or none: the first port is not published either
        topo.fw.publish_many(bridge=bra, ports=[
            dict(proto="udp", host_ip="0.0.0.0", host_port=18081, container_ip=c,
                 container_port=1),
            dict(proto="tcp", host_ip="0.0.0.0", host_port=18080, container_ip=c,
                 container_port=2)])
    topo.fw.publish_many(bridge=bra, ports=[
        dict(proto=p, host_ip="127.0.0.1", host_port=18082, container_ip=c, container_port=3)
        for p in ("tcp", "udp")])
    assert [(p["proto"], p["host_port"]) for p in topo.fw.published()] == [
        ("tcp", 18080), ("tcp", 18082), ("udp", 18082)]
    topo.fw.unpublish_many(ports=[("tcp", "127.0.0.1", 18082), ("udp", "127.0.0.1", 18082),
                                  ("udp", "127.0.0.1", 18099)])
    assert [(p["proto"], p["host_port"]) for p in Firewall(topo.fw.table).published()] == [
        ("tcp", 18080)]  # read back from the kernel
    with pytest.raises(NotFound, match="create the bridge"):
        topo.fw.add_network(bridge=f"cnfx{topo.tag}", subnet="10.216.250.0/24")
    with pytest.raises(InvalidArgument):
        Firewall("nat")


def test_state_survives_a_restart_and_removal_leaves_nothing(topo):
    pa, pi = topo.pool(0), topo.pool(1)
    bra, bri = topo.bridge(0, pa), topo.bridge(1, pi)
    topo.fw.add_network(bridge=bra, subnet=str(pa.subnet))
    topo.fw.add_network(bridge=bri, subnet=str(pi.subnet), internal=True)
    topo.fw.publish(bridge=bra, proto="udp", host_ip="127.0.0.1", host_port=5353,
                    container_ip=f"10.216.{topo.octet}.9", container_port=53)
    again = Firewall(topo.fw.table)  # a daemon restarted after a crash
    again.ensure()
    assert again.networks() == sorted([bra, bri])
    assert again.published() == topo.fw.published() == [{
        "proto": "udp", "host_ip": "127.0.0.1", "host_port": 5353,
        "container_ip": f"10.216.{topo.octet}.9", "container_port": 53, "bridge": bra}]
    assert Path(f"/proc/sys/net/ipv4/conf/{bra}/route_localnet").read_text().strip() == "1"
    again.remove_network(bridge=bra)
    again.remove_network(bridge=bri)
    again.remove_network(bridge=bri)  # unknown: no-op
    assert Path(f"/proc/sys/net/ipv4/conf/{bra}/route_localnet").read_text().strip() == "0"
    listing = json.loads(subprocess.run(["nft", "-j", "list", "table", "ip", again.table],
                                        capture_output=True, text=True, check=True).stdout)
    assert not [o for o in listing["nftables"]
                if ("set" in o or "map" in o) and (o.get("set") or o.get("map")).get("elem")]
    again.destroy()
    again.destroy()  # absent: no error
    r = subprocess.run(["nft", "list", "table", "ip", again.table], capture_output=True)
    assert r.returncode != 0


def test_shared_port_spreads_over_backends_and_drains(topo):
    """Replicas behind one host port (issue 12): new connections spread at random over
    the backends, from the host (output) and from a container on another bridge
    (prerouting); a removed backend gets no new connection; none left: refused."""
    pa, pb = topo.pool(0), topo.pool(1)
    bra, brb = topo.bridge(0, pa), topo.bridge(1, pb)
    topo.fw.add_network(bridge=bra, subnet=str(pa.subnet))
    topo.fw.add_network(bridge=brb, subnet=str(pb.subnet))
    backends = []
    for n, name in enumerate(("r1", "r2", "r3"), 1):
        ns, ip = topo.attach(n, bra, pa)
        topo.serve(ns, name, 8000)
        backends.append((ip, 8000))
    client_ns, _ = topo.attach(9, brb, pb)
    ports = PortReservation()
    try:
        hp = ports.reserve(proto="tcp", host_ip="0.0.0.0", host_port=0)
        key = dict(proto="tcp", host_ip="0.0.0.0", host_port=hp)
        topo.fw.set_backends(**key, backends=backends)
        seen = {host_ask("127.0.0.1", hp).split()[0] for _ in range(30)}
        assert len(seen) >= 2 and seen <= {"r1", "r2", "r3"}, seen
        assert topo.fw.shared_connections(**key) == 30  # one count per new connection
        assert ns_ask(client_ns, str(pb.gateway), hp).split()[0] in {"r1", "r2", "r3"}
        with pytest.raises(Conflict):  # a one-container publish cannot take it over
            topo.fw.publish(bridge=bra, **key, container_ip=backends[0][0], container_port=8000)
        topo.fw.remove_backend(**key, container_ip=backends[0][0], container_port=8000)
        topo.fw.remove_backend(**key, container_ip=backends[1][0], container_port=8000)
        assert {host_ask("127.0.0.1", hp).split()[0] for _ in range(10)} == {"r3"}
        topo.fw.add_backend(**key, container_ip=backends[0][0], container_port=8000)
        assert topo.fw.shared()[("tcp", "0.0.0.0", hp)] == sorted([backends[0], backends[2]])
        topo.fw.set_backends(**key, backends=[])
        assert host_ask("127.0.0.1", hp).startswith("ERR")
        # a restarted daemon's firewall prunes chains it no longer wants
        again = Firewall(topo.fw.table)
        again.ensure()
        again.prune_shared(keep=set())
        listing = subprocess.run(["nft", "list", "table", "ip", topo.fw.table],
                                 capture_output=True, text=True, check=True).stdout
        assert "sp_tcp" not in listing and "csp_tcp" not in listing
        assert topo.fw.shared_connections(**key) is None
    finally:
        ports.close()
