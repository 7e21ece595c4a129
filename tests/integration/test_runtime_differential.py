"""Differential tests: the same bundle through runc (the reference) and every other
available runtime must print the same thing.

Each probe is run by the reference and the runtime under test from the *same* bundle
directory (same config.json, same cgroupsPath, one after the other), so nothing but the
runtime differs. Outputs are compared exactly — exit code, stdout and stderr — with only
these normalisations, each for a reason that is not the runtime's choice:

- none on stdout/stderr text: probes are written to avoid printing values that change
  from run to run (namespace inode numbers, pipe inodes, timestamps, pids outside the
  container). Namespace identity is instead printed as "host"/"new" by comparing with
  the host's links, handed in through the environment.
"""

from __future__ import annotations

import difflib
import os

import pytest

from conch.testing.bundles import DOCKER_DEFAULT_CAPS

pytestmark = pytest.mark.root

REFERENCE = "runc"
OTHERS = ("conch", "crun")
NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _host_ns_env(spec):
    """HOSTNS_<type>=<link> for each host namespace, read by the `namespaces` probe."""
    spec["process"]["env"] += [
        f"HOSTNS_{t}={os.readlink(f'/proc/self/ns/{t}')}" for t in NS_TYPES
    ]


def _deny_mkdir(spec):
    spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    }


def _tmpfs(spec):
    spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "size=1m"]})


def _bind_with_data(spec):
    # data words next to rbind: runc drops them (mount(2) ignores data with MS_BIND)
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": "/usr/share",
                           "options": ["rbind", "ro", "mode=755", "size=1k"]})


NS_SCRIPT = ("for t in " + " ".join(NS_TYPES) + "; do eval h=\\$HOSTNS_$t; "
             "if [ \"$(readlink /proc/self/ns/$t)\" = \"$h\" ]; then echo $t host; "
             "else echo $t new; fi; done")

# name -> (args, edits as callables, changes as keywords)
PROBES = {
    "identity": (sh("id; hostname; echo pid=$$; umask; pwd"), [], {}),
    "env": (sh("env | sort"), [], {"env": ["PATH=/bin", "A=1", "B=two words"]}),
    "status": (sh("grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups|SigIgn|SigBlk)' "
                  "/proc/1/status"), [], {}),
    "status-nonroot": (sh("grep -E '^(Cap|NoNewPrivs|Uid|Gid|Groups)' /proc/1/status; id"),
                       [], {"user": {"uid": 1000, "gid": 1000, "additionalGids": [1001]},
                            "no_new_privileges": True}),
    "ambient": (sh("grep -E '^Cap' /proc/self/status"), [],
                {"capabilities": {s: list(DOCKER_DEFAULT_CAPS) for s in
                                  ("bounding", "effective", "permitted", "inheritable",
                                   "ambient")}}),
    "mounts": (["cat", "/proc/mounts"], [], {}),
    "mounts-readonly-tmpfs": (sh("touch /x; echo rc=$?; cat /proc/mounts"), [_tmpfs],
                              {"readonly_rootfs": True}),
    "dev": (sh("stat -c '%n %F %a %u:%g %t:%T' /dev /dev/* /dev/pts/* | sort; "
               "for l in /dev/fd /dev/stdin /dev/stdout /dev/stderr /dev/ptmx /dev/core; "
               "do echo $l '->' $(readlink $l); done"), [], {}),
    "rootfs-tree": (sh("stat -c '%n %F %a %u:%g' /* | sort"), [], {}),
    "fds": (sh("ls /proc/self/fd | sort -n"), [], {}),
    "rlimits": (sh("ulimit -a"), [],
                {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                             {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}]}),
    "masked-readonly": (sh("for p in /proc/keys /proc/timer_list /proc/acpi /sys/firmware "
                           "/proc/kcore; do [ -e $p ] && stat -c '%n %F %s' $p; done; "
                           "ls -A /proc/acpi /sys/firmware; echo 1 > /proc/sys/kernel/"
                           "shm_rmid_forced; echo rc=$?"), [], {}),
    "cgroups": (sh("cat /proc/self/cgroup; ls /sys/fs/cgroup"), [], {}),
    "namespaces": (sh(NS_SCRIPT), [_host_ns_env], {}),
    "bind-data-options": (sh("test -d /data && echo dir; touch /data/x 2>/dev/null || echo ro; "
                             "grep ' /data ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1"),
                          [_bind_with_data], {}),
    "seccomp": (sh("mkdir /tmp/d; echo rc=$?; grep ^Seccomp: /proc/self/status"),
                [_deny_mkdir], {}),
    "sysctl": (sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced"), [],
               {"sysctl": {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}}),
    "stdio": (sh("echo to-out; echo to-err >&2; exit 3"), [], {}),
    "network": (sh("ip -o link | cut -d' ' -f2,3; ip -o addr | cut -d' ' -f2,3,4"), [], {}),
}


@pytest.fixture(params=OTHERS)
def other(request, runtime_by_name):
    return runtime_by_name(request.param)


@pytest.fixture
def reference(runtime_by_name):
    return runtime_by_name(REFERENCE)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_same_output_as_runc(probe, reference, other, bundle):
    args, edits, changes = PROBES[probe]
    b = bundle(args, *edits, **changes)
    want = reference.run(b)
    got = other.run(b)
    if (got.returncode, got.stdout, got.stderr) != (want.returncode, want.stdout, want.stderr):
        pytest.fail(f"{other.name} differs from {reference.name} on probe {probe!r}:\n"
                    + explain(reference.name, want, other.name, got), pytrace=False)


def explain(ref_name, want, name, got) -> str:
    parts = []
    if got.returncode != want.returncode:
        parts.append(f"exit code: {ref_name} {want.returncode}, {name} {got.returncode}")
    for stream in ("stdout", "stderr"):
        a, b = getattr(want, stream), getattr(got, stream)
        if a != b:
            parts.append(f"{stream}:")
            parts.extend(difflib.unified_diff(a.splitlines(), b.splitlines(),
                                              ref_name, name, lineterm="", n=1))
    return "\n".join(parts)
