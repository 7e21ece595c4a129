"""Links, addresses and routes over rtnetlink (pyroute2), in the host's network
namespace or in one bound at a path (see :mod:`conch.network.netns`).

The daemon never enters a namespace (DESIGN.md): pyroute2's own ``NetNS`` forks the
calling process and ``setns``-es the child, so it is not used. Instead a netlink socket
is made *inside* the namespace by a freshly exec'd helper (the C ``conch-netns``, or
``nsenter --net=PATH python -I -S -c ...`` where it is not built) that hands the
descriptor back over an inherited unix socket (SCM_RIGHTS) and exits. A socket stays in the namespace it was created in, so every
request on it acts there, from this process.

Every netlink failure becomes a :mod:`conch.errors` kind naming the interface:
EEXIST -> AlreadyExists, ENODEV/ENOENT/ESRCH -> NotFound, EPERM/EACCES ->
PermissionDenied, EINVAL/ERANGE -> InvalidArgument, anything else -> SystemCallError.

pyroute2 is imported lazily, so importing this module costs nothing.
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

__all__ = [
    "ensure_bridge", "delete_link", "create_veth", "attach_to_bridge", "configure",
    "link_exists", "list_links", "link_up", "mac_for_ip", "netns_socket", "plug_veth",
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


def _check_name(name: str) -> None:
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


@contextmanager
def _iproute(netns_path: str | None = None) -> Iterator:
    from pyroute2 import IPRoute  # lazy: pyroute2 is heavy to import

    if netns_path is None:
        ipr = IPRoute()
    else:
        sock = netns_socket(netns_path)
        ipr = IPRoute(fileno=sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr, name: str, netns_path: str | None = None) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        where = f" in {netns_path}" if netns_path else ""
        raise NotFound(f"network interface {name!r}{where}")
    return found[0]


def link_exists(name: str, netns_path: str | None = None) -> bool:
    with _iproute(netns_path) as ipr:
        return bool(ipr.link_lookup(ifname=name))


def list_links(prefix: str = "", netns_path: str | None = None) -> list[str]:
    """Names of the links whose name starts with ``prefix``, sorted."""
    with _iproute(netns_path) as ipr:
        names = (link.get("ifname") for link in ipr.get_links())
        return sorted(n for n in names if n and n.startswith(prefix))


def link_up(name: str, netns_path: str | None = None) -> None:
    with _iproute(netns_path) as ipr:
        idx = _index(ipr, name, netns_path)
        _call(ipr.link, "set", name, index=idx, state="up")


def _call(fn, op: str, _name: str, /, **kwargs):
    from pyroute2 import NetlinkError

    try:
        return fn(op, **kwargs)
    except (NetlinkError, OSError) as exc:
        raise _translate(exc, f"{getattr(fn, '__name__', 'netlink')} {op}", _name) from exc


def ensure_bridge(name: str, cidr: str | None = None) -> None:
    """Create bridge ``name`` when missing, give it ``cidr`` (the gateway address with the
    subnet's prefix, e.g. ``172.17.0.1/16``) when it lacks it, and bring it up.
    An existing link of another kind under that name is a Conflict."""
    _check_name(name)
    iface = ipaddress.ip_interface(cidr) if cidr else None
    with _iproute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            (link,) = ipr.get_links(found[0])
            kind = _link_kind(link)
            if kind != "bridge":
                raise Conflict(f"network interface {name!r} exists and is a {kind or 'device'}, "
                                "not a bridge")
        else:
            _call(ipr.link, "add", name, ifname=name, kind="bridge")
        idx = _index(ipr, name)
        if iface is not None:
            have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx)}
            if (str(iface.ip), iface.network.prefixlen) not in have:
                _call(ipr.addr, "add", name, index=idx, address=str(iface.ip),
                      prefixlen=iface.network.prefixlen)
        _call(ipr.link, "set", name, index=idx, state="up")


def _link_kind(link) -> str | None:
    info = link.get("IFLA_LINKINFO")
    return info.get("IFLA_INFO_KIND") if info is not None else None


def delete_link(name: str, netns_path: str | None = None) -> None:
    """Delete link ``name``; deleting a missing link is a no-op (deleting one end of a
    veth pair removes the other)."""
    with _iproute(netns_path) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return
        try:
            _call(ipr.link, "del", name, index=found[0])
        except NotFound:
            pass  # gone in between: the outcome asked for


def create_veth(host_name: str, peer_name: str, netns_path: str) -> None:
    """A veth pair: ``host_name`` stays here (down), ``peer_name`` is created directly in
    the namespace bound at ``netns_path``, so it never appears in the host namespace."""
    _check_name(host_name)
    _check_name(peer_name)
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"network namespace {netns_path}") from exc
    try:
        with _iproute() as ipr:
            _call(ipr.link, "add", host_name, ifname=host_name, kind="veth",
                  peer={"ifname": peer_name, "net_ns_fd": fd})
    finally:
        os.close(fd)


def attach_to_bridge(ifname: str, bridge: str) -> None:
    """Enslave ``ifname`` (host side) to ``bridge`` and bring it up."""
    with _iproute() as ipr:
        br = _index(ipr, bridge)
        idx = _index(ipr, ifname)
        _call(ipr.link, "set", ifname, index=idx, master=br)
        _call(ipr.link, "set", ifname, index=idx, state="up")


def configure(netns_path: str, ifname: str, address_cidr: str, gateway: str | None,
              new_name: str = "eth0", mac: str | None = None) -> None:
    """Inside the namespace, in order: rename ``ifname`` to ``new_name`` (a link must be
    down to be renamed), set ``mac`` (default: :func:`mac_for_ip` for IPv4), add
    ``address_cidr``, bring the link up, then add the default route via ``gateway``
    (which needs the link up and the gateway on-link)."""
    _check_name(new_name)
    iface = ipaddress.ip_interface(address_cidr)
    if mac is None and iface.version == 4:
        mac = mac_for_ip(str(iface.ip))
    with _iproute(netns_path) as ipr:
        idx = _index(ipr, ifname, netns_path)
        _call(ipr.link, "set", ifname, index=idx, state="down")
        if new_name != ifname:
            _call(ipr.link, "set", ifname, index=idx, ifname=new_name)
        if mac is not None:
            _call(ipr.link, "set", new_name, index=idx, address=mac)
        _call(ipr.addr, "add", new_name, index=idx, address=str(iface.ip),
              prefixlen=iface.network.prefixlen)
        _call(ipr.link, "set", new_name, index=idx, state="up")
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            _call(ipr.link, "set", "lo", index=lo[0], state="up")
        if gateway is not None:
            default = "0.0.0.0/0" if iface.version == 4 else "::/0"
            _call(ipr.route, "add", new_name, dst=default, gateway=gateway, oif=idx)


def plug_veth(*, host_name: str, peer_name: str, bridge: str, netns_path: str,
              address_cidr: str, gateway: str | None, mac: str | None = None,
              hairpin: bool = True, ns_socket: socket.socket | None = None) -> None:
    """One container endpoint in as few kernel round trips and processes as possible:
    the veth pair created with its host end already on ``bridge`` and up and its peer
    created inside the namespace as ``peer_name`` with ``mac``; then, over a netlink
    socket in the namespace (``ns_socket``, consumed, or one opened for the call), the
    address, the link up and the default route via ``gateway``. ``hairpin`` lets a
    container reach its own published ports through the host's address.
    On failure the pair is deleted."""
    _check_name(host_name)
    _check_name(peer_name)
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
        peer = {"ifname": peer_name, "net_ns_fd": fd}
        if mac is not None:
            peer["address"] = mac
        with _iproute() as ipr:
            br = _index(ipr, bridge)
            _call(ipr.link, "add", host_name, ifname=host_name, kind="veth", peer=peer,
                  master=br, state="up")
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
        from pyroute2 import IPRoute

        sock = ns_socket if ns_socket is not None else netns_socket(netns_path)
        ipr = IPRoute(fileno=sock.detach())
        try:
            idx = _index(ipr, peer_name, netns_path)
            _call(ipr.addr, "add", peer_name, index=idx, address=str(iface.ip),
                  prefixlen=iface.network.prefixlen)
            _call(ipr.link, "set", peer_name, index=idx, state="up")
            if gateway is not None:
                default = "0.0.0.0/0" if iface.version == 4 else "::/0"
                _call(ipr.route, "add", peer_name, dst=default, gateway=gateway, oif=idx)
        finally:
            ipr.close()
    except BaseException:
        delete_link(host_name)
        raise
