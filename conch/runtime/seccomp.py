"""Compile an OCI ``linux.seccomp`` object into a classic-BPF seccomp filter.

Contract:
- ``compile_filter(seccomp, arch=host)`` -> ``bytes``: ``struct sock_filter`` array
  (8 bytes per instruction, host byte order = little-endian), ready for
  ``conch.kernel.seccomp.load_filter``. No libseccomp: the program is laid out here.
- ``filter_flags(seccomp)`` -> ``int``: the ``SECCOMP_FILTER_FLAG_*`` bits for ``flags``.
- Every unsupported or unknown *action*, *operator*, *flag* or *architecture name* raises
  ``conch.errors.InvalidArgument``; nothing is silently dropped. Unknown *syscall names*
  are skipped, as runc does: a profile lists syscalls of many kernels and architectures.

Semantics (runtime-spec config-linux.md#seccomp, libseccomp's comparison rules):
- Arguments are compared as unsigned 64-bit values; classic BPF is 32-bit, so each
  comparison is done on the high then the low word (seccomp_data.args[i] sits at offset
  16 + 8*i, little-endian: low word first).
- Conditions within one rule are AND'ed; rules for one syscall are tried in profile
  order, conditional rules before the syscall's unconditional rule (the first match
  decides), then the default action. Two unconditional rules with different actions for
  one syscall are an error, since no order between them is meaningful.
- ``SCMP_CMP_MASKED_EQ``: ``value`` is the mask and ``valueTwo`` the expected result.

Program layout (jt/jf are 8-bit, so nothing jumps far conditionally):

    ld arch; for each compiled arch: jeq AUDIT_ARCH, 0, 1; ja <section>
    ret KILL_PROCESS                                  # foreign arch
    section: ld nr; [x86_64: jge 0x40000000 -> ret x32 action]
             block per syscall: jeq nr, 0, len(body) (or jeq nr,1,0; ja len(body))
                 body: per conditional rule: arg checks (fail -> next rule); ret action
                       ret <unconditional action or default>
             ret default

A matched block always ends in a ``ret``, so the accumulator never needs reloading
between blocks. Compiled architectures: the host one plus listed ones it can run
(x86 on x86_64). Other listed architectures (arm, x32, ...) have no table here; their
syscalls meet the foreign-arch KILL_PROCESS (x32: the default action, or EPERM when the
default would allow, as libseccomp does) - fail-closed rather than allowed.
"""

import os
import struct

from conch.errors import InvalidArgument

# SECCOMP_RET_* (<linux/seccomp.h>)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

_ACTIONS = {
    "SCMP_ACT_KILL": RET_KILL_THREAD,  # libseccomp: SCMP_ACT_KILL == SCMP_ACT_KILL_THREAD
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_ERRNO": RET_ERRNO,
    "SCMP_ACT_TRACE": RET_TRACE,
    "SCMP_ACT_ALLOW": RET_ALLOW,
    "SCMP_ACT_LOG": RET_LOG,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_EPERM = 1

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1 << 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
}

# AUDIT_ARCH_* (<linux/audit.h>); name -> (our arch key, audit value).
_ARCHES = {
    "SCMP_ARCH_X86_64": ("x86_64", 0xC000003E),
    "SCMP_ARCH_X86": ("x86", 0x40000003),
    "SCMP_ARCH_AARCH64": ("aarch64", 0xC00000B7),
}
# Names runtime-spec allows that we accept but cannot compile (see module docstring).
_UNCOMPILED_ARCHES = frozenset(
    "SCMP_ARCH_X32 SCMP_ARCH_ARM SCMP_ARCH_MIPS SCMP_ARCH_MIPS64 SCMP_ARCH_MIPS64N32 "
    "SCMP_ARCH_MIPSEL SCMP_ARCH_MIPSEL64 SCMP_ARCH_MIPSEL64N32 SCMP_ARCH_PPC "
    "SCMP_ARCH_PPC64 SCMP_ARCH_PPC64LE SCMP_ARCH_S390 SCMP_ARCH_S390X SCMP_ARCH_PARISC "
    "SCMP_ARCH_PARISC64 SCMP_ARCH_RISCV64 SCMP_ARCH_LOONGARCH64".split()
)
_RUNS_ON = {"x86_64": ("x86_64", "x86"), "aarch64": ("aarch64",)}
_X32_SYSCALL_BIT = 0x40000000

# Classic BPF opcodes (<linux/filter.h>).
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_JA = 0x05
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGT = 0x25
_JGE = 0x35
_RET = 0x06  # BPF_RET | BPF_K
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16
BPF_MAXINSNS = 4096

# Placeholders for jump targets resolved when a rule is assembled.
_PASS = "pass"  # end of this argument's check: go on to the next argument
_FAIL = "fail"  # end of this rule: try the next rule


def host_arch() -> str:
    machine = os.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def filter_flags(seccomp: dict) -> int:
    """The SECCOMP_FILTER_FLAG_* bits for the profile's ``flags`` list."""
    bits = 0
    for name in seccomp.get("flags") or ():
        if name not in FLAGS:
            raise InvalidArgument(
                f"seccomp flag {name!r} is not supported (supported: {', '.join(FLAGS)})"
            )
        bits |= FLAGS[name]
    return bits


# (arch, profile, program) compiled ahead of time: see :func:`precompile`.
_PRECOMPILED: list[tuple[str, dict, bytes]] = []


def precompile(seccomp: dict) -> None:
    """Compile ``seccomp`` now and keep it, so that a later :func:`compile_filter` of an
    equal profile costs a dict comparison (~10 µs) instead of a compile (0.4-1.2 ms). A
    warm runtime (``conch.runtime.warm``) does this for Docker's default profile while
    it waits for its container."""
    arch = host_arch()
    _PRECOMPILED.append((arch, seccomp, _compile(seccomp, arch)))


def compile_filter(seccomp: dict, *, arch: str | None = None) -> bytes:
    """Compile ``linux.seccomp`` into sock_filter bytes for ``arch`` (default: host)."""
    arch = arch or host_arch()
    for known_arch, profile, program in _PRECOMPILED:
        if known_arch == arch and _same(profile, seccomp):
            return program
    return _compile(seccomp, arch)


def _same(a, b) -> bool:
    """``a == b`` with types compared too: to Python 1 == 1.0 == True, but _compile
    refuses ``"errnoRet": 1.0``, so an equal-looking profile must not borrow a program."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _compile(seccomp: dict, arch: str) -> bytes:
    if arch not in _RUNS_ON:
        raise InvalidArgument(f"seccomp: no syscall table for architecture {arch!r}")
    if seccomp.get("listenerPath"):
        raise InvalidArgument("seccomp: listenerPath (SCMP_ACT_NOTIFY) is not supported")
    filter_flags(seccomp)  # validate now, so a bad profile fails before any process exists
    default = _action(seccomp.get("defaultAction"), seccomp.get("defaultErrnoRet"), "defaultAction")
    sections = []
    for name in _arches(seccomp.get("architectures"), arch):
        key, audit = _ARCHES[name]
        sections.append((audit, _section(seccomp.get("syscalls") or (), key, default)))
    # Dispatch on seccomp_data.arch; each section is reached with an unconditional ja.
    insns = [(_LD_ABS, 0, 0, _OFF_ARCH)]
    # The ja of section i sits at 2 + 2i; section i starts at 2 + 2n + (earlier bodies).
    n, before = len(sections), 0
    for i, (audit, body) in enumerate(sections):
        insns += [(_JEQ, 0, 1, audit), (_JA, 0, 0, 2 * (n - i) - 1 + before)]
        before += len(body)
    insns.append((_RET, 0, 0, RET_KILL_PROCESS))
    for _, body in sections:
        insns += body
    if len(insns) > BPF_MAXINSNS:
        raise InvalidArgument(
            f"seccomp profile compiles to {len(insns)} BPF instructions; the kernel "
            f"accepts at most {BPF_MAXINSNS}"
        )
    return b"".join(struct.pack("<HBBI", *insn) for insn in insns)


def _arches(names, host: str) -> list[str]:
    """SCMP_ARCH_* names to compile: the host's own first, then runnable listed ones."""
    want = [n for n, (key, _) in _ARCHES.items() if key == host]
    for name in names or ():
        if name in _ARCHES:
            if _ARCHES[name][0] in _RUNS_ON[host] and name not in want:
                want.append(name)
        elif name not in _UNCOMPILED_ARCHES:
            raise InvalidArgument(f"seccomp: unknown architecture {name!r}")
    return want


def _action(name, errno_ret, where: str) -> int:
    """SCMP_ACT_* name (+ errnoRet) -> SECCOMP_RET_* value."""
    if name == "SCMP_ACT_NOTIFY":
        raise InvalidArgument(
            f"seccomp {where}: SCMP_ACT_NOTIFY needs a seccomp agent, which conch-runtime "
            "does not support"
        )
    if name not in _ACTIONS:
        raise InvalidArgument(f"seccomp {where}: unknown action {name!r}")
    if name not in _WITH_DATA:
        if errno_ret is not None:
            raise InvalidArgument(f"seccomp {where}: errnoRet is only valid with SCMP_ACT_ERRNO/TRACE")
        return _ACTIONS[name]
    if errno_ret is None:
        errno_ret = _EPERM  # runc's default for both ERRNO and TRACE
    if not isinstance(errno_ret, int) or isinstance(errno_ret, bool) or not 0 <= errno_ret <= 0xFFFF:
        raise InvalidArgument(f"seccomp {where}: errnoRet {errno_ret!r} is not in 0..65535")
    return _ACTIONS[name] | errno_ret


def _section(rules, arch: str, default: int) -> list[tuple]:
    from conch.runtime.syscall_table import BY_ARCH  # 3 dict literals; only when compiling

    table = BY_ARCH[arch]
    by_nr = _group(rules, table)
    body = [(_LD_ABS, 0, 0, _OFF_NR)]
    if arch == "x86_64":
        # x32 shares AUDIT_ARCH_X86_64 but numbers its syscalls from 0x40000000; none of our
        # per-number blocks would see them, so refuse them here. An allowing default
        # would let x32 bypass every rule, hence EPERM then (libseccomp does the same).
        x32 = RET_ERRNO | _EPERM if default in (RET_ALLOW, RET_LOG) else default
        body += [(_JGE, 0, 1, _X32_SYSCALL_BIT), (_RET, 0, 0, x32)]
    for nr in sorted(by_nr):
        body += _block(nr, *by_nr[nr], default)
    body.append((_RET, 0, 0, default))
    return body


def _group(rules, table: dict) -> dict:
    """syscall number -> (conditional [(ret, args)], unconditional ret or None)."""
    by_nr: dict[int, tuple[list, list]] = {}
    for i, rule in enumerate(rules):
        where = f"syscalls[{i}]"
        names = rule.get("names")
        if not names:
            raise InvalidArgument(f"seccomp {where}: names must be a non-empty list")
        ret = _action(rule.get("action"), rule.get("errnoRet"), where)
        args = [_arg(a, f"{where}.args[{j}]") for j, a in enumerate(rule.get("args") or ())]
        for name in names:
            nr = table.get(name)
            if nr is None:
                continue  # not a syscall of this architecture/kernel: skip, as runc does
            conditional, unconditional = by_nr.setdefault(nr, ([], []))
            if args:
                conditional.append((ret, args))
            elif not unconditional:
                # A later unconditional rule for the same syscall is ignored: the first
                # one wins, as with libseccomp under runc (checked here with runc 1.1.5:
                # ERRNO(1) then ERRNO(13) gives EPERM, ERRNO(13) then KILL gives EACCES).
                # Real profiles rely on it: podman's allows setns, then lists it again
                # as ERRNO for containers without CAP_SYS_ADMIN.
                unconditional.append(ret)
    return {nr: (c, u[0] if u else None) for nr, (c, u) in by_nr.items()}


_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
        "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")


def _arg(arg: dict, where: str) -> tuple[int, str, int, int]:
    index, op = arg.get("index"), arg.get("op")
    value, value_two = arg.get("value", 0), arg.get("valueTwo", 0)
    if not isinstance(index, int) or not 0 <= index <= 5:
        raise InvalidArgument(f"seccomp {where}: index {index!r} is not in 0..5")
    if op not in _OPS:
        raise InvalidArgument(f"seccomp {where}: unknown operator {op!r}")
    for v in (value, value_two):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
            raise InvalidArgument(f"seccomp {where}: value {v!r} is not an unsigned 64-bit integer")
    return index, op, value, value_two


def _block(nr: int, conditional: list, unconditional, default: int) -> list[tuple]:
    final = default if unconditional is None else unconditional
    if not conditional and final == default:
        return []  # the block would only repeat the default
    body = []
    for ret, args in conditional:
        body += _rule(args, ret)
    body.append((_RET, 0, 0, final))
    if len(body) <= 255:
        return [(_JEQ, 0, len(body), nr)] + body
    return [(_JEQ, 1, 0, nr), (_JA, 0, 0, len(body))] + body


def _rule(args: list, ret: int) -> list[tuple]:
    """AND of the argument checks, then ``ret``; any failing check skips past the ret."""
    insns = []
    for index, op, value, value_two in args:
        insns += _resolve(_compare(index, op, value, value_two), _PASS)
    insns.append((_RET, 0, 0, ret))
    return _resolve(insns, _FAIL)


def _resolve(insns: list, label: str) -> list[tuple]:
    """Replace jumps to ``label`` (= the end of ``insns``) with relative offsets."""
    out = []
    end = len(insns)
    for i, (code, jt, jf, k) in enumerate(insns):
        jt = end - i - 1 if jt == label else jt
        jf = end - i - 1 if jf == label else jf
        if isinstance(jt, int) and jt > 255 or isinstance(jf, int) and jf > 255:
            raise InvalidArgument("seccomp: a rule is too long for an 8-bit BPF jump")
        out.append((code, jt, jf, k))
    return out


def _compare(index: int, op: str, value: int, value_two: int) -> list[tuple]:
    """64-bit unsigned ``args[index] <op> value`` as two 32-bit steps (high word first)."""
    lo_off = _OFF_ARGS + 8 * index
    hi_off = lo_off + 4
    hi, lo = value >> 32, value & 0xFFFFFFFF
    ld_hi, ld_lo = (_LD_ABS, 0, 0, hi_off), (_LD_ABS, 0, 0, lo_off)
    P, F = _PASS, _FAIL
    if op == "SCMP_CMP_EQ":
        return [ld_hi, (_JEQ, 0, F, hi), ld_lo, (_JEQ, 0, F, lo)]
    if op == "SCMP_CMP_NE":
        return [ld_hi, (_JEQ, 0, P, hi), ld_lo, (_JEQ, F, 0, lo)]
    if op == "SCMP_CMP_GT":
        return [ld_hi, (_JGT, P, 0, hi), (_JEQ, 0, F, hi), ld_lo, (_JGT, 0, F, lo)]
    if op == "SCMP_CMP_GE":
        return [ld_hi, (_JGT, P, 0, hi), (_JEQ, 0, F, hi), ld_lo, (_JGE, 0, F, lo)]
    if op == "SCMP_CMP_LT":
        return [ld_hi, (_JGT, F, 0, hi), (_JEQ, 0, P, hi), ld_lo, (_JGE, F, 0, lo)]
    if op == "SCMP_CMP_LE":
        return [ld_hi, (_JGT, F, 0, hi), (_JEQ, 0, P, hi), ld_lo, (_JGT, F, 0, lo)]
    # SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo
    return [
        ld_hi, (_AND_K, 0, 0, hi), (_JEQ, 0, F, value_two >> 32),
        ld_lo, (_AND_K, 0, 0, lo), (_JEQ, 0, F, value_two & 0xFFFFFFFF),
    ]
