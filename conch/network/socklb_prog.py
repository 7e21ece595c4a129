"""The eBPF programs of :mod:`conch.network.socklb`, written with :mod:`conch.kernel.bpf`'s
assembler, and the byte layouts of the maps they share with user space.

Maps (all keys and values in the bytes the kernel's ``struct bpf_sock_addr`` holds,
addresses and ports in network order)::

    ports  HASH     key  ip(4) port(2) proto(1) pad(1)      value  ip(4) port(2) pad(2)
                    published host ip:port/proto -> container ip:port; ip 0.0.0.0 is a
                    publish on every host address
    local  HASH     key  ip(4)                              value  1(4)
                    the host's own addresses besides 127.0.0.0/8 (what nft calls
                    ``fib daddr type local``), kept by user space
    rev    LRU_HASH key  socket cookie(8) ip(4) port(2) pad(2)  value  ip(4) port(2) pad(2)
                    per socket: container ip:port -> the address the program rewrote

``forward`` (INET4_CONNECT, UDP4_SENDMSG), only for sockets of the host's network
namespace (see socklb's docstring for why): look the destination up as is; failing that,
when it is in 127.0.0.0/8 or in ``local``, look it up as 0.0.0.0; if found, rewrite it
to the container and remember the original in ``rev`` under the socket's cookie.
``reverse`` (INET4_GETPEERNAME, UDP4_RECVMSG): when (cookie, peer) is in ``rev``, show
the original address instead. Both always return 1 (allow).
"""

from __future__ import annotations

import socket
import struct

from conch.kernel.bpf import (FP, FUNC_GET_NETNS_COOKIE, FUNC_GET_SOCKET_COOKIE,
                              FUNC_MAP_LOOKUP_ELEM, FUNC_MAP_UPDATE_ELEM, R0, R1, R2, R3, R4,
                              R6, R7, R8, R9, Label, alu64, call, exit_, jmp, ld_imm64, ld_map,
                              ldx, mov, mov_imm, st, stx)

PROTO_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PORTS_KEY, ADDR_VALUE, LOCAL_KEY, REV_KEY = 8, 8, 4, 16

# offsets in struct bpf_sock_addr
_USER_IP4, _USER_PORT, _PROTOCOL = 4, 24, 36


def ports_key(proto: str, ip: str, port: int) -> bytes:
    return socket.inet_aton(ip) + struct.pack("!HBx", port, PROTO_NUMBERS[proto])


def addr_value(ip: str, port: int) -> bytes:
    return socket.inet_aton(ip) + struct.pack("!Hxx", port)


def parse_addr_value(value: bytes) -> tuple[str, int]:
    return socket.inet_ntoa(value[:4]), struct.unpack("!H", value[4:6])[0]


def _lookup(map_fd: int, key_off: int) -> list:
    return [ld_map(R1, map_fd), mov(R2, FP), alu64("add", R2, key_off), call(FUNC_MAP_LOOKUP_ELEM)]


def forward(*, ports_fd: int, local_fd: int, rev_fd: int, netns_cookie: int) -> list:
    """The connect/sendmsg program. Stack: -8 local key, -16 ports key, -32 rev key,
    -40 rev value. r6 ctx, r7 original ip, r8 original port, r9 the map value."""
    return [
        mov(R6, R1),
        call(FUNC_GET_NETNS_COOKIE),  # r1 is still ctx
        ld_imm64(R1, netns_cookie),
        jmp("jne", R0, R1, "out", reg=True),  # a container's own stack: not ours to touch
        ldx(4, R7, R6, _USER_IP4),
        ldx(4, R8, R6, _USER_PORT),
        ldx(4, R9, R6, _PROTOCOL),
        st(8, FP, -16, 0),
        stx(4, FP, -16, R7),
        stx(2, FP, -12, R8),
        stx(1, FP, -10, R9),
        _lookup(ports_fd, -16),
        jmp("jne", R0, 0, "found"),
        ldx(1, R1, R6, _USER_IP4),  # first octet, whatever the host's byte order
        jmp("jeq", R1, 127, "any"),
        stx(4, FP, -8, R7),
        _lookup(local_fd, -8),
        jmp("jeq", R0, 0, "out"),
        Label("any"),
        st(4, FP, -16, 0),
        _lookup(ports_fd, -16),
        jmp("jeq", R0, 0, "out"),
        Label("found"),
        mov(R9, R0),
        ldx(4, R1, R9, 0),
        stx(4, R6, _USER_IP4, R1),
        ldx(2, R1, R9, 4),
        stx(4, R6, _USER_PORT, R1),
        mov(R1, R6),
        call(FUNC_GET_SOCKET_COOKIE),
        stx(8, FP, -32, R0),
        st(8, FP, -24, 0),
        ldx(4, R1, R9, 0),
        stx(4, FP, -24, R1),
        ldx(2, R1, R9, 4),
        stx(2, FP, -20, R1),
        st(8, FP, -40, 0),
        stx(4, FP, -40, R7),
        stx(2, FP, -36, R8),
        ld_map(R1, rev_fd),
        mov(R2, FP), alu64("add", R2, -32),
        mov(R3, FP), alu64("add", R3, -40),
        mov_imm(R4, 0),  # BPF_ANY
        call(FUNC_MAP_UPDATE_ELEM),
        Label("out"),
        mov_imm(R0, 1),
        exit_(),
    ]


def reverse(*, rev_fd: int) -> list:
    """The getpeername/recvmsg program. Stack: -16 rev key."""
    return [
        mov(R6, R1),
        call(FUNC_GET_SOCKET_COOKIE),
        stx(8, FP, -16, R0),
        st(8, FP, -8, 0),
        ldx(4, R1, R6, _USER_IP4),
        stx(4, FP, -8, R1),
        ldx(4, R1, R6, _USER_PORT),
        stx(2, FP, -4, R1),
        _lookup(rev_fd, -16),
        jmp("jeq", R0, 0, "out"),
        ldx(4, R1, R0, 0),
        stx(4, R6, _USER_IP4, R1),
        ldx(2, R1, R0, 4),
        stx(4, R6, _USER_PORT, R1),
        Label("out"),
        mov_imm(R0, 1),
        exit_(),
    ]
