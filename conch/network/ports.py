"""Host port reservations: a bound socket per published port, so nothing else on the host
can take a port that nftables DNATs to a container (and a taken port is found before
any rule is written).

Why a bound socket and not a listening one: with userland-proxy=false the traffic never
reaches a host socket (it is DNAT'ed in prerouting/output), so nothing has to accept.
A TCP socket bound *without* SO_REUSEADDR still blocks every later ``bind`` of that
address and port, even one made with SO_REUSEADDR (Linux lets two sockets share a port
only when both set it). UDP sockets get the smallest receive buffer, since a datagram
that bypassed the DNAT would otherwise sit in it for nothing.

``host_port=0`` asks the kernel for a free port from ``net.ipv4.ip_local_port_range``
(docker uses its own 49153-65535 range; the kernel's is what every other program also
respects). Sockets are close-on-exec: containers and helpers never inherit them.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading

from conch.errors import Conflict, InvalidArgument, PermissionDenied, SystemCallError, Unavailable

__all__ = ["PortReservation", "PROTOCOLS"]

PROTOCOLS = ("tcp", "udp", "sctp")

_SOCKET_TYPES = {
    "tcp": (socket.SOCK_STREAM, 0),
    "udp": (socket.SOCK_DGRAM, 0),
    "sctp": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132)),
}


def check_port_args(proto: str, host_ip: str, host_port: int, *, allow_zero: bool) -> str:
    """Validate ``proto``/``host_ip``/``host_port``; returns the normalised host IP
    (``""`` means ``0.0.0.0``)."""
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {proto!r} (one of {', '.join(PROTOCOLS)})")
    try:
        ip = ipaddress.IPv4Address(host_ip or "0.0.0.0")
    except ValueError as exc:
        raise InvalidArgument(f"invalid host IP {host_ip!r}: IPv4 address expected") from exc
    if not isinstance(host_port, int) or isinstance(host_port, bool) or \
            not (0 if allow_zero else 1) <= host_port <= 65535:
        raise InvalidArgument(f"invalid host port {host_port!r} (1-65535"
                              f"{', or 0 for any free port' if allow_zero else ''})")
    return str(ip)


class PortReservation:
    """Holds host ports: ``reserve`` binds, ``release`` closes. Thread-safe."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, int], socket.socket] = {}
        self._lock = threading.Lock()

    def reserve(self, *, proto: str, host_ip: str, host_port: int) -> int:
        """Bind ``host_ip:host_port`` for ``proto`` and keep it; returns the port (the
        kernel's pick when ``host_port`` is 0). A port already reserved here with the
        same key is returned as is (idempotent); one held by anyone else is a Conflict."""
        ip = check_port_args(proto, host_ip, host_port, allow_zero=True)
        with self._lock:
            if host_port and (proto, ip, host_port) in self._held:
                return host_port
            sock = self._bind(proto, ip, host_port)
            port = sock.getsockname()[1]
            self._held[(proto, ip, port)] = sock
            return port

    def release(self, *, proto: str, host_ip: str, host_port: int) -> None:
        """Give the port back; releasing a port not held is a no-op."""
        ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
        with self._lock:
            sock = self._held.pop((proto, ip, host_port), None)
        if sock is not None:
            sock.close()

    def held(self) -> list[tuple[str, str, int]]:
        """(proto, host_ip, host_port) of every port held, sorted."""
        with self._lock:
            return sorted(self._held)

    def close(self) -> None:
        """Release everything (daemon shutdown)."""
        with self._lock:
            socks, self._held = list(self._held.values()), {}
        for sock in socks:
            sock.close()

    @staticmethod
    def _bind(proto: str, ip: str, port: int) -> socket.socket:
        kind, number = _SOCKET_TYPES[proto]
        try:
            sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC, number)
        except OSError as exc:
            raise Unavailable(f"{proto} sockets are not available on this host: "
                              f"{exc.strerror}") from exc
        try:
            if proto == "udp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            sock.bind((ip, port))
        except OSError as exc:
            sock.close()
            where = f"{ip}:{port}/{proto}"
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(f"cannot publish {where}: port is already allocated "
                               "(another container or program uses it)") from exc
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"cannot publish {where}: {ip} is not an address "
                                      "of this host") from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(f"cannot publish {where}: {exc.strerror}") from exc
            raise SystemCallError("bind", exc.errno or errno.EIO, where) from exc
        return sock
