"""conch.network.socklb against the real kernel: the cgroup sock_addr programs attached at
the cgroup2 root, a "container" (a network namespace on a test bridge) behind a port
published both ways (nft DNAT and the socket LB), real TCP and UDP from the host.

How the path is told apart: with the socket LB the host's socket is connected to the
container itself, so its own address (getsockname) is the bridge's and the server sees
that same address; through the nft DNAT the socket stays on 127.0.0.1 (or the host
address) and only conntrack knows better. getpeername()/recvfrom() must show the
published address either way.

Safety: addresses in 10.217.<random>.0/24 on a bridge these tests create; traffic goes
only to 127.0.0.1, the host's own address (both DNAT'ed/rewritten into the test's
namespace) and that namespace. Each test checks no link, namespace, table or program of
its own is left.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conch.kernel import bpf
from conch.network import netlink, netns
from conch.network.firewall import Firewall
from conch.network.ipam import Pool
from conch.network.ports import PortReservation
from conch.network.socklb import SocketLB, cgroup2_root
from conch.testing import echo

pytestmark = pytest.mark.root


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("nsenter", "nft", "ip"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy mounted"
    lb = SocketLB()
    try:
        if not lb.start():
            return "cgroup sock_addr eBPF programs cannot be loaded/attached here (see log)"
    finally:
        lb.close()
    return None


_SKIP = _probe()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)


def _tables() -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True,
                         check=True).stdout
    return {o["table"]["name"] for o in json.loads(out)["nftables"] if "table" in o}


def _attached(attach_type: int) -> set[int]:
    fd = os.open(cgroup2_root(), os.O_RDONLY | os.O_DIRECTORY)
    try:
        return set(bpf.prog_query(fd, attach_type))
    finally:
        os.close(fd)


class Setup:
    """A bridge, one namespace serving on 8000, the firewall table; undone by cleanup."""

    def __init__(self, tmp: Path):
        self.tag = uuid.uuid4().hex[:5]
        self.pool = Pool(f"10.217.{random.randrange(16, 240)}.0/24")
        self.bridge = f"cnsb{self.tag}"
        self.veth = f"cnsv{self.tag}"
        self.ns = tmp / "ns1"
        self.fw = Firewall(f"conch_s{self.tag}")
        self.server: subprocess.Popen | None = None
        self.gateway = str(self.pool.gateway)

    def build(self) -> None:
        self.fw.ensure()
        netlink.ensure_bridge(self.bridge, self.pool.cidr(self.gateway))
        self.fw.add_network(bridge=self.bridge, subnet=str(self.pool.subnet))
        netns.create(self.ns)
        netlink.create_veth(self.veth, "tmp0", str(self.ns))
        netlink.attach_to_bridge(self.veth, self.bridge)
        Path(f"/sys/class/net/{self.veth}/brport/hairpin_mode").write_text("1")
        self.ip = self.pool.allocate()
        netlink.configure(str(self.ns), "tmp0", self.pool.cidr(self.ip), self.gateway)
        self.server = subprocess.Popen(["nsenter", f"--net={self.ns}", "--", sys.executable,
                                        "-I", "-c", echo.SERVER, "web", "8000"],
                                       stdout=subprocess.PIPE, text=True)
        assert self.server.stdout.readline().strip() == "ready"

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        self.fw.destroy()
        netlink.delete_link(self.veth)
        netns.remove(self.ns)
        netlink.delete_link(self.bridge)


@pytest.fixture
def setup(tmp_path):
    # The leak check is scoped to this test's own names (conftest's no_leaks counts other
    # sessions' containers started meanwhile as leaks); the programs are checked in the tests.
    s = Setup(tmp_path)
    try:
        s.build()
        yield s
    finally:
        s.cleanup()
    assert [n for n in os.listdir("/sys/class/net") if s.tag in n] == []
    assert s.fw.table not in _tables()
    assert not s.ns.exists()


def host_address(exclude: str) -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[1] != exclude and not fields[1].startswith(("cnsb", "cnsv", "cnfb", "cnfv")):
            return fields[3].split("/")[0]
    pytest.skip("the host has no global IPv4 address to publish on")


def tcp(host: str, port: int) -> tuple[str, tuple, tuple]:
    """(answer, getsockname, getpeername) of one TCP connection from this process."""
    with socket.create_connection((host, port), timeout=2) as s:
        return s.recv(100).decode(), s.getsockname(), s.getpeername()


def udp(host: str, port: int) -> tuple[str, tuple, tuple]:
    """Unconnected: (answer, the source recvfrom reports, getsockname)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"?", (host, port))
        data, peer = s.recvfrom(100)
        return data.decode(), peer, s.getsockname()


def ns_tcp(ns: Path, host: str, port: int) -> str:
    r = subprocess.run(["nsenter", f"--net={ns}", "--", sys.executable, "-I", "-c", echo.CLIENT,
                        host, str(port)], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def publish(s: Setup, ports: PortReservation, lb: SocketLB | None, proto: str, host_ip: str,
            container_port: int = 8000) -> int:
    hp = ports.reserve(proto=proto, host_ip=host_ip, host_port=0)
    entry = dict(proto=proto, host_ip=host_ip, host_port=hp, container_ip=s.ip,
                 container_port=container_port)
    s.fw.publish(bridge=s.bridge, **entry)
    if lb is not None:
        lb.publish([entry])
    return hp


def test_host_connections_go_straight_to_the_container(setup):
    s, gw = setup, setup.gateway
    addr = host_address(s.bridge)
    ports, lb = PortReservation(), SocketLB()
    try:
        assert lb.start()
        ids = lb.program_ids()
        assert len(ids) == 4
        assert set(ids[:1]) <= _attached(bpf.CGROUP_INET4_CONNECT)
        any_tcp = publish(s, ports, lb, "tcp", "0.0.0.0")
        lo_tcp = publish(s, ports, lb, "tcp", "127.0.0.1")  # same container port, twice
        any_udp = publish(s, ports, lb, "udp", "0.0.0.0")
        # TCP via 127.0.0.1: connected to the container itself, no NAT, the app sees
        # what it asked for.
        answer, local, peer = tcp("127.0.0.1", any_tcp)
        assert (answer, local[0], peer) == (f"web {gw}", gw, ("127.0.0.1", any_tcp))
        answer, local, peer = tcp("127.0.0.2", any_tcp)  # all of 127/8, as nft's "local"
        assert (answer, local[0], peer) == (f"web {gw}", gw, ("127.0.0.2", any_tcp))
        answer, local, peer = tcp(addr, any_tcp)  # nft would keep the source: addr
        assert (answer, local[0], peer) == (f"web {gw}", gw, (addr, any_tcp))
        answer, local, peer = tcp("127.0.0.1", lo_tcp)
        assert (answer, local[0], peer) == (f"web {gw}", gw, ("127.0.0.1", lo_tcp))
        with pytest.raises(OSError):  # published on 127.0.0.1 only: not rewritten, refused
            tcp(addr, lo_tcp)
        # UDP, unconnected and connected
        # (an unconnected socket's own address stays 0.0.0.0: the server's view tells,
        # since nft would keep the source of a datagram sent to addr)
        assert udp("127.0.0.1", any_udp)[:2] == (f"web {gw}", ("127.0.0.1", any_udp))
        assert udp(addr, any_udp)[:2] == (f"web {gw}", (addr, any_udp))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(2)
            c.connect(("127.0.0.1", any_udp))
            c.send(b"?")
            assert c.recv(100).decode() == f"web {gw}"
            assert c.getpeername() == ("127.0.0.1", any_udp) and c.getsockname()[0] == gw
        # Containers keep their own stack: 127.0.0.1 in a namespace is its loopback (not
        # rewritten: refused), and its own published port by the host address hairpins
        # through the nft rules.
        assert ns_tcp(s.ns, "127.0.0.1", any_tcp).startswith("ERR ConnectionRefused")
        assert ns_tcp(s.ns, addr, any_tcp).startswith("web ")
        # unpublish: back to nft only, which still serves (the socket stays on 127.0.0.1)
        lb.unpublish([dict(proto="tcp", host_ip="0.0.0.0", host_port=any_tcp)])
        answer, local, peer = tcp("127.0.0.1", any_tcp)
        assert (answer, local[0], peer) == (f"web {gw}", "127.0.0.1", ("127.0.0.1", any_tcp))
        assert [p[:3] for p in lb.published()] == [("tcp", "127.0.0.1", lo_tcp),
                                                   ("udp", "0.0.0.0", any_udp)]
        lb.sync([])
        assert lb.published() == []
    finally:
        lb.close()
        ports.close()
    assert not set(ids) & _attached(bpf.CGROUP_INET4_CONNECT)


_HOLDER = r"""
import sys, time
from conch.network.socklb import SocketLB
lb = SocketLB()
assert lb.start()
lb.publish([dict(proto="tcp", host_ip="0.0.0.0", host_port=int(sys.argv[1]),
                 container_ip=sys.argv[2], container_port=8000)])
print(" ".join(map(str, lb.program_ids())), flush=True)
time.sleep(600)
"""


def test_sigkill_detaches_and_nft_still_serves(setup):
    s, gw = setup, setup.gateway
    ports = PortReservation()
    try:
        hp = publish(s, ports, None, "tcp", "0.0.0.0")
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(hp), s.ip],
                                  stdout=subprocess.PIPE, text=True)
        try:
            ids = [int(i) for i in holder.stdout.readline().split()]
            assert len(ids) == 4 and ids[0] in _attached(bpf.CGROUP_INET4_CONNECT)
            assert ids[2] in _attached(bpf.CGROUP_INET4_GETPEERNAME)
            answer, local, _ = tcp("127.0.0.1", hp)
            assert (answer, local[0]) == (f"web {gw}", gw)  # the other process's program
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        for attach in (bpf.CGROUP_INET4_CONNECT, bpf.CGROUP_UDP4_SENDMSG,
                       bpf.CGROUP_INET4_GETPEERNAME, bpf.CGROUP_UDP4_RECVMSG):
            assert not set(ids) & _attached(attach)
        deadline = time.monotonic() + 5  # the programs are freed after an RCU grace period
        while set(ids) & set(bpf.next_ids(bpf.PROG_GET_NEXT_ID)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not set(ids) & set(bpf.next_ids(bpf.PROG_GET_NEXT_ID))
        answer, local, peer = tcp("127.0.0.1", hp)  # nft DNAT alone
        assert (answer, local[0], peer) == (f"web {gw}", "127.0.0.1", ("127.0.0.1", hp))
    finally:
        ports.close()


def test_verifier_refusal_carries_its_log():
    from conch.errors import SystemCallError

    with pytest.raises(SystemCallError, match="R0 !read_ok"):  # exit without setting r0
        bpf.prog_load(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, bpf.assemble([bpf.exit_()]),
                      expected_attach_type=bpf.CGROUP_INET4_CONNECT, name="conch_bad")
