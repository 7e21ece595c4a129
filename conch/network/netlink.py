"""Links, addresses and routes over rtnetlink, in the host's network namespace or in one
bound at a path (see :mod:`conch.network.netns`).

The netlink client is our own :mod:`conch.network.rtnl` (standard library only), not
pyroute2: conch needs a small fixed subset of rtnetlink, and pyroute2 0.9 cost conchd
~10.8 MiB of RSS (issue 3's idle-memory goal) and 1-2 ms per ``IPRoute()`` on every
container start; the measurements are in rtnl's docstring and bench/netlink_bench.py.

The daemon never enters a namespace (DESIGN.md). Instead a netlink socket is made
*inside* the namespace by a freshly exec'd helper (the C ``conch-netns``, or
``nsenter --net=PATH python -I -S -c ...`` where it is not built) that hands the
descriptor back over an inherited unix socket (SCM_RIGHTS) and exits. A socket stays in
the namespace it was created in, so every request on it acts there, from this process.

Every netlink failure becomes a :mod:`conch.errors` kind naming the interface:
EEXIST -> AlreadyExists, ENODEV/ENOENT/ESRCH -> NotFound, EPERM/EACCES ->
PermissionDenied, EINVAL/ERANGE -> InvalidArgument, anything else -> SystemCallError.

Importing this module costs only the standard library.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

from conch.errors import (
    AlreadyExists, ConchError, Conflict, InvalidArgument, NotFound, PermissionDenied, SystemCallError,
    Unavailable,
)
from conch.network.rtnl import Rtnl, veth_peer

__all__ = [
    "ensure_bridge", "delete_link", "create_veth", "attach_to_bridge", "configure",
    "link_exists", "list_links", "link_up", "mac_for_ip", "netns_socket", "plug_veth", "check_ifname",
]

log = logging.getLogger(__name__)

IFNAMSIZ = 15  # usable characters of an interface name (IFNAMSIZ 16 with the NUL)

_ERRNO_KINDS: dict[int, type[ConchError]] = {
    errno.EEXIST: AlreadyExists,
    errno.ENODEV: NotFound, errno.ENOENT: NotFound, errno.ESRCH: NotFound,
    errno.EPERM: PermissionDenied, errno.EACCES: PermissionDenied,
    errno.EINVAL: InvalidArgument, errno.ERANGE: InvalidArgument,
}

# Runs in the namespace (via nsenter): make one NETLINK_ROUTE socket, send it back, exit.
_SOCKET_HELPER = (
    "import socket,sys\n"
    "c=socket.socket(fileno=int(sys.argv[1]))\n"
    "s=socket.socket(socket.AF_NETLINK,socket.SOCK_DGRAM,socket.NETLINK_ROUTE)\n"
    "socket.send_fds(c,[b'nl'],[s.fileno()])\n"
)


def mac_for_ip(ip: str) -> str:
    """Docker's MAC for an IPv4 address: ``02:42:`` then the four address bytes."""
    packed = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def check_ifname(name: str) -> None:
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid interface name {name!r} (1-{IFNAMSIZ} characters, "
                              "no '/' or spaces)")


def _translate(exc: Exception, op: str, ifname: str) -> ConchError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None) or errno.EIO
    kind = _ERRNO_KINDS.get(code)
    if kind is not None:
        return kind(f"{op} {ifname}: {os.strerror(code)}")
    return SystemCallError(f"netlink {op}", code, ifname)


def helper_binary() -> str | None:
    """``conch-netns`` (shim/conch-netns.c, built by ``make setup``): next to this
    Python, in the source tree's build/, or on PATH. None when absent."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(os.path.dirname(sys.executable), "conch-netns"),
                 os.path.join(here, "..", "..", "build", "conch-netns"),
                 shutil.which("conch-netns") or ""):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def netns_socket(netns_path: str, *, create: bool = False) -> socket.socket:
    """A NETLINK_ROUTE socket living in the namespace bound at ``netns_path``.

    With ``create``, the namespace is made first (unshared by the helper, bound at the
    existing file ``netns_path``, ``lo`` up): one exec for both. The helper is the C
    ``conch-netns`` (~1 ms); without it, ``nsenter`` + an isolated Python (~20 ms), and
    creation is the caller's job (``unshare --net=PATH``)."""
    if not os.path.exists(netns_path):
        raise NotFound(f"network namespace {netns_path}")
    helper = helper_binary()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        if helper is not None:
            argv = [helper, "new" if create else "join", netns_path, str(theirs.fileno())]
        else:
            if create:
                raise Unavailable("conch-netns is needed to create a namespace here: run `make setup`")
            nsenter = shutil.which("nsenter")
            if nsenter is None:
                raise Unavailable("nsenter (util-linux) is needed to reach network namespaces")
            argv = [nsenter, f"--net={netns_path}", "--", sys.executable, "-I", "-S", "-c",
                    _SOCKET_HELPER, str(theirs.fileno())]
        proc = subprocess.run(argv, pass_fds=(theirs.fileno(),), capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            raise Unavailable(f"opening netlink in {netns_path}: {proc.stderr.strip()}")
        ours.setblocking(False)
        try:
            _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        except BlockingIOError as exc:
            raise Unavailable(f"opening netlink in {netns_path}: helper sent nothing") from exc
    if not fds:
        raise Unavailable(f"opening netlink in {netns_path}: helper sent no descriptor")
    return socket.socket(fileno=fds[0])


def _rtnl(netns_path: str | None = None) -> Rtnl:
    """A netlink socket here, or inside the namespace bound at ``netns_path``."""
    return Rtnl() if netns_path is None else Rtnl(netns_socket(netns_path))


def _index(nl: Rtnl, name: str, netns_path: str | None = None) -> int:
    link = nl.link(name)
    if link is None:
        where = f" in {netns_path}" if netns_path else ""
        raise NotFound(f"network interface {name!r}{where}")
    return link.index


@contextmanager
def _op(op: str, ifname: str) -> Iterator[None]:
    """Kernel errors of the calls inside, as the conch kind for their errno."""
    try:
        yield
    except OSError as exc:
        raise _translate(exc, op, ifname) from exc


def link_exists(name: str, netns_path: str | None = None) -> bool:
    with _rtnl(netns_path) as nl:
        return nl.link(name) is not None


def list_links(prefix: str = "", netns_path: str | None = None) -> list[str]:
    """Names of the links whose name starts with ``prefix``, sorted."""
    with _rtnl(netns_path) as nl, _op("link dump", prefix or "*"):
        names = (link.name for link in nl.links())
        return sorted(n for n in names if n and n.startswith(prefix))


def link_up(name: str, netns_path: str | None = None) -> None:
    with _rtnl(netns_path) as nl:
        idx = _index(nl, name, netns_path)
        with _op("link set", name):
            nl.set_link(idx, up=True)


def ensure_bridge(name: str, cidr: str | None = None) -> None:
    """Create bridge ``name`` when missing, give it ``cidr`` (the gateway address with the
    subnet's prefix, e.g. ``172.17.0.1/16``) when it lacks it, and bring it up.
    An existing link of another kind under that name is a Conflict."""
    check_ifname(name)
    iface = ipaddress.ip_interface(cidr) if cidr else None
    with _rtnl() as nl:
        link = nl.link(name)
        if link is not None:
            if link.kind != "bridge":
                raise Conflict(f"network interface {name!r} exists and is a "
                               f"{link.kind or 'device'}, not a bridge")
        else:
            with _op("link add", name):
                nl.new_link(name=name, kind="bridge")
        idx = _index(nl, name)
        if iface is not None:
            with _op("addr dump", name):
                have = {(a.address, a.prefixlen) for a in nl.addrs(idx)}
            if (str(iface.ip), iface.network.prefixlen) not in have:
                with _op("addr add", name):
                    nl.add_addr(idx, str(iface.ip), iface.network.prefixlen)
        with _op("link set", name):
            nl.set_link(idx, up=True)


def delete_link(name: str, netns_path: str | None = None) -> None:
    """Delete link ``name``; deleting a missing link is a no-op (deleting one end of a
    veth pair removes the other)."""
    with _rtnl(netns_path) as nl:
        link = nl.link(name)
        if link is None:
            return
        try:
            with _op("link del", name):
                nl.del_link(link.index)
        except NotFound:
            pass  # gone in between: the outcome asked for


def create_veth(host_name: str, peer_name: str, netns_path: str) -> None:
    """A veth pair: ``host_name`` stays here (down), ``peer_name`` is created directly in
    the namespace bound at ``netns_path``, so it never appears in the host namespace."""
    check_ifname(host_name)
    check_ifname(peer_name)
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"network namespace {netns_path}") from exc
    try:
        with _rtnl() as nl, _op("link add", host_name):
            nl.new_link(name=host_name, kind="veth", peer=veth_peer(peer_name, fd))
    finally:
        os.close(fd)


def attach_to_bridge(ifname: str, bridge: str) -> None:
    """Enslave ``ifname`` (host side) to ``bridge`` and bring it up."""
    with _rtnl() as nl:
        br = _index(nl, bridge)
        idx = _index(nl, ifname)
        with _op("link set", ifname):
            nl.set_link(idx, master=br)
            nl.set_link(idx, up=True)


def configure(netns_path: str, ifname: str, address_cidr: str, gateway: str | None,
              new_name: str = "eth0", mac: str | None = None) -> None:
    """Inside the namespace, in order: rename ``ifname`` to ``new_name`` (a link must be
    down to be renamed), set ``mac`` (default: :func:`mac_for_ip` for IPv4), add
    ``address_cidr``, bring the link up, then add the default route via ``gateway``
    (which needs the link up and the gateway on-link)."""
    check_ifname(new_name)
    iface = ipaddress.ip_interface(address_cidr)
    if mac is None and iface.version == 4:
        mac = mac_for_ip(str(iface.ip))
    with _rtnl(netns_path) as nl:
        idx = _index(nl, ifname, netns_path)
        with _op("link set", ifname):
            nl.set_link(idx, up=False)
            if new_name != ifname:
                nl.set_link(idx, name=new_name)
        with _op("link set", new_name):
            if mac is not None:
                nl.set_link(idx, address=mac)
        with _op("addr add", new_name):
            nl.add_addr(idx, str(iface.ip), iface.network.prefixlen)
        with _op("link set", new_name):
            nl.set_link(idx, up=True)
        lo = nl.link("lo")
        if lo is not None:
            with _op("link set", "lo"):
                nl.set_link(lo.index, up=True)
        if gateway is not None:
            with _op("route add", new_name):
                nl.add_default_route(gateway, idx)


def plug_veth(*, host_name: str, peer_name: str, bridge: str, netns_path: str,
              address_cidr: str, gateway: str | None, mac: str | None = None,
              hairpin: bool = True, ns_socket: socket.socket | None = None,
              address6_cidr: str | None = None, gateway6: str | None = None,
              extra_cidrs=()) -> None:
    """One container endpoint in as few kernel round trips and processes as possible:
    the veth pair created with its host end already on ``bridge`` and up and its peer
    created inside the namespace as ``peer_name`` with ``mac``; then, over a netlink
    socket in the namespace (``ns_socket``, consumed, or one opened for the call), the
    address, the link up and the default route via ``gateway``. ``hairpin`` lets a
    container reach its own published ports through the host's address.
    On failure the pair is deleted."""
    check_ifname(host_name)
    check_ifname(peer_name)
    iface = ipaddress.ip_interface(address_cidr)
    if mac is None and iface.version == 4:
        mac = mac_for_ip(str(iface.ip))
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        if ns_socket is not None:
            ns_socket.close()
        raise NotFound(f"network namespace {netns_path}") from exc
    try:
        with _rtnl() as nl:
            br = _index(nl, bridge)
            with _op("link add", host_name):
                nl.new_link(name=host_name, up=True, master=br, kind="veth",
                            peer=veth_peer(peer_name, fd, mac))
    except BaseException:
        if ns_socket is not None:
            ns_socket.close()
        raise
    finally:
        os.close(fd)
    try:
        if hairpin:
            with open(f"/sys/class/net/{host_name}/brport/hairpin_mode", "w") as f:
                f.write("1")
        nl = Rtnl(ns_socket) if ns_socket is not None else _rtnl(netns_path)
        with nl:
            idx = _index(nl, peer_name, netns_path)
            with _op("addr add", peer_name):
                nl.add_addr(idx, str(iface.ip), iface.network.prefixlen)
                if address6_cidr:  # an EnableIPv6 network's address too
                    iface6 = ipaddress.ip_interface(address6_cidr)
                    nl.add_addr(idx, str(iface6.ip), iface6.network.prefixlen)
                for cidr in extra_cidrs:  # link-local ones the endpoint asked for
                    extra = ipaddress.ip_interface(cidr)
                    nl.add_addr(idx, str(extra.ip), extra.network.prefixlen)
            with _op("link set", peer_name):
                nl.set_link(idx, up=True)
            if gateway is not None:
                with _op("route add", peer_name):
                    nl.add_default_route(gateway, idx)
            if address6_cidr and gateway6 is not None:
                with _op("route add", peer_name):
                    nl.add_default_route(gateway6, idx)
    except BaseException:
        delete_link(host_name)
        raise
