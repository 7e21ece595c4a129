"""A minimal, synchronous rtnetlink (NETLINK_ROUTE) client: the few messages conch needs.

Why hand-written rather than pyroute2 (DESIGN.md prefers libraries): conch uses a small,
fixed subset of rtnetlink, and pyroute2 0.9 (asyncio-based) cost the daemon ~10.8 MiB of
RSS on top of aiohttp (``python -IS``: ``import aiohttp.web`` 35.8 MiB -> 46.6 MiB after
a few netlink calls; bench/netlink_bench.py) against issue 3's idle-memory goal, plus
~1-2 ms per ``IPRoute()`` on every container start. This module is the standard library
only (socket, struct, os, errno): +0.1-0.4 MiB, and ``ensure_bridge`` 3.5 -> 1.0 ms,
``plug_veth`` 4.2 -> 1.6-2.4 ms (medians of 30; bench/README.md).

Contract:

- ``Rtnl(sock=None)``: a NETLINK_ROUTE socket of its own, or ``sock`` adopted (closed by
  :meth:`Rtnl.close`); a socket made inside another network namespace acts there.
- One request at a time: ``NLM_F_REQUEST|NLM_F_ACK`` with a fresh sequence number; the
  replies carrying that number are collected until the kernel's ack (``NLMSG_ERROR`` with
  0) or, for dumps (``NLM_F_DUMP``), until ``NLMSG_DONE``; stale replies (other sequence
  numbers) are dropped. A dump the kernel marks inconsistent (``NLM_F_DUMP_INTR``) is
  retried. A kernel error becomes :class:`NetlinkError` (an ``OSError`` with the errno).
- Receives peek at each datagram's true size first (``MSG_PEEK|MSG_TRUNC``), so no reply
  is ever truncated, and the socket's receive buffer is 1 MiB like iproute2's.
- Messages: links (get by name, dump, new bridge, new veth with its peer in another
  namespace, set up/down/master/name/address, delete), addresses (add, dump) and the
  default route. Encoders are pure functions (``link_msg`` ...) so tests compare bytes.

Constants are those of the kernel's uapi headers (linux/netlink.h, rtnetlink.h,
if_link.h, if_addr.h, veth.h). Attributes are not flagged ``NLA_F_NESTED``, as iproute2
and pyroute2 do not: the kernel parses these legacy nests either way.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Iterator, NamedTuple

__all__ = ["Rtnl", "NetlinkError", "Link", "Addr", "nla", "nla_str", "nla_u32", "nla_nest",
           "parse_attrs", "parse_messages", "encode_msg"]

# linux/netlink.h
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLA_TYPE_MASK = ~((1 << 15) | (1 << 14)) & 0xFFFF  # without NLA_F_NESTED / NET_BYTEORDER
SOL_NETLINK, NETLINK_CAP_ACK = 270, 10
# linux/rtnetlink.h
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
RTA_OIF, RTA_GATEWAY = 4, 5
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1
# linux/if_link.h, linux/veth.h, linux/if_addr.h, linux/if.h
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLATTR = struct.Struct("=HH")  # len, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_ERR = struct.Struct("=i")
_ACK = NLM_F_REQUEST | NLM_F_ACK
_NEW = _ACK | NLM_F_CREATE | NLM_F_EXCL
_DUMP_RETRIES = 5


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` is its code."""


class Link(NamedTuple):
    index: int
    name: str | None
    kind: str | None  # IFLA_INFO_KIND ("bridge", "veth" ...), None for e.g. lo
    flags: int


class Addr(NamedTuple):
    family: int
    prefixlen: int
    index: int
    address: str | None  # IFA_ADDRESS, as text
    local: str | None  # IFA_LOCAL, as text


# --- encoding (pure) ----------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute: header (length without padding), payload, zero padding to 4."""
    length = _NLATTR.size + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"netlink attribute {kind} too long ({len(payload)} bytes)")
    return _NLATTR.pack(length, kind) + payload + bytes(_align(length) - length)


def nla_str(kind: int, text: str) -> bytes:
    return nla(kind, text.encode() + b"\0")


def nla_u32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=I", value))


def nla_nest(kind: int, *attrs: bytes) -> bytes:
    return nla(kind, b"".join(attrs))


def encode_msg(kind: int, flags: int, seq: int, body: bytes, pid: int = 0) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, pid) + body


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"invalid MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def link_msg(*, index: int = 0, name: str | None = None, up: bool | None = None,
             master: int | None = None, kind: str | None = None, address: str | None = None,
             peer: bytes | None = None) -> bytes:
    """An ifinfomsg body for RTM_NEWLINK/GETLINK/DELLINK: ``up`` sets or clears IFF_UP
    (None: left alone); ``peer`` (from :func:`veth_peer`) goes in IFLA_INFO_DATA."""
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    attrs = []
    if name is not None:
        attrs.append(nla_str(IFLA_IFNAME, name))
    if address is not None:
        attrs.append(nla(IFLA_ADDRESS, mac_bytes(address)))
    if master is not None:
        attrs.append(nla_u32(IFLA_MASTER, master))
    if kind is not None:
        info = [nla_str(IFLA_INFO_KIND, kind)]
        if peer is not None:
            info.append(nla_nest(IFLA_INFO_DATA, nla(VETH_INFO_PEER, peer)))
        attrs.append(nla_nest(IFLA_LINKINFO, *info))
    return ifinfomsg(index, flags, change) + b"".join(attrs)


def veth_peer(name: str, netns_fd: int | None = None, address: str | None = None) -> bytes:
    """VETH_INFO_PEER's payload: an ifinfomsg and the peer's own attributes."""
    attrs = [nla_str(IFLA_IFNAME, name)]
    if netns_fd is not None:
        attrs.append(nla_u32(IFLA_NET_NS_FD, netns_fd))
    if address is not None:
        attrs.append(nla(IFLA_ADDRESS, mac_bytes(address)))
    return ifinfomsg() + b"".join(attrs)


IFA_F_NODAD = 0x02


def addr_msg(index: int, ip: str, prefixlen: int) -> bytes:
    """RTM_NEWADDR body: IFA_ADDRESS and IFA_LOCAL both ``ip`` (as ``ip addr add``). An
    IPv6 address skips duplicate address detection (``nodad``, as libnetwork adds them):
    it is usable at once instead of "tentative" for a second or two."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    packed = socket.inet_pton(family, ip)
    flags = IFA_F_NODAD if family == socket.AF_INET6 else 0
    return (_IFADDRMSG.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
            + nla(IFA_ADDRESS, packed) + nla(IFA_LOCAL, packed))


def default_route_msg(gateway: str, oif: int) -> bytes:
    """RTM_NEWROUTE body: default route (dst_len 0) via ``gateway`` out of ``oif``,
    table main, proto static, scope universe, unicast."""
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    return (_RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE,
                        RTN_UNICAST, 0)
            + nla(RTA_GATEWAY, socket.inet_pton(family, gateway)) + nla_u32(RTA_OIF, oif))


# --- decoding (pure) ----------------------------------------------------------------


def iter_attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type without the NESTED/BYTEORDER flags, payload) of each attribute from
    ``offset``; stops at a truncated or malformed one."""
    end = len(data)
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, bytes(data[offset + _NLATTR.size:offset + length])
        offset += _align(length)


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes by type (the last wins, as the kernel's nla_parse)."""
    return dict(iter_attrs(data, offset))


def parse_messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError(errno.EBADMSG, f"malformed netlink message at {offset}")
        yield kind, flags, seq, bytes(data[offset + _NLMSGHDR.size:offset + length])
        offset += _align(length)


def _text(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def parse_link(payload: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _IFINFOMSG.size)
    info = attrs.get(IFLA_LINKINFO)
    kind = _text(parse_attrs(info).get(IFLA_INFO_KIND)) if info is not None else None
    return Link(index, _text(attrs.get(IFLA_IFNAME)), kind, flags)


def parse_addr(payload: bytes) -> Addr:
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _IFADDRMSG.size)

    def text(raw: bytes | None) -> str | None:
        return socket.inet_ntop(family, raw) if raw is not None else None

    return Addr(family, prefixlen, index, text(attrs.get(IFA_ADDRESS)), text(attrs.get(IFA_LOCAL)))


def error_code(payload: bytes) -> int:
    """The positive errno of an NLMSG_ERROR / NLMSG_DONE payload (0: an ack)."""
    return -_ERR.unpack_from(payload)[0] if len(payload) >= _ERR.size else 0


# --- the socket -----------------------------------------------------------------------


class Rtnl:
    """A NETLINK_ROUTE socket and the requests conch makes on it (see the module doc)."""

    def __init__(self, sock: socket.socket | None = None, *, timeout: float = 30.0):
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock = sock
        self._seq = int.from_bytes(os.urandom(2), "little")  # replies to others' use: stale
        self._buf = bytearray(65536)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors without the request
        except OSError:
            pass  # both are optimisations: a kernel without CAP_ACK echoes the request
        sock.settimeout(timeout)  # the kernel always answers; never hang on a bug

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # transport

    def _recv(self) -> bytes:
        n = self._sock.recv_into(self._buf, len(self._buf), socket.MSG_PEEK | socket.MSG_TRUNC)
        if n > len(self._buf):
            self._buf = bytearray(_align(n))
        n = self._sock.recv_into(self._buf)
        return bytes(memoryview(self._buf)[:n])

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        # no address: an unconnected netlink socket sends to the kernel (port 0)
        self._sock.send(encode_msg(kind, flags, self._seq, body))
        return self._seq

    def request(self, kind: int, body: bytes, flags: int = _ACK) -> list[tuple[int, bytes]]:
        """Send one acked request; (type, payload) of the replies before the ack."""
        seq = self._send(kind, flags | _ACK, body)
        replies = []
        while True:
            for rkind, _flags, rseq, payload in parse_messages(self._recv()):
                if rseq != seq or rkind == NLMSG_NOOP:
                    continue
                if rkind == NLMSG_ERROR:
                    code = error_code(payload)
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies
                replies.append((rkind, payload))

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        """Payloads of a whole dump; retried when the kernel reports it inconsistent."""
        for _ in range(_DUMP_RETRIES):
            payloads, intr = self._dump_once(kind, body)
            if not intr:
                return payloads
        raise NetlinkError(errno.EINTR, "netlink dump kept being interrupted")

    def _dump_once(self, kind: int, body: bytes) -> tuple[list[bytes], bool]:
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_DUMP, body)
        payloads, intr = [], False
        while True:
            for rkind, rflags, rseq, payload in parse_messages(self._recv()):
                if rseq != seq or rkind == NLMSG_NOOP:
                    continue
                intr = intr or bool(rflags & NLM_F_DUMP_INTR)
                if rkind in (NLMSG_DONE, NLMSG_ERROR):
                    code = error_code(payload)
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return payloads, intr
                payloads.append(payload)

    # links

    def link(self, name: str) -> Link | None:
        """The link called ``name``; None when there is none (or the kernel refuses the
        name, e.g. too long)."""
        try:
            replies = self.request(RTM_GETLINK, link_msg(name=name))
        except NetlinkError:
            return None
        links = [parse_link(p) for k, p in replies if k == RTM_NEWLINK]
        return links[0] if links else None

    def links(self) -> list[Link]:
        return [parse_link(p) for p in self.dump(RTM_GETLINK, ifinfomsg())]

    def new_link(self, **spec) -> None:
        """RTM_NEWLINK with create+excl (EEXIST when the name is taken); ``spec`` as
        :func:`link_msg`."""
        self.request(RTM_NEWLINK, link_msg(**spec), _NEW)

    def set_link(self, index: int, **change) -> None:
        """Change link ``index`` (``up``, ``master``, ``name``, ``address``)."""
        self.request(RTM_NEWLINK, link_msg(index=index, **change))

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, link_msg(index=index))

    # addresses and routes

    def addrs(self, index: int | None = None) -> list[Addr]:
        """Every address (all families), or those of link ``index``."""
        found = [parse_addr(p) for p in self.dump(RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0))]
        return [a for a in found if index is None or a.index == index]

    def add_addr(self, index: int, ip: str, prefixlen: int) -> None:
        self.request(RTM_NEWADDR, addr_msg(index, ip, prefixlen), _NEW)

    def add_default_route(self, gateway: str, oif: int) -> None:
        self.request(RTM_NEWROUTE, default_route_msg(gateway, oif), _NEW)
