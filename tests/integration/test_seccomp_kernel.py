"""Compiled filters in the real kernel: each case forks a child, loads a filter there (the
filter is irrevocable, so never in the test process), runs a few syscalls, and reports
the outcomes to the parent as JSON over a pipe. The child always leaves with os._exit."""

import ctypes
import errno
import json
import os

import pytest

from conch.errors import SystemCallError
from conch.kernel.seccomp import load_filter
from conch.runtime.presets import DEFAULT_CAPABILITIES, default_seccomp, docker_profile_seccomp
from conch.runtime.seccomp import compile_filter, filter_flags


def _seccomp_filter_supported() -> bool:
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            return "errno" in f.read().split()
    except OSError:
        return False


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers below are x86_64"),
    pytest.mark.skipif(not _seccomp_filter_supported(), reason="kernel without seccomp filters"),
]

libc = ctypes.CDLL(None, use_errno=True)
NR_PERSONALITY, NR_GETPPID, NR_KEYCTL, NR_CLONE3 = 135, 110, 250, 435
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x20000


def _call(fn, *args) -> int:
    """0/result on success, or -errno, so outcomes are plain ints."""
    ctypes.set_errno(0)
    rc = fn(*args)
    return -ctypes.get_errno() if rc == -1 else rc


def _in_child(body) -> dict:
    """Run body() in a forked child; return the dict it produced (or its error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(r)
            # Everything that allocates or imports happens before the filter, in body's
            # setup; body returns a dict built from ints and strings only.
            out = json.dumps(body()).encode()
            os.write(w, out)
            status = 0
        except BaseException as exc:  # report, never unwind into pytest
            try:
                os.write(w, json.dumps({"error": repr(exc)}).encode())
            except BaseException:
                pass
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in result, result["error"]
    assert os.waitstatus_to_exitcode(status) == 0, (status, result)
    return result


def _seccomp_mode() -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return line.split()[1]
    return "?"


@pytest.mark.parametrize("make_profile", [default_seccomp, docker_profile_seccomp])
def test_default_profile_in_the_kernel(make_profile):
    program = compile_filter(make_profile(DEFAULT_CAPABILITIES))

    def body():
        assert _call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        status_before = _seccomp_mode()
        load_filter(program)
        out = {"before": status_before, "after": _seccomp_mode()}
        out["unshare"] = _call(libc.unshare, CLONE_NEWNS)
        out["clone3"] = _call(libc.syscall, NR_CLONE3, None, 0)
        out["umount2"] = _call(libc.umount2, b"/nonexistent-conch-seccomp-test", 0)
        out["keyctl"] = _call(libc.syscall, NR_KEYCTL, 0, ctypes.c_long(-3), 0)
        out["getpid"] = os.getpid()
        out["personality_query"] = _call(libc.syscall, NR_PERSONALITY, ctypes.c_ulong(0xFFFFFFFF))
        out["personality_no_aslr"] = _call(libc.syscall, NR_PERSONALITY, ctypes.c_ulong(0x40000))
        # fork() is clone(2) without CLONE_NEW* flags: must still work.
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out["fork_exit"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        return out

    got = _in_child(body)
    assert got["before"] in ("0", "2")  # "2" if pytest itself runs under a filter
    assert got["after"] == "2"
    assert got["unshare"] == -errno.EPERM
    assert got["clone3"] == -errno.ENOSYS
    assert got["umount2"] == -errno.EPERM
    assert got["keyctl"] == -errno.EPERM
    assert got["getpid"] > 0
    assert got["personality_query"] >= 0
    assert got["personality_no_aslr"] == -errno.EPERM
    assert got["fork_exit"] == 7


def test_custom_allow_list_with_argument_rule():
    # Only what the child does after loading: the calls below, writing the report, exiting,
    # and what CPython's allocator and signal handling may touch on the way.
    needed = ["write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
              "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "futex", "getpid", "close"]
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": needed, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        ],
    }
    program, flags = compile_filter(profile), filter_flags(profile)
    probe = b"/"

    def body():
        out = {}
        assert _call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        load_filter(program, flags=flags)
        out["getpid"] = _call(libc.getpid)
        out["personality_query"] = _call(libc.syscall, NR_PERSONALITY, ctypes.c_ulong(0xFFFFFFFF))
        out["personality_32"] = _call(libc.syscall, NR_PERSONALITY, ctypes.c_ulong(8))
        out["getppid"] = _call(libc.syscall, NR_GETPPID)
        out["chdir"] = _call(libc.chdir, probe)  # not listed: the default action
        return out

    got = _in_child(body)
    assert got["getpid"] > 0
    assert got["personality_query"] >= 0
    assert got["personality_32"] == -errno.EPERM
    assert got["getppid"] == -errno.EXDEV
    assert got["chdir"] == -errno.EPERM


def test_kernel_rejects_a_malformed_program():
    bad = bytes.fromhex("1500ff0000000000")  # jeq 0, jt=255: jumps past the end, no ret

    def body():
        assert _call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        before = _seccomp_mode()
        try:
            load_filter(bad)
        except SystemCallError as exc:
            return {"errno": exc.errno, "unchanged": _seccomp_mode() == before}
        return {"errno": 0}

    got = _in_child(body)
    assert got == {"errno": errno.EINVAL, "unchanged": True}


def test_length_checked_before_the_call():
    with pytest.raises(SystemCallError, match="bad filter length"):
        load_filter(b"\x06\x00\x00\x00")
    with pytest.raises(SystemCallError, match="bad filter length"):
        load_filter(b"")
