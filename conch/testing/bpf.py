"""A small classic-BPF interpreter for seccomp filters, so tests need no kernel.

Contract:
- ``check(program)`` applies the kernel's static checks (``bpf_check_classic`` and
  ``seccomp_check_filter``): known opcodes only, every jump lands inside the program,
  ``ld [k]`` only at aligned offsets inside ``struct seccomp_data``, no division by a
  constant zero, last instruction a ``ret``, at most 4096 instructions. It raises
  ``ValueError`` describing the first violation.
- ``run(program, nr, arch, args=(), ip=0)`` checks, then executes the filter against a
  ``seccomp_data`` built from those values and returns the 32-bit SECCOMP_RET_* value.
- ``describe(ret)`` names a return value, e.g. ``"ERRNO(1)"``, for readable assertions.

Semantics follow Documentation/networking/filter.rst: A and X are 32-bit, jumps are
relative to the next instruction, ``ja`` takes a 32-bit ``k``, the rest 8-bit jt/jf.
"""

import functools
import struct

MAXINSNS = 4096
SECCOMP_DATA_SIZE = 64  # nr, arch, instruction_pointer, args[6]
_U32 = 0xFFFFFFFF

# class
_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# ld/ldx size + mode
_W, _IMM, _ABS, _MEM, _LEN = 0x00, 0x00, 0x20, 0x60, 0x80
# alu/jmp op and source
_K, _X = 0x00, 0x08
_ALU_OPS = {
    0x00: lambda a, b: a + b,
    0x10: lambda a, b: a - b,
    0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b,
    0x40: lambda a, b: a | b,
    0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << (b & 31),
    0x70: lambda a, b: a >> (b & 31),
    0x90: lambda a, b: a % b,
    0xA0: lambda a, b: a ^ b,
}
_NEG = 0x80
_JA, _JEQ, _JGT, _JGE, _JSET = 0x00, 0x10, 0x20, 0x30, 0x40
_RET_K, _RET_A = 0x00, 0x10
_TAX, _TXA = 0x00, 0x80


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    if len(program) % 8:
        raise ValueError(f"program length {len(program)} is not a multiple of 8")
    return [struct.unpack_from("<HBBI", program, off) for off in range(0, len(program), 8)]


@functools.lru_cache(maxsize=64)  # tests run one program against many syscalls
def check(program: bytes) -> tuple[tuple[int, int, int, int], ...]:
    """Validate like the kernel does at load time; return the decoded instructions."""
    insns = tuple(decode(program))
    if not 0 < len(insns) <= MAXINSNS:
        raise ValueError(f"program has {len(insns)} instructions (1..{MAXINSNS} allowed)")
    for pc, (code, jt, jf, k) in enumerate(insns):
        cls = code & 0x07
        if cls == _LD:
            if code == _LD | _W | _ABS:
                if k % 4 or k >= SECCOMP_DATA_SIZE:
                    raise ValueError(f"pc {pc}: ld [{k}] outside seccomp_data or unaligned")
            elif code not in (_LD | _IMM, _LD | _MEM, _LD | _W | _LEN):
                raise ValueError(f"pc {pc}: unsupported load opcode {code:#x}")
        elif cls == _LDX:
            if code not in (_LDX | _IMM, _LDX | _MEM, _LDX | _W | _LEN):
                raise ValueError(f"pc {pc}: unsupported ldx opcode {code:#x}")
        if cls in (_ST, _STX) or (cls in (_LD, _LDX) and code & 0xE0 == _MEM):
            if k >= 16:
                raise ValueError(f"pc {pc}: scratch slot {k} out of range")
        if cls == _ALU:
            op = code & 0xF0
            if op != _NEG and op not in _ALU_OPS:
                raise ValueError(f"pc {pc}: unsupported alu opcode {code:#x}")
            if op in (0x30, 0x90) and code & _X == _K and k == 0:
                raise ValueError(f"pc {pc}: division by constant zero")
        elif cls == _JMP:
            op = code & 0xF0
            if op == _JA:
                if pc + 1 + k >= len(insns):
                    raise ValueError(f"pc {pc}: ja {k} jumps outside the program")
            elif op in (_JEQ, _JGT, _JGE, _JSET):
                if pc + 1 + max(jt, jf) >= len(insns):
                    raise ValueError(f"pc {pc}: jump jt={jt} jf={jf} outside the program")
            else:
                raise ValueError(f"pc {pc}: unsupported jump opcode {code:#x}")
        elif cls == _RET:
            if code & 0x18 not in (_RET_K, _RET_A):
                raise ValueError(f"pc {pc}: unsupported ret opcode {code:#x}")
        elif cls == _MISC:
            if code & 0xF8 not in (_TAX, _TXA):
                raise ValueError(f"pc {pc}: unsupported misc opcode {code:#x}")
    if insns[-1][0] & 0x07 != _RET:
        raise ValueError("the last instruction is not a ret")
    return insns


def seccomp_data(nr: int, arch: int, args=(), ip: int = 0) -> bytes:
    """``struct seccomp_data`` bytes; missing args are zero."""
    full = list(args) + [0] * (6 - len(args))
    return struct.pack("<iIQ6Q", nr, arch, ip, *(a & 0xFFFFFFFFFFFFFFFF for a in full))


def run(program: bytes, nr: int, arch: int, args=(), ip: int = 0) -> int:
    """Execute the filter on one syscall; return the SECCOMP_RET_* value."""
    insns = check(bytes(program))
    data = seccomp_data(nr, arch, args, ip)
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == _LD:
            mode = code & 0xE0
            if mode == _ABS:
                a = struct.unpack_from("<I", data, k)[0]
            elif mode == _MEM:
                a = mem[k]
            elif mode == _LEN:
                a = SECCOMP_DATA_SIZE
            else:
                a = k
        elif cls == _LDX:
            mode = code & 0xE0
            x = mem[k] if mode == _MEM else SECCOMP_DATA_SIZE if mode == _LEN else k
        elif cls == _ST:
            mem[k] = a
        elif cls == _STX:
            mem[k] = x
        elif cls == _ALU:
            op = code & 0xF0
            if op == _NEG:
                a = -a & _U32
            else:
                b = x if code & _X else k
                if op in (0x30, 0x90) and b == 0:
                    return 0  # the kernel's runtime answer to division by zero X
                a = _ALU_OPS[op](a, b) & _U32
        elif cls == _JMP:
            op = code & 0xF0
            if op == _JA:
                pc += k
                continue
            b = x if code & _X else k
            if op == _JEQ:
                taken = a == b
            elif op == _JGT:
                taken = a > b
            elif op == _JGE:
                taken = a >= b
            else:
                taken = bool(a & b)
            pc += jt if taken else jf
        elif cls == _RET:
            return a if code & 0x18 == _RET_A else k
        else:
            if code & 0xF8 == _TAX:
                x = a
            else:
                a = x


_RET_NAMES = {
    0x80000000: "KILL_PROCESS",
    0x00000000: "KILL_THREAD",
    0x00030000: "TRAP",
    0x00050000: "ERRNO",
    0x7FC00000: "USER_NOTIF",
    0x7FF00000: "TRACE",
    0x7FFC0000: "LOG",
    0x7FFF0000: "ALLOW",
}


def describe(ret: int) -> str:
    """``0x00050001`` -> ``"ERRNO(1)"``; actions without data -> their bare name."""
    action, data = ret & 0xFFFF0000, ret & 0xFFFF
    name = _RET_NAMES.get(action, f"UNKNOWN({action:#x})")
    if action in (0x00050000, 0x7FF00000, 0x00030000) or data:
        return f"{name}({data})"
    return name
