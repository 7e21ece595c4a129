"""compile_filter through the pure-Python BPF interpreter: actions, 64-bit operators,
rule combination, architecture checks, limits, and a property test against a direct
evaluation of the profile."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conch.errors import InvalidArgument
from conch.runtime.seccomp import compile_filter, filter_flags
from conch.runtime.syscall_table import AARCH64, X86, X86_64
from conch.testing import bpf

AUDIT_X86_64, AUDIT_I386, AUDIT_AARCH64 = 0xC000003E, 0x40000003, 0xC00000B7
U64 = (1 << 64) - 1

# SECCOMP_RET_* written out independently of the compiler.
RET = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000,
}


def run(profile, name, args=(), *, arch="x86_64", audit=AUDIT_X86_64, table=X86_64):
    return bpf.describe(bpf.run(compile_filter(profile, arch=arch), table[name], audit, args))


def one_rule(action="SCMP_ACT_ALLOW", args=None, default="SCMP_ACT_ERRNO", **extra):
    rule = {"names": ["personality"], "action": action, **extra}
    if args is not None:
        rule["args"] = args
    return {"defaultAction": default, "syscalls": [rule]}


@pytest.mark.parametrize(
    "action, extra, expected",
    [
        ("SCMP_ACT_ALLOW", {}, "ALLOW"),
        ("SCMP_ACT_LOG", {}, "LOG"),
        ("SCMP_ACT_KILL", {}, "KILL_THREAD"),
        ("SCMP_ACT_KILL_THREAD", {}, "KILL_THREAD"),
        ("SCMP_ACT_KILL_PROCESS", {}, "KILL_PROCESS"),
        ("SCMP_ACT_TRAP", {}, "TRAP(0)"),
        ("SCMP_ACT_ERRNO", {}, "ERRNO(1)"),
        ("SCMP_ACT_ERRNO", {"errnoRet": 38}, "ERRNO(38)"),
        ("SCMP_ACT_ERRNO", {"errnoRet": 0}, "ERRNO(0)"),
        ("SCMP_ACT_TRACE", {}, "TRACE(1)"),
        ("SCMP_ACT_TRACE", {"errnoRet": 7}, "TRACE(7)"),
    ],
)
def test_each_action(action, extra, expected):
    profile = one_rule(action, default="SCMP_ACT_ALLOW" if action != "SCMP_ACT_ALLOW" else "SCMP_ACT_LOG", **extra)
    assert run(profile, "personality") == expected
    assert run(profile, "getpid") in ("ALLOW", "LOG")


def test_default_action_and_default_errno():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13, "syscalls": []}
    assert run(profile, "getpid") == "ERRNO(13)"
    assert run({"defaultAction": "SCMP_ACT_ERRNO"}, "getpid") == "ERRNO(1)"


@pytest.mark.parametrize("bad", ["SCMP_ACT_NOTIFY", "SCMP_ACT_BOGUS", None, "allow"])
def test_unknown_or_unsupported_actions_are_rejected(bad):
    with pytest.raises(InvalidArgument, match="NOTIFY|unknown action"):
        compile_filter(one_rule(bad))
    with pytest.raises(InvalidArgument):
        compile_filter({"defaultAction": bad})


def test_bad_rule_shapes_are_rejected():
    with pytest.raises(InvalidArgument, match="operator"):
        compile_filter(one_rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_WAT"}]))
    with pytest.raises(InvalidArgument, match="index"):
        compile_filter(one_rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]))
    with pytest.raises(InvalidArgument, match="64-bit"):
        compile_filter(one_rule(args=[{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]))
    with pytest.raises(InvalidArgument, match="64-bit"):
        compile_filter(one_rule(args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]))
    with pytest.raises(InvalidArgument, match="errnoRet"):
        compile_filter(one_rule("SCMP_ACT_ALLOW", errnoRet=1))
    with pytest.raises(InvalidArgument, match="names"):
        compile_filter({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]})
    with pytest.raises(InvalidArgument, match="listenerPath"):
        compile_filter({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"})
    with pytest.raises(InvalidArgument, match="architecture"):
        compile_filter({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]})
    with pytest.raises(InvalidArgument, match="flag"):
        compile_filter({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]})


def test_first_unconditional_action_wins_like_libseccomp():
    # runc 1.1.5 + libseccomp, checked on this machine: the first rule is kept
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
    ]}
    assert run(profile, "getpid") == "ERRNO(1)"
    profile["syscalls"].reverse()
    assert run(profile, "getpid") == "KILL_THREAD"


def test_flags():
    assert filter_flags({}) == 0
    assert filter_flags({"flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}) == 0b111


EDGE = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 0x100000000,
        0x100000001, 0xFFFFFFFF00000000, 0xFFFFFFFF00000001, 1 << 63, U64 - 1, U64]


def direct(op, arg, value, value_two=0):
    return {
        "SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value, "SCMP_CMP_LE": arg <= value,
        "SCMP_CMP_EQ": arg == value, "SCMP_CMP_GE": arg >= value, "SCMP_CMP_GT": arg > value,
        "SCMP_CMP_MASKED_EQ": arg & value == value_two,
    }[op]


OPS = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("index", [0, 3, 5])
def test_64bit_comparisons_on_edge_values(op, index):
    for value in EDGE:
        program = compile_filter(one_rule(args=[{"index": index, "value": value, "op": op}]))
        for arg in EDGE:
            args = [0xDEADBEEF] * 6
            args[index] = arg
            got = bpf.run(program, X86_64["personality"], AUDIT_X86_64, args)
            want = RET["SCMP_ACT_ALLOW"] if direct(op, arg, value) else RET["SCMP_ACT_ERRNO"] | 1
            assert got == want, (op, hex(value), hex(arg))


def test_masked_eq_uses_value_as_mask_and_value_two_as_datum():
    for mask, datum in [(0x7E020000, 0), (0xFF, 0x12), (0xFFFFFFFF00000000, 0x100000000), (U64, U64)]:
        program = compile_filter(one_rule(args=[{"index": 1, "value": mask, "valueTwo": datum,
                                                 "op": "SCMP_CMP_MASKED_EQ"}]))
        for arg in EDGE + [0x10000000, 0x11, 0x112, 0x100000012]:
            got = bpf.run(program, X86_64["personality"], AUDIT_X86_64, [0, arg])
            assert (got == RET["SCMP_ACT_ALLOW"]) == direct("SCMP_CMP_MASKED_EQ", arg, mask, datum)


def test_args_are_anded_and_rules_ored():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 10, "op": "SCMP_CMP_GE"},
            {"index": 1, "value": 20, "op": "SCMP_CMP_LT"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 2, "value": 7, "op": "SCMP_CMP_EQ"}]},
    ]}
    assert run(profile, "mmap", [10, 19]) == "ALLOW"
    assert run(profile, "mmap", [9, 19]) == "ERRNO(1)"
    assert run(profile, "mmap", [10, 20]) == "ERRNO(1)"
    assert run(profile, "mmap", [0, 99, 7]) == "ALLOW"  # second rule
    assert run(profile, "mmap", [0, 99, 8]) == "ERRNO(1)"


def test_conditional_rules_come_before_the_unconditional_one():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
    ]}
    assert run(profile, "personality", [0xFFFFFFFF]) == "ALLOW"
    assert run(profile, "personality", [8]) == "ERRNO(1)"


def test_foreign_arch_is_killed_and_x32_refused():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}
    program = compile_filter(profile, arch="x86_64")
    assert bpf.describe(bpf.run(program, X86_64["getpid"], AUDIT_AARCH64)) == "KILL_PROCESS"
    assert bpf.describe(bpf.run(program, X86_64["getpid"], AUDIT_I386)) == "KILL_PROCESS"
    # x32 shares the x86_64 audit arch; with an allowing default it gets EPERM.
    x32_getpid = 0x40000000 | X86_64["getpid"]
    assert bpf.describe(bpf.run(program, x32_getpid, AUDIT_X86_64)) == "ERRNO(1)"
    strict = compile_filter({"defaultAction": "SCMP_ACT_KILL_PROCESS"}, arch="x86_64")
    assert bpf.describe(bpf.run(strict, 0x40000000, AUDIT_X86_64)) == "KILL_PROCESS"


def test_listed_i386_gets_its_own_table():
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}
    program = compile_filter(profile, arch="x86_64")
    assert bpf.describe(bpf.run(program, X86["getpid"], AUDIT_I386)) == "ERRNO(1)"
    assert bpf.describe(bpf.run(program, X86_64["getpid"], AUDIT_I386)) == "ALLOW"  # = i386 mkdir
    assert bpf.describe(bpf.run(program, X86_64["getpid"], AUDIT_X86_64)) == "ERRNO(1)"


def test_aarch64_numbers():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid", "open"], "action": "SCMP_ACT_ERRNO"}]}  # no open(2) on arm64
    program = compile_filter(profile, arch="aarch64")
    assert bpf.describe(bpf.run(program, AARCH64["getpid"], AUDIT_AARCH64)) == "ERRNO(1)"
    assert bpf.describe(bpf.run(program, X86_64["getpid"], AUDIT_AARCH64)) == "ALLOW"
    assert bpf.describe(bpf.run(program, AARCH64["getpid"], AUDIT_X86_64)) == "KILL_PROCESS"


def test_unknown_syscall_names_are_skipped():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["no_such_syscall", "getpid", "s390_runtime_instr"], "action": "SCMP_ACT_ALLOW"}]}
    assert run(profile, "getpid") == "ALLOW"


def test_big_blocks_use_long_jumps_and_stay_valid():
    # 120 conditional rules on one syscall: the block is far longer than 255 instructions.
    values = list(range(0, 1200, 10))
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]} for v in values
    ] + [{"names": ["getpid", "read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    program = compile_filter(profile)
    assert len(program) // 8 > 300
    for code, jt, jf, k in bpf.check(program):
        assert jt <= 255 and jf <= 255
    assert run(profile, "personality", [1190]) == "ALLOW"
    assert run(profile, "personality", [1191]) == "ERRNO(1)"
    assert run(profile, "getpid") == "ALLOW"
    assert run(profile, "write") == "ALLOW"
    assert run(profile, "openat") == "ERRNO(1)"


def test_too_many_instructions_is_a_clear_error():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": i, "value": v, "op": "SCMP_CMP_GT"} for i in range(6)]}
        for v in range(200)
    ]}
    with pytest.raises(InvalidArgument, match="4096"):
        compile_filter(profile)


def test_interpreter_rejects_bad_programs():
    with pytest.raises(ValueError, match="ret"):
        bpf.check(bytes(8))  # ld [0] ... no ret
    with pytest.raises(ValueError, match="outside"):
        bpf.check((0x15).to_bytes(2, "little") + bytes([5, 0]) + bytes(4) + (6).to_bytes(8, "little"))


# --- property: compiled program == direct evaluation of the profile -------------------

NAMES = ["read", "write", "getpid", "personality", "mmap", "openat"]
ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
           "SCMP_ACT_LOG", "SCMP_ACT_TRACE"]
u64 = st.one_of(st.sampled_from(EDGE), st.integers(0, U64))


@st.composite
def actions(draw):
    name = draw(st.sampled_from(ACTIONS))
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") and draw(st.booleans()):
        return name, draw(st.integers(0, 4095))
    return name, None


@st.composite
def profiles(draw):
    default, default_errno = draw(actions())
    rules = []
    for _ in range(draw(st.integers(0, 8))):
        action, errno_ret = draw(actions())
        rule = {"names": draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)),
                "action": action}
        if errno_ret is not None:
            rule["errnoRet"] = errno_ret
        args = draw(st.lists(st.fixed_dictionaries({
            "index": st.integers(0, 5), "value": u64, "valueTwo": u64,
            "op": st.sampled_from(OPS + ["SCMP_CMP_MASKED_EQ"])}), max_size=3))
        if args:
            rule["args"] = args
        rules.append(rule)
    profile = {"defaultAction": default, "syscalls": rules}
    if default_errno is not None:
        profile["defaultErrnoRet"] = default_errno
    return profile


def ret_of(action, errno_ret):
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return RET[action] | (1 if errno_ret is None else errno_ret)
    return RET[action]


def evaluate(profile, name, args):
    """The documented semantics, written directly: conditional rules in order (all args
    must hold), then the unconditional rule, then the default."""
    unconditional = []
    for rule in profile["syscalls"]:
        if name not in rule["names"]:
            continue
        ret = ret_of(rule["action"], rule.get("errnoRet"))
        if not rule.get("args"):
            unconditional.append(ret)
        elif all(direct(a["op"], args[a["index"]], a["value"], a["valueTwo"]) for a in rule["args"]):
            return ret
    if unconditional:
        return unconditional[0]  # the first unconditional rule wins, as in libseccomp
    return ret_of(profile["defaultAction"], profile.get("defaultErrnoRet"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=profiles(), data=st.data())
def test_compiled_program_matches_direct_evaluation(profile, data):
    program = compile_filter(profile, arch="x86_64")
    # Argument values near the rules' own constants hit the comparison edges.
    near = [v + d for r in profile["syscalls"] for a in r.get("args", ())
            for v in (a["value"], a["valueTwo"]) for d in (-1, 0, 1) if 0 <= v + d <= U64]
    arg = st.one_of(u64, st.sampled_from(near)) if near else u64
    for _ in range(5):
        name = data.draw(st.sampled_from(NAMES))
        args = data.draw(st.lists(arg, min_size=6, max_size=6))
        got = bpf.run(program, X86_64[name], AUDIT_X86_64, args)
        assert got == evaluate(profile, name, args), (name, args)


def test_committed_syscall_table_matches_the_generator():
    import pathlib
    import shutil
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    if not shutil.which("cpp") or not pathlib.Path("/usr/include/asm-generic/unistd.h").exists():
        pytest.skip("needs cpp and the kernel UAPI headers")
    fresh = subprocess.run([sys.executable, str(root / "tools/gen_syscall_table.py")],
                           capture_output=True, text=True, check=True).stdout
    assert fresh == (root / "conch/runtime/syscall_table.py").read_text(), \
        "regenerate: python3 tools/gen_syscall_table.py > conch/runtime/syscall_table.py"


def test_a_precompiled_program_serves_only_a_profile_of_the_same_types():
    # 1.0 == 1 in Python, but _compile refuses a float errnoRet: the warm runtime's
    # precompiled program must not make the same profile acceptable (found by the C port)
    from conch.runtime import seccomp

    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    saved = list(seccomp._PRECOMPILED)
    try:
        seccomp.precompile(profile)
        same = {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
        assert compile_filter(same) is seccomp._PRECOMPILED[-1][2]
        floaty = {"defaultAction": "SCMP_ACT_ALLOW",
                  "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1.0}]}
        with pytest.raises(InvalidArgument):
            compile_filter(floaty)
    finally:
        seccomp._PRECOMPILED[:] = saved
