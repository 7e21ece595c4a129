"""Published ports for the host's own connections, at connect() time (socket LB).

A host process that connects to a published port (``127.0.0.1:8881``, or a host address
for a ``0.0.0.0`` publish) would go through the nftables DNAT in ``output``: per-packet
NAT, conntrack, ``route_localnet`` and a masquerade for 127/8 sources. Here cgroup
``sock_addr`` eBPF programs (what Cilium's socket LB does) rewrite the destination once,
in connect() (TCP, connected UDP) and in sendmsg() (unconnected UDP), so the connection
goes straight to the container's address: no NAT, the container sees the host's bridge
address as the source. getpeername() and recvfrom() show the address the application
asked for. Packets from elsewhere (other hosts, containers) still take the nft rules,
which stay complete: they are also the fallback for everything this module skips.

Choices:

- Only sockets of *conchd's* network namespace (the host's) are rewritten: the program
  compares ``bpf_get_netns_cookie`` with ours. A container's ``127.0.0.1:8881`` is its
  own loopback and must not be sent elsewhere, and a container reaching a published port
  through a host address keeps docker's path (DNAT, hairpin, accepted across network
  isolation by ``ct status dnat``). ``--network host`` containers share the host's
  namespace and get the shortcut.
- Host addresses for ``0.0.0.0`` publishes: 127.0.0.0/8 is matched in the program; the
  other local addresses are a map that :meth:`SocketLB.refresh_addresses` fills from
  ``/proc/net/fib_trie`` (at start and reconcile, on each 0.0.0.0 publish, on network
  create). An address that appears in between is served by the nft DNAT until the next
  refresh.
- The original address is remembered per socket (LRU map keyed by socket cookie and
  container address, as Cilium's ``lb4_reverse_sk``): two publishes of one container
  port, or one ``0.0.0.0`` publish reached by different host addresses, stay exact. An
  entry can be evicted by 16k newer published-port connections; getpeername() then
  shows the container's address (the connection itself is unaffected).
- tcp and udp only; sctp stays on nft.

Lifetime: the programs are attached to the root of the cgroup v2 hierarchy with
BPF_LINK_CREATE and conchd holds the link fds (close-on-exec): when conchd exits, even
by SIGKILL, the kernel detaches them and frees the maps; nothing is pinned. The next
conchd attaches anew and :meth:`sync` refills the map from the live published ports.
:meth:`start` is the probe: without cgroup2, BPF or the privilege, it logs one line and
every method becomes a no-op (nft alone serves the ports). Needs Linux >= 5.14
(SO_NETNS_COOKIE; the getpeername hook is 5.8, cgroup links 5.7). Thread-safe.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading

from conch.errors import ConchError

__all__ = ["SocketLB", "cgroup2_root", "host_addresses"]

log = logging.getLogger(__name__)

_SO_NETNS_COOKIE = 71  # <asm-generic/socket.h>, Linux 5.14
_MAX_PORTS, _MAX_LOCAL, _MAX_REV = 4096, 1024, 16384


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the root of the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` on a
    unified host, ``/sys/fs/cgroup/unified`` on a v1-hybrid one), or None."""
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            pre = fields[0].split()
            if pre[3] == "/":
                return pre[4]
    return None


def host_addresses(fib_trie: str = "/proc/net/fib_trie") -> set[str]:
    """This namespace's local IPv4 addresses outside 127.0.0.0/8 (``/32 host LOCAL``)."""
    with open(fib_trie) as f:
        lines = f.read().splitlines()
    out, last = set(), ""
    for line in lines:
        text = line.strip()
        if text.startswith("|--"):  # a leaf: its routes follow
            last = text.split()[1]
        elif text == "/32 host LOCAL" and last and not last.startswith("127."):
            out.add(last)
    return out


def netns_cookie() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8))[0]


class SocketLB:
    """The maps and the four attached programs; disabled until :meth:`start` succeeds."""

    def __init__(self, *, cgroup_root: str | None = None):
        self._cgroup_root = cgroup_root
        self._lock = threading.Lock()
        self._fds: list[int] = []  # everything to close, links first
        self._maps: dict[str, int] = {}
        self._progs: list[int] = []
        self._ports: dict[bytes, bytes] = {}
        self._local: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._maps)

    def start(self) -> bool:
        """Load and attach (idempotent); False, after one log line, when this host
        cannot: the nft rules then serve every connection."""
        with self._lock:
            if self._maps:
                return True
            try:
                self._load()
            except (ConchError, OSError) as exc:
                self._close_fds()
                log.info("socket-level port publishing unavailable, nft DNAT only: %s", exc)
                return False
        self.refresh_addresses()
        return True

    def _load(self) -> None:
        from conch.kernel import bpf
        from conch.network import socklb_prog as prog

        root = self._cgroup_root or cgroup2_root()
        if root is None:
            raise OSError("no cgroup2 hierarchy is mounted")
        cookie = netns_cookie()
        for name, kind, key, value, size in (
                ("ports", bpf.MAP_TYPE_HASH, prog.PORTS_KEY, prog.ADDR_VALUE, _MAX_PORTS),
                ("local", bpf.MAP_TYPE_HASH, prog.LOCAL_KEY, 4, _MAX_LOCAL),
                ("rev", bpf.MAP_TYPE_LRU_HASH, prog.REV_KEY, prog.ADDR_VALUE, _MAX_REV)):
            fd = bpf.map_create(kind, key, value, size, name=f"conch_{name}")
            self._fds.append(fd)
            self._maps[name] = fd
        m = self._maps
        fwd = bpf.assemble(prog.forward(ports_fd=m["ports"], local_fd=m["local"],
                                        rev_fd=m["rev"], netns_cookie=cookie))
        rev = bpf.assemble(prog.reverse(rev_fd=m["rev"]))
        cg = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for code, attach, name in ((fwd, bpf.CGROUP_INET4_CONNECT, "conch_connect4"),
                                       (fwd, bpf.CGROUP_UDP4_SENDMSG, "conch_sendmsg4"),
                                       (rev, bpf.CGROUP_INET4_GETPEERNAME, "conch_peer4"),
                                       (rev, bpf.CGROUP_UDP4_RECVMSG, "conch_recvmsg4")):
                pfd = bpf.prog_load(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, code,
                                    expected_attach_type=attach, name=name)
                self._fds.append(pfd)
                self._progs.append(pfd)
                self._fds.insert(0, bpf.link_create(pfd, cg, attach))
        finally:
            os.close(cg)
        if self._ports:  # a restart of the same object: refill
            for key, value in self._ports.items():
                bpf.map_update(m["ports"], key, value)

    def close(self) -> None:
        """Detach and free everything (the ports stay served by nft)."""
        with self._lock:
            self._close_fds()

    def _close_fds(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds, self._maps, self._progs, self._local = [], {}, [], set()

    def program_ids(self) -> list[int]:
        """Kernel ids of the attached programs (tests check they go away)."""
        from conch.kernel import bpf

        with self._lock:
            return [bpf.obj_id(fd) for fd in self._progs]

    # -- published ports ---------------------------------------------------------------

    def publish(self, ports: list[dict]) -> None:
        """Add ports (dicts with proto, host_ip, host_port, container_ip, container_port,
        as the engine keeps them); sctp and failures are left to nft (logged)."""
        entries = _entries(ports)
        if not entries or not self.enabled:
            return
        if any(p["host_ip"] in ("", "0.0.0.0") for p in ports):
            self.refresh_addresses()
        self._apply(entries, {})

    def unpublish(self, ports: list[dict]) -> None:
        """Remove ports (the same dicts; only proto/host_ip/host_port are read)."""
        keys = _keys(ports)
        if keys and self.enabled:
            self._apply({}, dict.fromkeys(keys))

    def sync(self, ports: list[dict]) -> None:
        """Make the map hold exactly ``ports`` (conchd's start and reconcile)."""
        wanted = _entries(ports)
        if not self.enabled:
            return
        stale = {k: None for k in self._current_keys() if k not in wanted}
        self._apply(wanted, stale)
        self.refresh_addresses()

    def published(self) -> list[tuple[str, str, int, str, int]]:
        """(proto, host_ip, host_port, container_ip, container_port) in the map, sorted."""
        from conch.network import socklb_prog as prog

        names = {v: k for k, v in prog.PROTO_NUMBERS.items()}
        out = []
        with self._lock:
            items = list(self._ports.items())
        for key, value in items:
            hip, hport = prog.parse_addr_value(key[:6] + b"\0\0")
            out.append((names[key[6]], hip, hport, *prog.parse_addr_value(value)))
        return sorted(out)

    def refresh_addresses(self) -> None:
        """Reload the host's own addresses into the ``local`` map."""
        from conch.kernel import bpf

        try:
            now = host_addresses()
        except OSError as exc:
            log.warning("reading the host's addresses: %s", exc)
            return
        with self._lock:
            fd = self._maps.get("local")
            if fd is None:
                return
            try:
                for ip in now - self._local:
                    bpf.map_update(fd, socket.inet_aton(ip), b"\1\0\0\0")
                for ip in self._local - now:
                    bpf.map_delete(fd, socket.inet_aton(ip))
                self._local = now
            except ConchError as exc:
                log.warning("updating the host addresses of the socket LB: %s", exc)

    def _current_keys(self) -> list[bytes]:
        from conch.kernel import bpf
        from conch.network import socklb_prog as prog

        with self._lock:
            fd = self._maps.get("ports")
            return [] if fd is None else bpf.map_keys(fd, prog.PORTS_KEY)

    def _apply(self, add: dict[bytes, bytes], drop: dict[bytes, None]) -> None:
        from conch.kernel import bpf

        with self._lock:
            fd = self._maps.get("ports")
            if fd is None:
                return
            try:
                for key in drop:
                    bpf.map_delete(fd, key)
                    self._ports.pop(key, None)
                for key, value in add.items():
                    bpf.map_update(fd, key, value)
                    self._ports[key] = value
            except ConchError as exc:  # map full, ...: those ports keep the nft path
                log.warning("socket LB map update: %s (nft DNAT serves those ports)", exc)


def _keys(ports: list[dict]) -> list[bytes]:
    from conch.network import socklb_prog as prog

    return [prog.ports_key(p["proto"], p["host_ip"] or "0.0.0.0", int(p["host_port"]))
            for p in ports if p["proto"] in prog.PROTO_NUMBERS]


def _entries(ports: list[dict]) -> dict[bytes, bytes]:
    from conch.network import socklb_prog as prog

    return {key: prog.addr_value(p["container_ip"], int(p["container_port"]))
            for key, p in zip(_keys(ports), [p for p in ports if p["proto"] in prog.PROTO_NUMBERS])}
