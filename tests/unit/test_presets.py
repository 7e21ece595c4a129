"""Docker's isolation presets: capabilities, masks, the default seccomp profile (run
through the compiler and the BPF interpreter), and the generated config.json."""

import json

import pytest

from conch.errors import InvalidArgument
from conch.runtime import presets
from conch.runtime.presets import (
    ALL_CAPABILITIES, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, default_seccomp,
    docker_profile_seccomp, docker_spec, effective_capabilities, runc_spec,
)
from conch.runtime.seccomp import compile_filter
from conch.runtime.syscall_table import X86, X86_64
from conch.testing import bpf

AUDIT_X86_64, AUDIT_I386 = 0xC000003E, 0x40000003
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x10000000, 0x40000000
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD, as glibc fork()
THREAD_FLAGS = 0x003D0F00  # glibc pthread_create


def decide(profile, name, args=(), *, audit=AUDIT_X86_64, table=X86_64):
    program = compile_filter(profile, arch="x86_64")
    return bpf.describe(bpf.run(program, table[name], audit, args))


def test_default_capabilities_are_dockers_14():
    assert len(DEFAULT_CAPABILITIES) == 14
    assert set(DEFAULT_CAPABILITIES) == {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
    assert len(ALL_CAPABILITIES) == 41
    assert ALL_CAPABILITIES[21] == "CAP_SYS_ADMIN" and ALL_CAPABILITIES[40] == "CAP_CHECKPOINT_RESTORE"


def test_cap_add_drop_and_all():
    assert effective_capabilities() == list(DEFAULT_CAPABILITIES)
    caps = effective_capabilities(cap_add=["net_admin", "CAP_SYS_PTRACE"], cap_drop=["chown", "Cap_Kill"])
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_PTRACE" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert effective_capabilities(cap_drop=["ALL"]) == []
    assert effective_capabilities(cap_add=["sys_admin"], cap_drop=["all"]) == ["CAP_SYS_ADMIN"]
    everything_but = effective_capabilities(cap_add=["ALL"], cap_drop=["mknod"])
    assert len(everything_but) == 40 and "CAP_MKNOD" not in everything_but
    assert effective_capabilities(cap_add=["chown"]) == list(DEFAULT_CAPABILITIES)  # no dupes
    assert effective_capabilities(cap_drop=["ALL"], privileged=True) == list(ALL_CAPABILITIES)
    with pytest.raises(InvalidArgument, match="CAP_FLY"):
        effective_capabilities(cap_add=["CAP_FLY"])


def test_masked_and_readonly_paths():
    for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
              "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/acpi", "/proc/scsi"):
        assert p in MASKED_PATHS
    assert set(READONLY_PATHS) == {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                   "/proc/sysrq-trigger"}


DOCKER_BLOCKED = [  # "Significant syscalls blocked by the default profile" (Docker docs)
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "move_pages", "nfsservctl", "open_by_handle_at", "perf_event_open",
    "pivot_root", "query_module", "quotactl", "reboot", "request_key", "set_mempolicy",
    "setns", "settimeofday", "swapon", "swapoff", "sysfs", "_sysctl", "umount2", "unshare",
    "uselib", "userfaultfd", "ustat", "fsopen", "fsmount", "open_tree", "move_mount",
    "fsconfig", "fspick", "mount_setattr", "chroot", "syslog", "vhangup", "pidfd_getfd",
]
# clock_adjtime is in default.json's plain allow list (read-only use is common), so the
# docs table is out of date for it; same for name_to_handle_at (allowed since 2019).
ALLOWED_BY_DEFAULT_JSON = {"clock_adjtime", "name_to_handle_at"}


@pytest.mark.parametrize("name", DOCKER_BLOCKED)
def test_default_profile_blocks_dockers_list(name):
    caps = [c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"]  # chroot: see below
    profile = default_seccomp(caps, arch="x86_64")
    if name in ALLOWED_BY_DEFAULT_JSON:
        assert decide(profile, name) == "ALLOW"
    elif name in X86_64:
        assert decide(profile, name) == "ERRNO(1)", name
    else:
        assert name in X86, f"{name} should be in some table"
        assert decide(profile, name, audit=AUDIT_I386, table=X86) == "ERRNO(1)"


@pytest.mark.parametrize("cap, names", [
    ("CAP_SYS_ADMIN", ["mount", "umount2", "unshare", "setns", "fsopen", "sethostname", "bpf"]),
    ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise"]),
    ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]),
    ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
    ("CAP_SYS_PACCT", ["acct"]),
    ("CAP_SYS_NICE", ["mbind", "set_mempolicy", "get_mempolicy"]),
    ("CAP_SYS_CHROOT", ["chroot"]),
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_BPF", ["bpf"]),
    ("CAP_PERFMON", ["perf_event_open"]),
    ("CAP_SYSLOG", ["syslog"]),
])
def test_capabilities_unlock_their_syscalls(cap, names):
    base = [c for c in DEFAULT_CAPABILITIES if c != cap]
    without = default_seccomp(base, arch="x86_64")
    with_cap = default_seccomp(base + [cap], arch="x86_64")
    for name in names:
        assert decide(without, name) == "ERRNO(1)", name
        assert decide(with_cap, name) == "ALLOW", name


def test_always_blocked_even_with_all_caps():
    profile = default_seccomp(ALL_CAPABILITIES, arch="x86_64")
    for name in ("keyctl", "add_key", "request_key", "kexec_load", "swapon", "userfaultfd",
                 "pivot_root", "move_pages", "_sysctl", "uselib"):
        assert decide(profile, name) == "ERRNO(1)", name


def test_ptrace_is_allowed_as_on_kernels_from_4_8():
    profile = default_seccomp(DEFAULT_CAPABILITIES, arch="x86_64")
    for name in ("ptrace", "process_vm_readv", "process_vm_writev"):
        assert decide(profile, name) == "ALLOW"


def test_clone_with_namespace_flags_denied_plain_clone_allowed():
    profile = default_seccomp(DEFAULT_CAPABILITIES, arch="x86_64")
    assert decide(profile, "clone", [FORK_FLAGS]) == "ALLOW"
    assert decide(profile, "clone", [THREAD_FLAGS]) == "ALLOW"
    for flag in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET):
        assert decide(profile, "clone", [FORK_FLAGS | flag]) == "ERRNO(1)"
    assert decide(profile, "clone3") == "ERRNO(38)"
    rule = next(r for r in profile["syscalls"] if r["names"] == ["clone"] and r.get("args"))
    assert rule["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                             "op": "SCMP_CMP_MASKED_EQ"}]
    admin = default_seccomp([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], arch="x86_64")
    assert decide(admin, "clone", [FORK_FLAGS | CLONE_NEWUSER]) == "ALLOW"
    assert decide(admin, "clone3") == "ALLOW"


def test_personality_and_vsock():
    profile = default_seccomp(DEFAULT_CAPABILITIES, arch="x86_64")
    for persona in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert decide(profile, "personality", [persona]) == "ALLOW"
    assert decide(profile, "personality", [0x0040000]) == "ERRNO(1)"  # ADDR_NO_RANDOMIZE
    assert decide(profile, "socket", [2]) == "ALLOW"
    assert decide(profile, "socket", [40]) == "ERRNO(1)"


@pytest.mark.parametrize("caps", [
    DEFAULT_CAPABILITIES, (), ALL_CAPABILITIES,
    [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], [*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"],
])
def test_deny_list_equals_dockers_allow_list_form(caps):
    """For every syscall we know (both x86 ABIs), the two forms decide the same."""
    deny = compile_filter(default_seccomp(caps, arch="x86_64"), arch="x86_64")
    allow = compile_filter(docker_profile_seccomp(caps, arch="x86_64"), arch="x86_64")
    arg_sets = [(), (FORK_FLAGS,), (FORK_FLAGS | CLONE_NEWUSER,), (40,), (8,), (0x40000,)]
    for audit, table in ((AUDIT_X86_64, X86_64), (AUDIT_I386, X86)):
        for name, nr in table.items():
            for args in arg_sets:
                a = bpf.run(deny, nr, audit, args)
                b = bpf.run(allow, nr, audit, args)
                assert a == b, (name, args, bpf.describe(a), bpf.describe(b))


def test_default_docker_spec():
    spec = docker_spec(args=["sh"], rootfs="/r", env=["PATH=/bin"], hostname="c1")
    json.dumps(spec)  # JSON-ready
    assert spec["ociVersion"] == "1.2.0"
    proc = spec["process"]
    assert proc["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)
    assert set(proc["capabilities"]) == {"bounding", "effective", "permitted"}
    assert proc["user"] == {"uid": 0, "gid": 0} and proc["cwd"] == "/"
    assert "rlimits" not in proc
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert mounts["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert {"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"} <= set(mounts["/dev/pts"]["options"])
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert "size=67108864" in mounts["/dev/shm"]["options"]
    linux = spec["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["mount", "network", "uts", "pid", "ipc"]
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    devices = linux["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"} in devices
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in devices
    assert {"allow": True, "type": "b", "access": "m"} in devices
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    compile_filter(linux["seccomp"])


def test_privileged_spec():
    spec = docker_spec(args=["sh"], rootfs="/r", privileged=True)
    assert spec["process"]["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
    assert "seccomp" not in spec["linux"]
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert "rw" in sys_mount["options"]


def test_seccomp_follows_final_caps_and_options():
    spec = docker_spec(args=["sh"], rootfs="/r", cap_add=["SYS_ADMIN"])
    assert decide(spec["linux"]["seccomp"], "mount") == "ALLOW"
    assert "seccomp" not in docker_spec(args=["sh"], rootfs="/r", seccomp="unconfined")["linux"]
    custom = {"defaultAction": "SCMP_ACT_ALLOW"}
    assert docker_spec(args=["sh"], rootfs="/r", seccomp=custom)["linux"]["seccomp"] is custom
    with pytest.raises(InvalidArgument):
        docker_spec(args=["sh"], rootfs="/r", seccomp="strict")


def test_spec_options():
    spec = docker_spec(
        args=["app"], rootfs="/r", user=(1000, 1000, [10, 20]), terminal=True,
        readonly_rootfs=True, no_new_privileges=True, memory=256 << 20, cpu_quota=50000,
        cpu_period=100000, cpu_shares=512, cpuset="0", pids_limit=100,
        ulimits=[("nofile", 1024, 2048), {"name": "RLIMIT_NPROC", "soft": -1, "hard": -1}],
        tmpfs={"/run": "size=1m,exec"},
        mounts=[{"destination": "/dev/shm", "type": "bind", "source": "/host/shm", "options": ["rbind"]},
                {"destination": "/data/sub", "type": "bind", "source": "/a", "options": ["rbind"]},
                {"destination": "/data", "type": "bind", "source": "/b", "options": ["rbind"]}],
        netns_path="/run/netns/x", annotations={"k": "v"}, sysctls={"net.ipv4.ip_forward": "1"},
        oom_score_adj=100, cgroups_path="/conch/abc", shm_size=1 << 20,
    )
    proc = spec["process"]
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}
    assert proc["terminal"] and proc["noNewPrivileges"] and proc["oomScoreAdj"] == 100
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
                               {"type": "RLIMIT_NPROC", "hard": 2**64 - 1, "soft": 2**64 - 1}]
    assert spec["root"] == {"path": "/r", "readonly": True}
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 256 << 20, "swap": 512 << 20}
    assert res["cpu"] == {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}
    assert res["pids"] == {"limit": 100}
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/dev/shm") == 1 and dests.index("/data") < dests.index("/data/sub")
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind"
    run = next(m for m in spec["mounts"] if m["destination"] == "/run")
    assert run["options"] == ["nosuid", "nodev", "size=1m", "exec"]
    net = next(n for n in spec["linux"]["namespaces"] if n["type"] == "network")
    assert net["path"] == "/run/netns/x"
    assert spec["annotations"] == {"k": "v"}
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert spec["linux"]["cgroupsPath"] == "/conch/abc"


def test_spec_rejects_bad_input():
    with pytest.raises(InvalidArgument):
        docker_spec(args=[], rootfs="/r")
    with pytest.raises(InvalidArgument, match="ulimit"):
        docker_spec(args=["sh"], rootfs="/r", ulimits=[("nofiles", 1, 1)])
    with pytest.raises(InvalidArgument, match="soft"):
        docker_spec(args=["sh"], rootfs="/r", ulimits=[("nofile", 10, 1)])
    with pytest.raises(InvalidArgument, match="namespace"):
        docker_spec(args=["sh"], rootfs="/r", namespaces=["pid", "galaxy"])
    with pytest.raises(InvalidArgument, match="netns"):
        docker_spec(args=["sh"], rootfs="/r", namespaces=["pid"], netns_path="/x")


def test_runc_spec():
    spec = runc_spec()
    assert spec["process"]["args"] == ["sh"] and spec["process"]["terminal"] is True
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert runc_spec(terminal=False)["process"]["terminal"] is False
    json.dumps(spec)


def test_fresh_objects_each_call():
    a, b = docker_spec(args=["sh"], rootfs="/r"), docker_spec(args=["sh"], rootfs="/r")
    a["mounts"][0]["options"].append("x")
    a["linux"]["maskedPaths"].append("/x")
    assert "x" not in b["mounts"][0]["options"] and "/x" not in b["linux"]["maskedPaths"]
    assert presets.MASKED_PATHS[-1] != "/x"
