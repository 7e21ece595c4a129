"""conch.network against the real kernel: namespaces, a bridge, veths, addresses from a
Pool, and pings between them.

Safety: every address lives in 10.213.0.0/16 on bridges and in namespaces these tests
create; traffic goes only between those namespaces. Everything is deleted in
``finally``/fixtures, and each test asserts /sys/class/net and the namespace files are
back as they were (plus the session's ``no_leaks`` mount/process check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conch.errors import AlreadyExists, Conflict, NotFound
from conch.network import netlink, netns
from conch.network.ipam import Pool

pytestmark = pytest.mark.root


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    if not Path("/proc/self/ns/net").exists():
        return "kernel without network namespaces"
    return None


_SKIP = _probe()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)


def _ping_cmd() -> list[str]:
    busybox = shutil.which("busybox")
    if busybox:
        return [busybox, "ping"]
    ping = shutil.which("ping")
    if ping:
        return [ping]
    pytest.skip("no ping (busybox-static or iputils-ping)")


def _links() -> set[str]:
    """This module's links (``cn...``): other engines on the machine make and remove
    their own bridges and veths meanwhile."""
    return {n for n in os.listdir("/sys/class/net") if n.startswith("cn")}


class Net:
    """What one test made; torn down in reverse order, whatever happened."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.tag = uuid.uuid4().hex[:5]
        self.bridges: list[str] = []
        self.namespaces: list[Path] = []
        self.veths: list[str] = []

    def name(self, kind: str, n: int) -> str:
        return f"cn{kind}{self.tag}{n}"  # <= 15 chars

    def bridge(self, n: int, pool: Pool) -> str:
        name = self.name("br", n)
        self.bridges.append(name)
        netlink.ensure_bridge(name, pool.cidr(str(pool.gateway)))
        return name

    def namespace(self, n: int) -> Path:
        path = self.tmp / "netns" / f"ns{n}"
        self.namespaces.append(path)
        netns.create(path)
        return path

    def attach(self, n: int, bridge: str, pool: Pool, route: bool = True) -> tuple[Path, str]:
        """A namespace with eth0 on ``bridge`` at the pool's next address (and a default
        route via the pool's gateway when ``route``)."""
        path = self.namespace(n)
        host = self.name("vh", n)
        self.veths.append(host)
        netlink.create_veth(host, "tmp0", str(path))
        netlink.attach_to_bridge(host, bridge)
        ip = pool.allocate()
        netlink.configure(str(path), "tmp0", pool.cidr(ip), str(pool.gateway) if route else None)
        return path, ip

    def cleanup(self) -> None:
        # Deleted explicitly: a veth would die with its peer's namespace, but namespaces
        # are torn down asynchronously by the kernel, after remove() returns.
        for name in reversed(self.veths):
            netlink.delete_link(name)
        for path in reversed(self.namespaces):
            netns.remove(path)
        for name in reversed(self.bridges):
            netlink.delete_link(name)


@pytest.fixture
def net(tmp_path, no_leaks):
    before = _links()
    n = Net(tmp_path)
    try:
        yield n
    finally:
        n.cleanup()
    assert _links() == before
    for path in n.namespaces:
        assert not path.exists() and not netns.is_bound(path)


def _ns_run(path: Path, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={path}", "--", *argv], capture_output=True,
                          text=True, timeout=timeout)


def _ip(path: Path, *argv: str) -> str:
    """iproute2 inside the namespace (sysfs would show the mounter's namespace)."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    r = _ns_run(path, "ip", *argv)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _ping(path: Path, ip: str) -> subprocess.CompletedProcess:
    return _ns_run(path, *_ping_cmd(), "-c1", "-W1", ip)


def test_two_namespaces_on_a_bridge_ping_each_other(net):
    pool = Pool("10.213.1.0/24")
    br = net.bridge(1, pool)
    ns_a, ip_a = net.attach(1, br, pool)
    ns_b, ip_b = net.attach(2, br, pool)
    assert (ip_a, ip_b) == ("10.213.1.2", "10.213.1.3")
    assert netlink.list_links(netns_path=str(ns_a)) == ["eth0", "lo"]
    mac = Path("/sys/class/net")  # the peer is not in our namespace
    assert not (mac / "tmp0").exists()
    assert "link/ether 02:42:0a:d5:01:02 " in _ip(ns_a, "-o", "link", "show", "dev", "eth0")
    assert f"inet {ip_a}/24 " in _ip(ns_a, "-o", "-4", "addr", "show", "dev", "eth0")
    r = _ping(ns_a, ip_b)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _ping(ns_b, ip_a)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"default via {pool.gateway} dev eth0" in _ip(ns_a, "route")


def test_namespace_on_another_bridge_cannot_reach(net):
    pool1, pool2 = Pool("10.213.2.0/24"), Pool("10.213.3.0/24")
    br1, br2 = net.bridge(1, pool1), net.bridge(2, pool2)
    ns_a, ip_a = net.attach(1, br1, pool1)
    ns_b, ip_b = net.attach(2, br1, pool1)
    # C has no default route: whatever the host's ip_forward (which the test must not
    # touch), 10.213.2.0/24 is unreachable from C, and C cannot answer A.
    ns_c, ip_c = net.attach(3, br2, pool2, route=False)
    assert _ping(ns_a, ip_b).returncode == 0
    assert "default" not in _ip(ns_c, "route")
    r = _ping(ns_c, ip_a)
    assert r.returncode != 0 and "unreachable" in (r.stdout + r.stderr).lower()
    assert _ping(ns_a, ip_c).returncode != 0
    assert _ping(ns_c, ip_b).returncode != 0


def test_fresh_namespace_has_only_lo_up(net):
    path = net.namespace(1)
    assert netns.is_bound(path)
    assert netlink.list_links(netns_path=str(path)) == ["lo"]
    assert ",UP," in _ip(path, "-o", "link", "show", "dev", "lo")
    netns.create(path)  # idempotent
    assert netlink.list_links(netns_path=str(path)) == ["lo"]


def test_remove_is_idempotent(net):
    path = net.namespace(1)
    netns.remove(path)
    netns.remove(path)
    assert not path.exists()


def test_bridge_is_idempotent_and_errors_name_the_link(net):
    pool = Pool("10.213.4.0/24")
    br = net.bridge(1, pool)
    netlink.ensure_bridge(br, pool.cidr(str(pool.gateway)))  # again: no error, one address
    assert netlink.link_exists(br)
    assert br in netlink.list_links("cnbr" + net.tag)
    path = net.namespace(1)
    host = net.name("vh", 1)
    net.veths.append(host)
    netlink.create_veth(host, "tmp0", str(path))
    with pytest.raises(AlreadyExists, match=host):
        netlink.create_veth(host, "tmp1", str(path))
    with pytest.raises(Conflict, match=host):
        netlink.ensure_bridge(host)
    with pytest.raises(NotFound, match="nosuch"):
        netlink.attach_to_bridge("nosuch" + net.tag, br)
    with pytest.raises(NotFound, match="tmp9"):
        netlink.configure(str(path), "tmp9", "10.213.4.2/24", "10.213.4.1")
    netlink.delete_link(host)
    netlink.delete_link(host)  # missing: no-op
    assert not netlink.link_exists(host)
    assert netlink.list_links(netns_path=str(path)) == ["lo"]  # the peer went with it


def test_plug_veth_in_one_go_reaches_the_bridge(net):
    """The engine's path: the namespace made by conch-netns with a netlink socket handed
    back, then plug_veth (pair on the bridge, peer named and addressed inside, route)."""
    pool = Pool("10.251.7.0/24")
    bridge = net.bridge(1, pool)
    path = net.tmp / "netns" / "fast"
    net.namespaces.append(path)
    sock = netns.create(path, want_socket=True)
    host = net.name("vf", 1)
    net.veths.append(host)
    ip = pool.allocate()
    netlink.plug_veth(host_name=host, peer_name="eth0", bridge=bridge, netns_path=str(path),
                      address_cidr=pool.cidr(ip), gateway=str(pool.gateway), ns_socket=sock)
    assert f"inet {ip}/24" in _ip(path, "addr", "show", "eth0")
    assert f"default via {pool.gateway} dev eth0" in _ip(path, "route")
    assert netlink.mac_for_ip(ip) in _ip(path, "link", "show", "eth0")
    assert Path(f"/sys/class/net/{host}/master").resolve().name == bridge
    assert Path(f"/sys/class/net/{host}/brport/hairpin_mode").read_text().strip() == "1"
    r = _ping(path, str(pool.gateway))
    assert r.returncode == 0, r.stdout + r.stderr
    with pytest.raises(AlreadyExists):  # the name is taken: the engine deletes and retries
        netlink.plug_veth(host_name=host, peer_name="eth0", bridge=bridge, netns_path=str(path),
                          address_cidr=pool.cidr(pool.allocate()), gateway=None)
