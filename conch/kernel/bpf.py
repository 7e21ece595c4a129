"""eBPF through the bpf(2) syscall: a tiny assembler, maps, program load and links.

Contract:

- Assembler (pure, no I/O): :class:`Insn` values and the constructors below encode
  ``struct bpf_insn`` (8 bytes: opcode, dst/src register nibbles, s16 offset, s32
  immediate; ``ld_imm64`` is two slots). :func:`assemble` resolves string labels in jump
  offsets and returns the instruction bytes. Only what conch's programs need is here:
  64-bit ALU, loads/stores, conditional jumps, helper calls, exit.
- Syscalls: :func:`map_create`, :func:`map_update`, :func:`map_delete`,
  :func:`map_lookup`, :func:`map_keys`, :func:`prog_load` (with ``expected_attach_type``;
  the verifier's log is put in the error), :func:`link_create`, :func:`prog_query`,
  :func:`obj_id`, :func:`next_ids`. Each returns plain ints/bytes; every fd returned is
  an ``int`` the caller owns and closes with ``os.close`` (the kernel makes them
  close-on-exec). Failures raise :class:`conch.errors.SystemCallError("bpf", errno,
  detail=<command>)`.

Numbers are from <linux/bpf.h> (uapi, stable ABI); offsets of ``union bpf_attr`` fields
are those of the uapi header, checked against it when this module was written.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from conch.errors import SystemCallError
from conch.kernel.libc import libc

_NR_BPF = {"x86_64": 321, "aarch64": 280, "i686": 357, "i386": 357}

# enum bpf_cmd
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 0, 1, 2, 3, 4
PROG_LOAD, PROG_GET_NEXT_ID, OBJ_GET_INFO_BY_FD, PROG_QUERY = 5, 11, 15, 16
LINK_CREATE, LINK_GET_NEXT_ID = 28, 31
# enum bpf_map_type / bpf_prog_type / bpf_attach_type (the ones conch uses)
MAP_TYPE_HASH, MAP_TYPE_LRU_HASH = 1, 9
PROG_TYPE_CGROUP_SOCK_ADDR = 18
CGROUP_INET4_CONNECT, CGROUP_UDP4_SENDMSG, CGROUP_UDP4_RECVMSG = 10, 14, 19
CGROUP_INET4_GETPEERNAME = 29
# helper function ids (enum bpf_func_id)
FUNC_MAP_LOOKUP_ELEM, FUNC_MAP_UPDATE_ELEM = 1, 2
FUNC_GET_SOCKET_COOKIE, FUNC_GET_NETNS_COOKIE = 46, 122

# instruction classes, sizes, modes, ALU/JMP operations, sources
LD, LDX, ST, STX, ALU, JMP, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
IMM, MEM = 0x00, 0x60
K, X = 0x00, 0x08
ALU_OPS = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50,
           "lsh": 0x60, "rsh": 0x70, "mod": 0x90, "xor": 0xa0, "mov": 0xb0, "arsh": 0xc0}
JMP_OPS = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50,
           "jsgt": 0x60, "jsge": 0x70, "jlt": 0xa0, "jle": 0xb0, "jslt": 0xc0, "jsle": 0xd0}
CALL, EXIT = 0x80, 0x90
SIZES = {1: B, 2: H, 4: W, 8: DW}
PSEUDO_MAP_FD = 1
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10


@dataclass(frozen=True, slots=True)
class Insn:
    """One ``struct bpf_insn``; ``off`` may be a label (str) until :func:`assemble`."""

    code: int
    dst: int = 0
    src: int = 0
    off: int | str = 0
    imm: int = 0

    def encode(self, off: int | None = None) -> bytes:
        o = self.off if off is None else off
        if not isinstance(o, int):
            raise ValueError(f"unresolved label {o!r}")
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, o,
                           _s32(self.imm))


@dataclass(frozen=True, slots=True)
class Label:
    """A jump target: ``off`` of a jump naming it is counted up to the next insn."""

    name: str


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def alu64(op: str, dst: int, src_or_imm: int, *, reg: bool = False) -> Insn:
    """``dst op= src`` (``reg=True``) or ``dst op= imm``, 64-bit."""
    code = ALU64 | ALU_OPS[op] | (X if reg else K)
    return Insn(code, dst, src_or_imm, 0, 0) if reg else Insn(code, dst, 0, 0, src_or_imm)


def mov(dst: int, src: int) -> Insn:
    return alu64("mov", dst, src, reg=True)


def mov_imm(dst: int, imm: int) -> Insn:
    return alu64("mov", dst, imm)


def ld_imm64(dst: int, value: int, *, src: int = 0) -> list[Insn]:
    """Two slots: the low then the high 32 bits (``src=PSEUDO_MAP_FD``: value is a map fd)."""
    value &= (1 << 64) - 1
    return [Insn(LD | DW | IMM, dst, src, 0, value & 0xFFFFFFFF), Insn(0, 0, 0, 0, value >> 32)]


def ld_map(dst: int, map_fd: int) -> list[Insn]:
    return ld_imm64(dst, map_fd, src=PSEUDO_MAP_FD)


def ldx(size: int, dst: int, src: int, off: int) -> Insn:
    """``dst = *(size *)(src + off)``, size in bytes."""
    return Insn(LDX | SIZES[size] | MEM, dst, src, off, 0)


def stx(size: int, dst: int, off: int, src: int) -> Insn:
    """``*(size *)(dst + off) = src``."""
    return Insn(STX | SIZES[size] | MEM, dst, src, off, 0)


def st(size: int, dst: int, off: int, imm: int) -> Insn:
    """``*(size *)(dst + off) = imm``."""
    return Insn(ST | SIZES[size] | MEM, dst, 0, off, imm)


def jmp(op: str, dst: int, src_or_imm: int, target: int | str, *, reg: bool = False) -> Insn:
    """``if dst op src_or_imm goto target`` (64-bit compare)."""
    code = JMP | JMP_OPS[op] | (X if reg else K)
    return Insn(code, dst, src_or_imm if reg else 0, target, 0 if reg else src_or_imm)


def ja(target: int | str) -> Insn:
    return Insn(JMP | JMP_OPS["ja"], 0, 0, target, 0)


def call(helper: int) -> Insn:
    return Insn(JMP | CALL, 0, 0, 0, helper)


def exit_() -> Insn:
    return Insn(JMP | EXIT)


def assemble(program: list) -> bytes:
    """Bytes of ``program`` (Insn, Label, or nested lists of them); a jump's label
    offset becomes ``target index - (own index + 1)``."""
    flat: list = []

    def walk(items):
        for item in items:
            walk(item) if isinstance(item, list) else flat.append(item)

    walk(program)
    where: dict[str, int] = {}
    insns: list[Insn] = []
    for item in flat:
        if isinstance(item, Label):
            if item.name in where:
                raise ValueError(f"label {item.name!r} defined twice")
            where[item.name] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for i, insn in enumerate(insns):
        off = insn.off
        if isinstance(off, str):
            if off not in where:
                raise ValueError(f"unknown label {off!r}")
            off = where[off] - (i + 1)
        out += insn.encode(off)
    return bytes(out)


# -- syscalls ---------------------------------------------------------------------------

_ATTR_SIZE = 144  # sizeof(union bpf_attr) in the uapi header used; the kernel zero-checks the rest


def _bpf(cmd: int, attr: bytearray, what: str) -> int:
    machine = os.uname().machine
    nr = _NR_BPF.get(machine)
    if nr is None:
        raise SystemCallError("bpf", errno.ENOSYS, detail=f"unsupported machine {machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret = libc().syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        raise SystemCallError("bpf", ctypes.get_errno(), detail=what)
    return ret


def _attr(fmt: str, *values, tail: bytes = b"") -> bytearray:
    body = struct.pack(fmt, *values) + tail
    return bytearray(body.ljust(_ATTR_SIZE, b"\0"))


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               name: str = "", flags: int = 0) -> int:
    """A new map's fd."""
    attr = _attr("=IIIIIII16s", map_type, key_size, value_size, max_entries, flags, 0, 0,
                 name.encode()[:15])
    return _bpf(MAP_CREATE, attr, f"BPF_MAP_CREATE {name or map_type}")


class _Buf:
    """Key/value buffers kept alive across the call; their addresses go in the attr."""

    def __init__(self, *datas: bytes):
        self.bufs = [ctypes.create_string_buffer(d, len(d) or 1) for d in datas]

    def addr(self, i: int) -> int:
        return ctypes.addressof(self.bufs[i])


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    b = _Buf(key, value)
    _bpf(MAP_UPDATE_ELEM, _attr("=IIQQQ", fd, 0, b.addr(0), b.addr(1), flags), "BPF_MAP_UPDATE_ELEM")


def map_delete(fd: int, key: bytes) -> bool:
    """Delete ``key``; False when it was not there."""
    b = _Buf(key)
    try:
        _bpf(MAP_DELETE_ELEM, _attr("=IIQ", fd, 0, b.addr(0)), "BPF_MAP_DELETE_ELEM")
    except SystemCallError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    b = _Buf(key, bytes(value_size))
    try:
        _bpf(MAP_LOOKUP_ELEM, _attr("=IIQQ", fd, 0, b.addr(0), b.addr(1)), "BPF_MAP_LOOKUP_ELEM")
    except SystemCallError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return b.bufs[1].raw[:value_size]


def map_keys(fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map (BPF_MAP_GET_NEXT_KEY from no key)."""
    keys: list[bytes] = []
    b = _Buf(bytes(key_size), bytes(key_size))
    first = True
    while True:
        attr = _attr("=IIQQ", fd, 0, 0 if first else b.addr(0), b.addr(1))
        try:
            _bpf(MAP_GET_NEXT_KEY, attr, "BPF_MAP_GET_NEXT_KEY")
        except SystemCallError as exc:
            if exc.errno == errno.ENOENT:
                return keys
            raise
        nxt = b.bufs[1].raw[:key_size]
        keys.append(nxt)
        ctypes.memmove(b.bufs[0], nxt, key_size)
        first = False


def prog_load(prog_type: int, insns: bytes, *, expected_attach_type: int = 0,
              license: str = "GPL", name: str = "", log_size: int = 1 << 16) -> int:
    """Load a program; on failure the verifier's log is in the error's detail (the load
    is retried with the log on only then: a log too small for a success is ENOSPC)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log_buf = ctypes.create_string_buffer(log_size)

    def load(level: int) -> int:
        attr = _attr("=IIQQIIQII16sII", prog_type, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(lic), level, log_size if level else 0,
                     ctypes.addressof(log_buf) if level else 0, 0, 0, name.encode()[:15], 0,
                     expected_attach_type)
        return _bpf(PROG_LOAD, attr, f"BPF_PROG_LOAD {name}")

    try:
        return load(0)
    except SystemCallError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES):  # not the verifier: no log
            raise
        first = exc
    try:
        return load(1)  # a retry that succeeds is fine too
    except SystemCallError as exc:
        text = log_buf.value.decode(errors="replace").strip()
        raise SystemCallError("bpf", exc.errno, detail=f"BPF_PROG_LOAD {name}: "
                              f"{text[-800:] or 'no verifier log'}") from first


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """A bpf_link attaching ``prog_fd`` to ``target_fd`` (a cgroup directory's fd): the
    attachment lives exactly as long as some process holds the returned fd."""
    return _bpf(LINK_CREATE, _attr("=IIII", prog_fd, target_fd, attach_type, 0),
                "BPF_LINK_CREATE")


def prog_query(target_fd: int, attach_type: int, max_ids: int = 64) -> list[int]:
    """Ids of the programs attached to a cgroup for ``attach_type``."""
    ids = (ctypes.c_uint32 * max_ids)()
    attr = _attr("=IIIIQI", target_fd, attach_type, 0, 0, ctypes.addressof(ids), max_ids)
    _bpf(PROG_QUERY, attr, "BPF_PROG_QUERY")
    count = struct.unpack_from("=I", bytes(attr), 24)[0]  # query.prog_cnt, set by the kernel
    return list(ids[:min(count, max_ids)])


def obj_id(fd: int) -> int:
    """The kernel id of a program, map or link fd (``id`` is at offset 4 of each info)."""
    info = ctypes.create_string_buffer(64)
    _bpf(OBJ_GET_INFO_BY_FD, _attr("=IIQ", fd, 64, ctypes.addressof(info)),
         "BPF_OBJ_GET_INFO_BY_FD")
    return struct.unpack_from("=I", info.raw, 4)[0]


def next_ids(cmd: int = LINK_GET_NEXT_ID) -> list[int]:
    """Every id the kernel has for ``cmd`` (PROG_GET_NEXT_ID, LINK_GET_NEXT_ID)."""
    ids, start = [], 0
    while True:
        attr = _attr("=II", start, 0)
        try:
            _bpf(cmd, attr, "BPF_*_GET_NEXT_ID")
        except SystemCallError as exc:
            if exc.errno == errno.ENOENT:
                return ids
            raise
        start = struct.unpack_from("=I", bytes(attr), 4)[0]
        ids.append(start)
