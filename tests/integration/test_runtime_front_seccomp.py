"""shim/runtime/seccomp.c compiles linux.seccomp to the very bytes conch.runtime.seccomp
does, or declines.

The C create/run path (issue 16 point 6) may take a container only when it does exactly
what the Python runtime would, so every profile is compiled by both and compared byte for
byte: the same program and the same flags, or C says "invalid:" where Python raises
InvalidArgument, or "unsupported:" where Python accepts something only by duck typing (a
string iterated as characters, an object as its keys, a bool as an int) and the container
is simply left to Python. A tiny C driver (built here with the Makefile's warnings) reads
one linux.seccomp JSON value on stdin. Profiles are handed to both sides as the same JSON
text, so number spellings ("-0", "1.0", 2**64) meet both parsers.

The load tests fork a child in the driver that loads the C program (no_new_privs first,
as the runtime does) and reports what a denied syscall returned.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
import uuid

import pytest

from conch.errors import InvalidArgument
from conch.runtime import presets
from conch.runtime import seccomp as pyseccomp
from conch.runtime.syscall_table import BY_ARCH
from conch.testing.bundles import DOCKER_DEFAULT_CAPS

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "shim/runtime"
PODMAN = pathlib.Path(__file__).with_name("data") / "podman_seccomp.json"
CONTAINERS_COMMON = pathlib.Path("/usr/share/containers/seccomp.json")

pytestmark = pytest.mark.skipif(pyseccomp.host_arch() != "x86_64", reason="cases are written for x86_64")

DRIVER = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "seccomp.h"

static char buf[1 << 22];

int main(int argc, char **argv)
{
	size_t n = fread(buf, 1, sizeof buf, stdin);
	char err[128], why[256];
	struct jval *v = json_parse(buf, n, err, sizeof err);
	if (!v) {
		printf("json: %s\n", err);
		return 2;
	}
	const char *mode = argc > 1 ? argv[1] : "compile";
	struct seccomp_prog p;
	if (strcmp(mode, "bench") == 0) {
		int rounds = atoi(argv[2]);
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int i = 0; i < rounds; i++) {
			if (seccomp_compile(v, &p, why, sizeof why) < 0)
				return 3;
			seccomp_prog_free(&p);
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / rounds);
		json_free(v);
		return 0;
	}
	if (seccomp_compile(v, &p, why, sizeof why) < 0) {
		printf("%s\n", why);
		json_free(v);
		return 0;
	}
	json_free(v);
	if (strcmp(mode, "check") == 0) {
		/* Does the kernel take it? A child loads it and exits 1 only when that failed
		 * (nothing is installed then); once loaded, the filter may end the child in
		 * any other way (SIGSYS, an exit_group that returns an errno). */
		pid_t pid = fork();
		if (pid == 0) {
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(&p) < 0)
				_exit(1);
			_exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
		printf("%s\n", WIFEXITED(status) && WEXITSTATUS(status) == 1 ? "refused" : "loaded");
		seccomp_prog_free(&p);
		return 0;
	}
	if (strcmp(mode, "load") == 0) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(&p) < 0) {
				printf("load: %d\n", errno);
				fflush(stdout);
				_exit(1);
			}
			int rc = mkdir(argv[2], 0700);
			printf("mkdir: %d\n", rc == 0 ? 0 : errno);
			fflush(stdout);
			_exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
		printf("status: %d\n", status);
		seccomp_prog_free(&p);
		return 0;
	}
	if (p.len == 0) {
		printf("none\n");
		return 0;
	}
	printf("flags %u\n", p.flags);
	const unsigned char *b = (const unsigned char *)p.insns;
	for (size_t i = 0; i < p.len * 8; i++)
		printf("%02x", b[i]);
	printf("\n");
	seccomp_prog_free(&p);
	return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = tmp_path_factory.mktemp("seccomp-driver")
    (d / "driver.c").write_text(DRIVER)
    exe = d / "driver"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME}", "-o", str(exe),
         str(d / "driver.c"), str(RUNTIME / "seccomp.c"), str(RUNTIME / "json.c")],
        check=True,
    )
    return exe


def run_c(driver, text: str, *args: str) -> str:
    out = subprocess.run([str(driver), *args], input=text.encode(), capture_output=True, check=True)
    return out.stdout.decode()


def run_py(text: str) -> str:
    """What conch.runtime.process.compile_seccomp makes of the same text."""
    seccomp = json.loads(text)
    if not seccomp:
        return "none\n"
    try:
        program = pyseccomp.compile_filter(seccomp)
        flags = pyseccomp.filter_flags(seccomp)
    except InvalidArgument:
        return "invalid"
    return f"flags {flags}\n{program.hex()}\n"


# --- the profiles both must compile identically --------------------------------------

ALL_CAPS = sorted({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_SYS_BOOT",
                   "CAP_SYS_TIME", "CAP_SYSLOG", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_NICE",
                   "CAP_SYS_PACCT", "CAP_SYS_RAWIO", "CAP_SYS_TTY_CONFIG", "CAP_SYS_RESOURCE",
                   "CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_IPC_LOCK",
                   *DOCKER_DEFAULT_CAPS})


def rule(names, action="SCMP_ACT_ERRNO", **extra):
    return {"names": names if isinstance(names, list) else [names], "action": action, **extra}


def arg(index, op, value=0, value_two=None, **extra):
    a = {"index": index, "value": value, "op": op, **extra}
    if value_two is not None:
        a["valueTwo"] = value_two
    return a


def profile(syscalls=(), default="SCMP_ACT_ALLOW", **extra):
    return {"defaultAction": default, "syscalls": list(syscalls), **extra}


OPS = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
VALUES = [0, 1, 0xFFFFFFFF, 0x1_0000_0000, 0x1_0000_0002, 0xDEAD_BEEF_0000_0001, 2**64 - 1]
ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
           "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"]


def _same_cases():
    cases = {}
    for label, caps in (("nocaps", []), ("dockercaps", DOCKER_DEFAULT_CAPS), ("allcaps", ALL_CAPS)):
        cases[f"docker-deny-list-{label}"] = presets.default_seccomp(caps)
        cases[f"docker-allow-list-{label}"] = presets.docker_profile_seccomp(caps)
    podman = json.loads(PODMAN.read_text())
    cases["podman"] = podman
    for archs in ([], ["SCMP_ARCH_X86_64"], ["SCMP_ARCH_X86"], ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                  ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], ["SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86"],
                  ["SCMP_ARCH_S390X", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64"]):
        cases[f"podman-arches-{'-'.join(a[10:] for a in archs) or 'none'}"] = {**podman, "architectures": archs}
    cases["podman-no-arches-key"] = {k: v for k, v in podman.items() if k != "architectures"}
    cases["podman-default-enosys"] = {**podman, "defaultErrnoRet": 38}
    cases["podman-flags"] = {**podman, "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}
    if CONTAINERS_COMMON.exists():
        # Docker's file format (archMap, includes/excludes, comment, errno): linux.seccomp
        # has none of these keys, so Python ignores them, and so must C.
        cases["containers-common-file-as-is"] = json.loads(CONTAINERS_COMMON.read_text())
    for op in OPS:
        for value in VALUES:
            cases[f"op-{op[9:]}-{value:x}"] = profile([rule("personality", args=[arg(0, op, value, value ^ 0xF0)])])
        cases[f"op-{op[9:]}-valueTwo-absent"] = profile([rule("read", args=[arg(2, op, 7)])])
        cases[f"op-{op[9:]}-value-absent"] = profile([rule("read", args=[{"index": 1, "op": op}])])
    cases["masked-eq-64bit"] = profile([rule("clone", "SCMP_ACT_ALLOW", args=[
        arg(0, "SCMP_CMP_MASKED_EQ", 0xFFFF_0000_7E02_0000, 0x1234_0000_0002_0000)])], default="SCMP_ACT_ERRNO")
    cases["six-args"] = profile([rule("mmap", args=[arg(i, OPS[i % 7], 1 << (10 * i), 3) for i in range(6)])])
    cases["same-index-twice"] = profile([rule("ioctl", args=[arg(1, "SCMP_CMP_GE", 5), arg(1, "SCMP_CMP_LE", 9)])])
    # 42 MASKED_EQ checks (6 insns each), a GT (5) and the ret: the first FAIL jump is 255.
    cases["jump-exactly-255"] = profile([rule("read", args=[arg(i % 6, "SCMP_CMP_MASKED_EQ", 3, 1) for i in range(42)]
                                              + [arg(0, "SCMP_CMP_GT", 9)])])
    cases["block-over-255"] = profile([rule("openat", args=[arg(1, "SCMP_CMP_EQ", i)]) for i in range(70)])
    # 49 one-EQ rules (5 insns), one two-EQ rule (9) and the final ret: a body of 255.
    cases["block-of-255"] = profile([rule("openat", args=[arg(1, "SCMP_CMP_EQ", i)]) for i in range(49)]
                                    + [rule("openat", args=[arg(0, "SCMP_CMP_EQ", 1), arg(2, "SCMP_CMP_EQ", 2)])])
    cases["block-of-256"] = profile([rule("openat", args=[arg(1, "SCMP_CMP_EQ", i)]) for i in range(51)])
    for action in ACTIONS:
        cases[f"rule-{action}"] = profile([rule(["mkdir", "mkdirat"], action)])
        cases[f"default-{action}"] = profile([rule(["getpid"], "SCMP_ACT_ALLOW" if action != "SCMP_ACT_ALLOW" else "SCMP_ACT_LOG")],
                                             default=action)
        cases[f"default-{action}-x86"] = {**cases[f"default-{action}"], "architectures": ["SCMP_ARCH_X86"]}
    for ret in (0, 1, 13, 38, 65535):
        cases[f"errnoRet-{ret}"] = profile([rule("mkdir", errnoRet=ret), rule("rmdir", "SCMP_ACT_TRACE", errnoRet=ret)])
        cases[f"defaultErrnoRet-{ret}"] = profile([rule("read", "SCMP_ACT_ALLOW")], default="SCMP_ACT_ERRNO", defaultErrnoRet=ret)
        cases[f"default-trace-{ret}"] = profile([rule("read", "SCMP_ACT_ALLOW")], default="SCMP_ACT_TRACE", defaultErrnoRet=ret)
    cases["errnoRet-null"] = profile([rule("mkdir", errnoRet=None)], defaultErrnoRet=None)
    cases["trace-no-errnoRet"] = profile([rule("mkdir", "SCMP_ACT_TRACE")], default="SCMP_ACT_TRACE")
    for flags in ([], None, ["SECCOMP_FILTER_FLAG_TSYNC"], ["SECCOMP_FILTER_FLAG_LOG"],
                  ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_LOG"],
                  ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]):
        cases[f"flags-{flags}"] = profile([rule("mkdir")], flags=flags)
    cases["first-unconditional-wins"] = profile([rule("mkdir", errnoRet=1), rule("mkdir", errnoRet=13), rule("mkdir", "SCMP_ACT_KILL")])
    cases["unconditional-then-conditional"] = profile([rule("socket"), rule("socket", "SCMP_ACT_ALLOW", args=[arg(0, "SCMP_CMP_EQ", 1)])])
    cases["unconditional-equals-default"] = profile([rule("read", "SCMP_ACT_ALLOW"), rule("write", "SCMP_ACT_ALLOW")])
    cases["uncond-default-then-other"] = profile([rule("read", "SCMP_ACT_ALLOW"), rule("read", "SCMP_ACT_KILL")])
    cases["name-twice-in-rule"] = profile([rule(["socket", "socket"], "SCMP_ACT_LOG", args=[arg(0, "SCMP_CMP_EQ", 40)])])
    cases["unknown-names-skipped"] = profile([rule(["no_such_syscall", "mkdir", "", "MKDIR", "mkdir "]),
                                             rule(["not_a_syscall"], args=[arg(0, "SCMP_CMP_EQ", 1)])])
    cases["all-names-unknown"] = profile([rule(["no_such_syscall"])])
    cases["x86-only-names"] = profile([rule(["socketcall", "waitpid", "mmap2"])], architectures=["SCMP_ARCH_X86"])
    cases["x86_64-only-names"] = profile([rule(["arch_prctl", "newfstatat"])], architectures=["SCMP_ARCH_X86"])
    cases["every-name-every-table"] = profile([rule(sorted(set().union(*BY_ARCH.values())), errnoRet=38)],
                                              architectures=["SCMP_ARCH_X86"])
    cases["no-syscalls-key"] = {"defaultAction": "SCMP_ACT_ERRNO"}
    cases["syscalls-null"] = {"defaultAction": "SCMP_ACT_KILL", "syscalls": None}
    cases["listenerPath-empty"] = profile([rule("mkdir")], listenerPath="", listenerMetadata="x")
    cases["unknown-keys-ignored"] = profile([rule("mkdir", comment="c", includes={"caps": ["X"]}, excludes={"arches": ["y"]})],
                                            archMap=[], defaultErrno="EPERM")
    texts = {name: json.dumps(p) for name, p in cases.items()}
    # Spellings only the text shows: Python's json reads "-0" as int 0; duplicate keys keep the last.
    texts["minus-zero"] = ('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",'
                           '"errnoRet":-0,"args":[{"index":-0,"op":"SCMP_CMP_EQ","value":-0,"valueTwo":-0}]}]}')
    texts["duplicate-keys"] = ('{"defaultAction":"SCMP_ACT_KILL","defaultAction":"SCMP_ACT_ALLOW",'
                               '"syscalls":[{"names":["read"],"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}')
    texts["max-u64-literal"] = profile_text("18446744073709551615")
    texts["empty-object"] = "{}"
    texts["null"] = "null"
    return texts


def profile_text(value: str) -> str:
    return ('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",'
            '"args":[{"index":0,"op":"SCMP_CMP_MASKED_EQ","value":%s,"valueTwo":%s}]}]}' % (value, value))


SAME = _same_cases()


@pytest.mark.parametrize("name", list(SAME))
def test_c_compiles_what_python_compiles(driver, name):
    text = SAME[name]
    expected = run_py(text)
    assert expected != "invalid", "a case meant to compile"
    assert run_c(driver, text) == expected


@pytest.mark.root
def test_kernel_takes_every_c_program(driver):
    loaded = [name for name in SAME if json.loads(SAME[name])]
    refused = [name for name in loaded if run_c(driver, SAME[name], "check") != "loaded\n"]
    assert not refused


# --- profiles Python refuses: C refuses them too ---------------------------------------

def _invalid_cases():
    ok = profile([rule("mkdir")])
    cases = {
        "unknown-action": profile([rule("mkdir", "SCMP_ACT_NOPE")]),
        "notify-default": profile(default="SCMP_ACT_NOTIFY"),
        "notify-rule": profile([rule("mkdir", "SCMP_ACT_NOTIFY")]),
        "listenerPath": {**ok, "listenerPath": "/run/agent.sock"},
        "unknown-flag": {**ok, "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]},
        "unknown-flag-after-good": {**ok, "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"]},
        "flag-non-string": {**ok, "flags": [1]},
        "unknown-arch": {**ok, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
        "arch-lowercase": {**ok, "architectures": ["scmp_arch_x86"]},
        "errnoRet-with-allow": profile([rule("mkdir", "SCMP_ACT_ALLOW", errnoRet=1)]),
        "errnoRet-with-kill": profile([rule("mkdir", "SCMP_ACT_KILL", errnoRet=0)]),
        "defaultErrnoRet-with-allow": profile([rule("mkdir")], defaultErrnoRet=1),
        "errnoRet-65536": profile([rule("mkdir", errnoRet=65536)]),
        "errnoRet-negative": profile([rule("mkdir", errnoRet=-1)]),
        "errnoRet-float": profile([rule("mkdir", errnoRet=1.0)]),
        "errnoRet-bool": profile([rule("mkdir", errnoRet=True)]),
        "errnoRet-string": profile([rule("mkdir", errnoRet="1")]),
        "index-6": profile([rule("read", args=[arg(6, "SCMP_CMP_EQ")])]),
        "index-negative": profile([rule("read", args=[arg(-1, "SCMP_CMP_EQ")])]),
        "index-float": profile([rule("read", args=[arg(1.0, "SCMP_CMP_EQ")])]),
        "index-missing": profile([rule("read", args=[{"op": "SCMP_CMP_EQ", "value": 1}])]),
        "unknown-op": profile([rule("read", args=[arg(0, "SCMP_CMP_MASKED_NE")])]),
        "op-missing": profile([rule("read", args=[{"index": 0, "value": 1}])]),
        "value-negative": profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", -1)])]),
        "value-2**64": profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", 2**64)])]),
        "valueTwo-2**64": profile([rule("read", args=[arg(0, "SCMP_CMP_MASKED_EQ", 1, 2**64)])]),
        "value-null": profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", None)])]),
        "value-float": profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", 1.5)])]),
        "value-bool": profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", True)])]),
        "invalid-arg-on-unknown-name": profile([rule("no_such_syscall", args=[arg(9, "SCMP_CMP_EQ")])]),
        "names-empty": profile([rule([])]),
        "names-missing": profile([{"action": "SCMP_ACT_ERRNO"}]),
        "names-null": profile([{"names": None, "action": "SCMP_ACT_ERRNO"}]),
        "action-missing": profile([{"names": ["mkdir"]}]),
        "defaultAction-missing": {"syscalls": [rule("mkdir")]},
        "43-args-jump-too-long": profile([rule("read", args=[arg(i % 6, "SCMP_CMP_MASKED_EQ", 3, 1) for i in range(43)])]),
        "over-4096-insns": profile([rule("openat", args=[arg(1, "SCMP_CMP_EQ", i)]) for i in range(1100)]),
    }
    texts = {name: json.dumps(p) for name, p in cases.items()}
    texts["value-2**64-literal"] = profile_text("18446744073709551616")
    texts["value-huge-literal"] = profile_text("1" + "0" * 80)
    texts["value-huge-negative-literal"] = profile_text("-1" + "0" * 30)
    texts["value-exponent"] = profile_text("1e3")
    return texts


INVALID = _invalid_cases()


@pytest.mark.parametrize("name", list(INVALID))
def test_c_refuses_what_python_refuses(driver, name):
    text = INVALID[name]
    assert run_py(text) == "invalid"
    assert run_c(driver, text).startswith("invalid: ")


# --- what Python takes only by duck typing: C leaves it to Python ----------------------

UNSUPPORTED = {
    # Python iterates a string as its characters (none a syscall: skipped) and an object
    # as its keys, takes a bool as an int and a number as an unknown syscall name, and
    # treats every falsy linux.seccomp as "no filter".
    "names-string": profile([{"names": "mkdir", "action": "SCMP_ACT_ERRNO"}]),
    "names-object": profile([{"names": {"mkdir": 1}, "action": "SCMP_ACT_ERRNO"}]),
    "names-number": profile([rule([1, "mkdir"])]),
    "flags-object": profile([rule("mkdir")], flags={"SECCOMP_FILTER_FLAG_LOG": 1}),
    "arches-object": profile([rule("mkdir")], architectures={"SCMP_ARCH_X86": 1}),
    "index-bool": profile([rule("read", args=[arg(True, "SCMP_CMP_EQ")])]),
    "seccomp-false": False,
    "seccomp-empty-list": [],
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_c_leaves_duck_typed_profiles_to_python(driver, name):
    text = json.dumps(UNSUPPORTED[name])
    assert run_py(text) != "invalid"  # Python compiles it (or loads no filter)
    assert run_c(driver, text).startswith("unsupported: ")


# --- loaded for real ------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("case, expected", [
    (profile([rule(["mkdir", "mkdirat"])]), errno.EPERM),
    (profile([rule(["mkdir", "mkdirat"], errnoRet=13)], flags=["SECCOMP_FILTER_FLAG_LOG"]), errno.EACCES),
    (profile([rule(["mkdir", "mkdirat"], "SCMP_ACT_ALLOW", args=[arg(1, "SCMP_CMP_MASKED_EQ", 0o7000, 0o7000)]),
              rule(["mkdir", "mkdirat"], errnoRet=38)],
             flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]), errno.ENOSYS),
    (presets.docker_profile_seccomp(DOCKER_DEFAULT_CAPS), 0),
    (json.loads(PODMAN.read_text()), 0),
], ids=["eperm", "eacces-log-flag", "enosys-conditional-tsync", "docker-allows-mkdir", "podman-allows-mkdir"])
def test_c_program_loads_and_denies(driver, tmp_path, case, expected):
    target = tmp_path / f"d-{uuid.uuid4().hex[:8]}"
    out = run_c(driver, json.dumps(case), "load", str(target))
    assert out == f"mkdir: {expected}\nstatus: 0\n"
    assert target.exists() == (expected == 0)
    if target.exists():
        os.rmdir(target)


# --- random profiles, well formed and not ----------------------------------------------

def _random_value(rnd):
    return rnd.choice([0, 1, rnd.getrandbits(8), rnd.getrandbits(32), rnd.getrandbits(33), rnd.getrandbits(64),
                       2**32 - 1, 2**64 - 1])


def _random_profile(rnd):
    names = sorted(set().union(*BY_ARCH.values())) + ["no_such_syscall", ""]
    rules = []
    for _ in range(rnd.randrange(0, 12)):
        r = {"names": rnd.sample(names, rnd.randrange(1, 6)), "action": rnd.choice(ACTIONS)}
        if r["action"] in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") and rnd.random() < 0.5:
            r["errnoRet"] = rnd.choice([0, 1, 13, 38, 65535])
        if rnd.random() < 0.5:
            r["args"] = [{"index": rnd.randrange(6), "op": rnd.choice(OPS), "value": _random_value(rnd),
                          "valueTwo": _random_value(rnd)} for _ in range(rnd.randrange(1, 4))]
        rules.append(r)
    p = {"defaultAction": rnd.choice(ACTIONS), "syscalls": rules}
    if p["defaultAction"] in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") and rnd.random() < 0.5:
        p["defaultErrnoRet"] = rnd.choice([0, 1, 38])
    if rnd.random() < 0.7:
        p["architectures"] = rnd.sample(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
                                         "SCMP_ARCH_ARM"], rnd.randrange(0, 4))
    if rnd.random() < 0.3:
        p["flags"] = rnd.sample(list(pyseccomp.FLAGS), rnd.randrange(0, 3))
    return p


_ODD = [None, True, False, -1, 1.5, 2**64, "x", "", [], {}, [1], {"a": 1}, "SCMP_ACT_ALLOW", 0]


def _mutate(rnd, p):
    """Replace one value somewhere in p with an odd one (a wrong type, a bad number)."""
    spots = []

    def walk(node):
        if isinstance(node, dict):
            for k in node:
                spots.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                spots.append((node, i))
                walk(node[i])

    walk(p)
    if spots:
        container, key = rnd.choice(spots)
        container[key] = rnd.choice(_ODD)
    return p


def _python_outcome(text):
    try:
        return run_py(text)
    except Exception:  # TypeError, AttributeError: Python fails without InvalidArgument
        return "crash"


@pytest.mark.parametrize("seed", range(8))
def test_random_profiles_agree(driver, seed):
    import random

    rnd = random.Random(seed)
    for i in range(60):
        p = _random_profile(rnd)
        if i % 2:
            p = _mutate(rnd, p)
        text = json.dumps(p)
        expected, got = _python_outcome(text), run_c(driver, text)
        if got.startswith(("invalid: ", "unsupported: ")):
            # Refusing is always safe; claiming "invalid" must mean Python refuses too.
            assert not got.startswith("invalid: ") or expected in ("invalid", "crash"), (text, got)
        else:
            assert got == expected, text
