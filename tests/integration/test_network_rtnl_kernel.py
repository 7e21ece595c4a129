"""conch.network.rtnl and netlink's error paths against the real kernel (what
test_network_links.py does not already cover: requests made straight on an Rtnl inside a
namespace, kernel errnos, IPv6 addresses and routes, plug_veth's clean-up on failure).

Safety: every link this file makes lives inside namespaces it creates, except bridges
and veths named ``cnrt<tag>...`` (10.217.0.0/16); no traffic leaves them. Everything is
deleted in the fixture, which asserts that /sys/class/net and the namespace files are as
they were (plus the session's ``no_leaks`` check).
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from conch.errors import AlreadyExists, NotFound
from conch.network import netlink, netns
from conch.network.rtnl import NetlinkError, Rtnl, veth_peer

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)
if netlink.helper_binary() is None or shutil.which("ip") is None:
    pytest.skip("needs build/conch-netns (make setup) and iproute2", allow_module_level=True)


def _links() -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith("cnrt")}


class Scratch:
    def __init__(self, tmp: Path):
        self.tag = uuid.uuid4().hex[:5]
        self.tmp = tmp
        self.namespaces: list[Path] = []
        self.links: list[str] = []

    def name(self, kind: str) -> str:
        name = f"cnrt{kind}{self.tag}"
        self.links.append(name)
        return name

    def namespace(self, n: int, want_socket: bool = False):
        path = self.tmp / f"ns{n}"
        self.namespaces.append(path)
        sock = netns.create(path, want_socket=want_socket)
        return (path, sock) if want_socket else path


@pytest.fixture
def scratch(tmp_path, no_leaks):
    before = _links()
    s = Scratch(tmp_path)
    try:
        yield s
    finally:
        for name in reversed(s.links):
            netlink.delete_link(name)
        for path in s.namespaces:
            netns.remove(path)
    assert _links() == before
    assert not any(p.exists() for p in s.namespaces)


def _ip(path: Path, *argv: str) -> str:
    r = subprocess.run(["nsenter", f"--net={path}", "--", "ip", *argv], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_requests_and_kernel_errnos_inside_a_namespace(scratch):
    path, sock = scratch.namespace(1, want_socket=True)
    with Rtnl(sock) as nl:
        assert [(li.name, li.kind) for li in nl.links()] == [("lo", None)]
        nl.new_link(name="br0", kind="bridge")
        with pytest.raises(NetlinkError) as err:
            nl.new_link(name="br0", kind="bridge")
        assert err.value.errno == errno.EEXIST
        br = nl.link("br0")
        assert br.kind == "bridge" and not br.flags & 1
        nl.add_addr(br.index, "10.217.0.1", 24)
        with pytest.raises(NetlinkError) as err:
            nl.add_addr(br.index, "10.217.0.1", 24)
        assert err.value.errno == errno.EEXIST
        assert [(a.address, a.prefixlen) for a in nl.addrs(br.index)] == [("10.217.0.1", 24)]
        nl.set_link(br.index, name="br1", address="02:42:0a:d9:00:01", up=None)
        nl.set_link(br.index, up=True)
        assert "link/ether 02:42:0a:d9:00:01" in _ip(path, "-o", "link", "show", "br1")
        assert nl.link("br0") is None
        assert nl.link("x" * 20) is None  # the kernel refuses the name: not there either
        nl.del_link(br.index)
        with pytest.raises(NetlinkError) as err:
            nl.del_link(br.index)
        assert err.value.errno == errno.ENODEV
    assert netlink.list_links(netns_path=str(path)) == ["lo"]


def test_ipv6_address_and_default_route(scratch):
    path, sock = scratch.namespace(1, want_socket=True)
    with Rtnl(sock) as nl:  # a veth pair wholly inside the namespace, peer up for carrier
        nl.new_link(name="tmp0", kind="veth", peer=veth_peer("peer0"))
        nl.set_link(nl.link("peer0").index, up=True)
    netlink.configure(str(path), "tmp0", "fd00:217::2/64", "fd00:217::1")
    assert "inet6 fd00:217::2/64" in _ip(path, "-6", "addr", "show", "eth0")
    assert "default via fd00:217::1 dev eth0" in _ip(path, "-6", "route")
    netlink.link_up("peer0", netns_path=str(path))  # already up: no error
    assert netlink.list_links(netns_path=str(path)) == ["eth0", "lo", "peer0"]


def test_bridge_gets_its_address_later_and_errors_translate(scratch):
    br = scratch.name("b")
    netlink.ensure_bridge(br)  # no address yet
    assert "inet " not in subprocess.run(["ip", "-4", "addr", "show", br], capture_output=True,
                                         text=True).stdout
    netlink.ensure_bridge(br, "10.217.1.1/24")
    netlink.ensure_bridge(br, "10.217.1.1/24")  # once only
    out = subprocess.run(["ip", "-4", "addr", "show", br], capture_output=True, text=True).stdout
    assert out.count("inet 10.217.1.1/24") == 1 and ",UP" in out
    path = scratch.namespace(1)
    with pytest.raises(NotFound, match="nosuch"):
        netlink.link_up("nosuch", netns_path=str(path))
    host = scratch.name("v")
    netlink.create_veth(host, "tmp0", str(path))
    with pytest.raises(AlreadyExists, match="cnrt"):  # same host name, another peer
        netlink.create_veth(host, "tmp1", str(path))
    netlink.delete_link(host)
    with pytest.raises(NotFound, match="network namespace"):
        netlink.create_veth(host, "tmp0", str(scratch.tmp / "nosuch"))


def test_plug_veth_failures_leave_nothing_behind(scratch):
    br = scratch.name("b")
    netlink.ensure_bridge(br, "10.217.2.1/24")
    path, sock = scratch.namespace(1, want_socket=True)
    host = scratch.name("v")
    kw = dict(host_name=host, peer_name="eth0", netns_path=str(path),
              address_cidr="10.217.2.2/24", gateway="10.217.2.1")
    with pytest.raises(NotFound, match="nosuch"):  # no bridge: nothing made, socket closed
        netlink.plug_veth(bridge="nosuch" + scratch.tag, ns_socket=sock, **kw)
    assert sock.fileno() == -1 and not os.path.exists(f"/sys/class/net/{host}")
    # a socket in *another* namespace: the peer is not found there, the pair is deleted
    _other, wrong = scratch.namespace(2, want_socket=True)
    with pytest.raises(NotFound, match="eth0"):
        netlink.plug_veth(bridge=br, ns_socket=wrong, **kw)
    assert wrong.fileno() == -1 and not os.path.exists(f"/sys/class/net/{host}")
    assert netlink.list_links(netns_path=str(path)) == ["lo"]  # the peer went with it
    netlink.plug_veth(bridge=br, **kw)  # and the names are free again
    assert "inet 10.217.2.2/24" in _ip(path, "-4", "addr", "show", "eth0")


def test_an_rtnl_socket_is_closed_with_it():
    nl = Rtnl()
    sock: socket.socket = nl._sock
    nl.close()
    assert sock.fileno() == -1
