"""Docker's default isolation, as OCI runtime-spec data: capabilities, masked paths, the
default seccomp profile, and the whole ``config.json`` dockerd hands its runtime.

Contract: pure functions returning fresh JSON-ready dicts/lists (no I/O, no host probing);
bad names raise ``conch.errors.InvalidArgument``.

- ``DEFAULT_CAPABILITIES``, ``ALL_CAPABILITIES``, ``MASKED_PATHS``, ``READONLY_PATHS``
- ``normalize_capability(name)``, ``effective_capabilities(cap_add, cap_drop, privileged)``
- ``default_seccomp(capabilities)``: Docker's default profile as a deny list (see below)
- ``docker_profile_seccomp(capabilities)``: the same policy in Docker's own allow-list form
- ``docker_spec(...)``: the config.json of a ``docker run`` with the given options
- ``runc_spec(terminal)``: what ``conch-runtime spec`` writes (like ``runc spec``)

Sources (moby/moby): ``oci/defaults.go`` (capabilities, mounts, masked/readonly paths),
``oci/caps/utils.go`` (cap-add/cap-drop rules), ``profiles/seccomp/default.json`` and
``profiles/seccomp/seccomp_linux.go`` (the profile and its cap/arch filtering),
``daemon/oci_linux.go`` (privileged, tmpfs, resources); runc ``libcontainer/specconv``
(``AllowedDevices``, ``Example``).
"""

from conch.errors import InvalidArgument

# moby oci/defaults.go DefaultCapabilities(), in Docker's order.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# <linux/capability.h>, index == capability number (0 .. CAP_LAST_CAP = 40 since 5.9).
ALL_CAPABILITIES = tuple("CAP_" + n for n in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE"
).split())

# moby oci/defaults.go (Docker 25+: /proc/interrupts and /sys/devices/virtual/powercap
# joined the list). Docker 28 also masks /sys/devices/system/cpu/cpu*/thermal_throttle,
# found by globbing the host; that host-dependent part is the engine's to add.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

DEFAULT_NAMESPACES = ("mount", "network", "uts", "pid", "ipc")  # oci/defaults.go order
_NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # daemon default --default-shm-size
EPERM, ENOSYS = 1, 38

# ---------------------------------------------------------------------------------------
# Seccomp: Docker's profile, profiles/seccomp/default.json.
#
# Unconditionally allowed names (the first rule of default.json), plus the arch-only
# groups that apply on amd64/arm64 (arch_prctl, modify_ldt; the arm ones), plus ptrace and
# process_vm_{readv,writev}, which default.json allows from kernel 4.8 on (the seccomp
# bypass through ptrace was fixed there; conch needs far newer kernels anyway).
_DOCKER_ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup
dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat
faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown
fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr
fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid
getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup
ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod
mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
process_vm_readv process_vm_writev ptrace
arch_prctl modify_ldt
arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls
"""
# Newer than the default.json revision above (Linux 6.5-6.13). They are unprivileged
# siblings of calls Docker allows (fchmodat, futex, getxattr, mprotect...), and libc only
# falls back to the older call on ENOSYS, so EPERM here would break glibc >= 2.39 (e.g.
# fchmodat2). Mount and LSM introspection stays with CAP_SYS_ADMIN below.
_NEWER_ALLOWED = """
cachestat fchmodat2 futex_wake futex_wait futex_requeue map_shadow_stack mseal
lsm_get_self_attr lsm_list_modules setxattrat getxattrat listxattrat removexattrat
"""
# default.json's "includes": {"caps": [...]} groups. clone/clone3 are special (below).
_CAP_ALLOWED = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick "
    "lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open quotactl "
    "quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare "
    "statmount listmount lsm_set_self_attr",  # the last three: newer, see _NEWER_ALLOWED
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}
# Syscalls the profile treats with argument conditions; handled by _conditional_rules.
_CONDITIONAL = ("personality", "socket", "clone", "clone3")
# personality(2) personas default.json allows: PER_LINUX, PER_LINUX32, UNAME26,
# UNAME26|PER_LINUX32, and 0xffffffff (query the current persona).
_PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_AF_VSOCK = 40  # socket(AF_VSOCK, ...) is refused: it reaches the host
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET = 2114060288 in default.json
CLONE_NAMESPACE_FLAGS = 0x7E020000

_ARCHITECTURES = {  # default.json archMap, for the hosts we compile for
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def _allowed_names(caps: set[str]) -> set[str]:
    names = set(_DOCKER_ALLOWED.split()) | set(_NEWER_ALLOWED.split())
    for cap, group in _CAP_ALLOWED.items():
        if cap in caps:
            names.update(group.split())
    return names


def _conditional_rules(caps: set[str], *, deny_fallthrough: bool) -> list[dict]:
    """The argument-conditioned part of default.json.

    ``deny_fallthrough`` adds the unconditional EPERM rule that an ALLOW-by-default
    profile needs after the conditional ALLOW rules (the compiler tries conditional rules
    of a syscall first, then its unconditional rule).
    """
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}
    rules = [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": p, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}
        for p in _PERSONAS
    ]
    rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _AF_VSOCK, "valueTwo": 0, "op": "SCMP_CMP_NE"}]})
    if deny_fallthrough:
        rules.append({"names": ["personality", "socket"], **eperm})
    if "CAP_SYS_ADMIN" not in caps:
        # clone without any CLONE_NEW* flag; arg 0 is the flags word on x86 and arm
        # (only s390 swaps it, which we do not compile for).
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
        if deny_fallthrough:
            rules.append({"names": ["clone"], **eperm})
        # clone3 passes its flags in memory, out of seccomp's reach: ENOSYS makes glibc
        # fall back to clone(2), whose flags the rule above can see (default.json).
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return rules


def default_seccomp(capabilities, *, arch: str | None = None) -> dict:
    """Docker's default seccomp policy for a container holding ``capabilities``.

    Written as a deny list (defaultAction ALLOW): every syscall our tables know that
    Docker's allow list (default.json, filtered by these capabilities) does not allow is
    denied with EPERM, which is what Docker's ``defaultErrnoRet: 1`` gives it. So for
    all known syscalls the answer equals Docker's; syscalls newer than our tables are
    allowed. ``docker_profile_seccomp`` gives the allow-list form.
    """
    from conch.runtime.syscall_table import BY_ARCH
    from conch.runtime.seccomp import host_arch

    caps = {normalize_capability(c) for c in capabilities}
    arch = arch or host_arch()
    known: set[str] = set()
    for table in BY_ARCH.values():
        known.update(table)
    denied = known - _allowed_names(caps) - set(_CONDITIONAL)
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(_ARCHITECTURES.get(arch, ())),
        "syscalls": [
            {"names": sorted(denied), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            *_conditional_rules(caps, deny_fallthrough=True),
        ],
    }


def docker_profile_seccomp(capabilities, *, arch: str | None = None) -> dict:
    """The same policy as Docker ships it: allow list, defaultAction ERRNO(EPERM)."""
    from conch.runtime.seccomp import host_arch

    caps = {normalize_capability(c) for c in capabilities}
    allowed = _allowed_names(caps) - set(_CONDITIONAL)
    if "CAP_SYS_ADMIN" in caps:
        allowed |= {"clone", "clone3"}
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": list(_ARCHITECTURES.get(arch or host_arch(), ())),
        "syscalls": [
            {"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"},
            *_conditional_rules(caps, deny_fallthrough=False),
        ],
    }


# ---------------------------------------------------------------------------------------
# Capabilities: moby oci/caps/utils.go.


def normalize_capability(name: str) -> str:
    """``"net_admin"``, ``"CAP_NET_ADMIN"`` -> ``"CAP_NET_ADMIN"``; unknown -> InvalidArgument."""
    if not isinstance(name, str):
        raise InvalidArgument(f"capability {name!r} is not a string")
    cap = name.strip().upper()
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability {name!r}")
    return cap


def _cap_list(names) -> tuple[list[str], bool]:
    """Normalised names and whether "ALL" was among them."""
    out, has_all = [], False
    for name in names:
        if isinstance(name, str) and name.strip().upper() in ("ALL", "CAP_ALL"):
            has_all = True
        else:
            out.append(normalize_capability(name))
    return out, has_all


def effective_capabilities(cap_add=(), cap_drop=(), *, privileged: bool = False) -> list[str]:
    """Docker's TweakCapabilities: ALL in cap_add wins, then ALL in cap_drop, else
    the defaults minus cap_drop plus cap_add. Privileged means every capability."""
    add, add_all = _cap_list(cap_add)
    drop, drop_all = _cap_list(cap_drop)
    if privileged or add_all:
        caps = [c for c in ALL_CAPABILITIES if privileged or c not in drop]
    elif drop_all:
        caps = add
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drop] + add
    return list(dict.fromkeys(caps))  # de-duplicate, keep order


# ---------------------------------------------------------------------------------------
# The config.json.


def _default_mounts(shm_size: int, privileged: bool) -> list[dict]:
    sys_mode = "rw" if privileged else "ro"  # daemon/oci_linux.go clears ro on /sys if privileged

    def mount(dest, typ, source, *options):
        return {"destination": dest, "type": typ, "source": source, "options": list(options)}

    return [  # oci/defaults.go order
        mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance",
              "ptmxmode=0666", "mode=0620", "gid=5"),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", sys_mode),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime",
              sys_mode),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777",
              f"size={int(shm_size)}"),
    ]


_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")  # daemon: --tmpfs defaults
_OPPOSITES = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro"}
_OPPOSITES.update({v: k for k, v in _OPPOSITES.items()})


def _tmpfs_mounts(tmpfs) -> list[dict]:
    """--tmpfs: {dest: "opt,opt"} or [(dest, "opt,opt")]; user options override defaults."""
    items = tmpfs.items() if isinstance(tmpfs, dict) else tmpfs
    mounts = []
    for dest, opts in items:
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise InvalidArgument(f"tmpfs destination {dest!r} is not an absolute path")
        user = [o for o in (opts or "").split(",") if o]
        options = [o for o in _TMPFS_DEFAULTS if o not in user and _OPPOSITES.get(o) not in user]
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                       "options": options + user})
    return mounts


def _device_rules(privileged: bool) -> list[dict]:
    if privileged:
        return [{"allow": True, "access": "rwm"}]

    def rule(typ, major, minor, access):
        r = {"allow": True, "type": typ}
        if major is not None:
            r["major"] = major
        if minor is not None:
            r["minor"] = minor
        r["access"] = access
        return r

    # Deny all (oci/defaults.go), then runc's specconv.AllowedDevices, which runc appends
    # by itself; spelling them out keeps the spec complete for any runtime.
    return [
        {"allow": False, "access": "rwm"},
        rule("c", None, None, "m"), rule("b", None, None, "m"),  # mknod of anything
        rule("c", 1, 3, "rwm"), rule("c", 1, 5, "rwm"), rule("c", 1, 7, "rwm"),  # null zero full
        rule("c", 1, 8, "rwm"), rule("c", 1, 9, "rwm"),  # random urandom
        rule("c", 5, 0, "rwm"), rule("c", 5, 1, "rwm"), rule("c", 5, 2, "rwm"),  # tty console ptmx
        rule("c", 136, None, "rwm"),  # /dev/pts/*
        rule("c", 10, 200, "rwm"),  # /dev/net/tun
    ]


_RLIMITS = ("AS CORE CPU DATA FSIZE LOCKS MEMLOCK MSGQUEUE NICE NOFILE NPROC RSS RTPRIO "
            "RTTIME SIGPENDING STACK").split()
_RLIM_INFINITY = (1 << 64) - 1


def _rlimits(ulimits) -> list[dict]:
    """[(name, soft, hard)] or [{"name", "soft", "hard"}]; name as "nofile" or "RLIMIT_NOFILE"."""
    out = []
    for u in ulimits:
        name, soft, hard = (u["name"], u["soft"], u["hard"]) if isinstance(u, dict) else u
        key = str(name).upper().removeprefix("RLIMIT_")
        if key not in _RLIMITS:
            raise InvalidArgument(f"unknown ulimit {name!r}")
        # -1 is "unlimited" (RLIM_INFINITY), as the docker CLI accepts it.
        soft, hard = (_RLIM_INFINITY if int(v) == -1 else int(v) for v in (soft, hard))
        if not 0 <= soft <= hard <= _RLIM_INFINITY:
            raise InvalidArgument(f"ulimit {name}: need 0 <= soft ({soft}) <= hard ({hard})")
        out.append({"type": "RLIMIT_" + key, "hard": hard, "soft": soft})
    return out


def _namespaces(namespaces, netns_path) -> list[dict]:
    out = []
    for ns in namespaces:
        entry = dict(ns) if isinstance(ns, dict) else {"type": ns}
        if entry.get("type") not in _NAMESPACE_TYPES:
            raise InvalidArgument(f"unknown namespace type {entry.get('type')!r}")
        if entry["type"] == "network" and netns_path:
            entry["path"] = netns_path
        out.append(entry)
    if netns_path and not any(e["type"] == "network" for e in out):
        raise InvalidArgument("netns_path given but the network namespace is not unshared")
    return out


def _resources(*, privileged, memory, memory_swap, cpu_quota, cpu_period, cpu_shares,
               cpuset, pids_limit) -> dict:
    res: dict = {"devices": _device_rules(privileged)}
    if memory is not None:
        mem = {"limit": int(memory)}
        if memory_swap is None and memory > 0:
            mem["swap"] = 2 * int(memory)  # daemon: unset swap means twice the memory
        elif memory_swap is not None:
            mem["swap"] = int(memory_swap)
        res["memory"] = mem
    elif memory_swap is not None:
        raise InvalidArgument("memory_swap needs memory to be set too")
    cpu = {k: v for k, v in (("shares", cpu_shares), ("quota", cpu_quota),
                             ("period", cpu_period), ("cpus", cpuset)) if v is not None}
    if cpu:
        res["cpu"] = cpu
    if pids_limit is not None:
        res["pids"] = {"limit": int(pids_limit)}
    return res


def _depth(mount: dict) -> int:
    return mount["destination"].rstrip("/").count("/")


def docker_spec(
    *, args, rootfs, env=(), cwd="/", user=(0, 0, ()), hostname="", terminal=False,
    readonly_rootfs=False, cap_add=(), cap_drop=(), privileged=False, seccomp="default",
    no_new_privileges=False, mounts=(), tmpfs=(), shm_size=DEFAULT_SHM_SIZE, memory=None,
    memory_swap=None, cpu_quota=None, cpu_period=None, cpu_shares=None, cpuset=None,
    pids_limit=None, ulimits=(), namespaces=DEFAULT_NAMESPACES, netns_path=None,
    annotations=None, sysctls=None, oom_score_adj=0, cgroups_path=None, arch=None,
) -> dict:
    """The OCI runtime-spec 1.2 config.json dockerd would give runc for ``docker run``."""
    if not args:
        raise InvalidArgument("a container needs a command (args is empty)")
    caps = effective_capabilities(cap_add, cap_drop, privileged=privileged)
    uid, gid, *rest = user
    extra_gids = [int(g) for g in (rest[0] if rest else ())]
    process: dict = {
        "terminal": bool(terminal),
        "user": {"uid": int(uid), "gid": int(gid)},
        "args": list(args),
        "env": list(env),
        "cwd": cwd,
        # Docker >= 20.10.14 leaves inheritable (and ambient) empty: CVE-2022-24769.
        "capabilities": {"bounding": list(caps), "effective": list(caps),
                         "permitted": list(caps)},
        "noNewPrivileges": bool(no_new_privileges),
        "oomScoreAdj": int(oom_score_adj),
    }
    if extra_gids:
        process["user"]["additionalGids"] = extra_gids
    if ulimits:
        process["rlimits"] = _rlimits(ulimits)

    # User mounts replace a default mount at the same destination, and go after the
    # defaults, parents before children (daemon/oci_linux.go WithMounts, sortMounts).
    user_mounts = [dict(m) for m in mounts] + _tmpfs_mounts(tmpfs)
    taken = {m["destination"] for m in user_mounts}
    all_mounts = [m for m in _default_mounts(shm_size, privileged) if m["destination"] not in taken]
    all_mounts += sorted(user_mounts, key=_depth)

    linux: dict = {
        "resources": _resources(privileged=privileged, memory=memory, memory_swap=memory_swap,
                                cpu_quota=cpu_quota, cpu_period=cpu_period,
                                cpu_shares=cpu_shares, cpuset=cpuset, pids_limit=pids_limit),
        "namespaces": _namespaces(namespaces, netns_path),
        "maskedPaths": [] if privileged else list(MASKED_PATHS),
        "readonlyPaths": [] if privileged else list(READONLY_PATHS),
    }
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if sysctls:
        linux["sysctl"] = dict(sysctls)
    profile = _seccomp_for(seccomp, caps, privileged, arch)
    if profile is not None:
        linux["seccomp"] = profile

    spec = {
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(readonly_rootfs)},
        "hostname": hostname,
        "mounts": all_mounts,
        "linux": linux,
    }
    if annotations:
        spec["annotations"] = dict(annotations)
    return spec


def _seccomp_for(seccomp, caps, privileged, arch):
    if isinstance(seccomp, dict):
        return seccomp  # an explicit profile applies even to --privileged
    if seccomp == "unconfined" or privileged:
        return None  # daemon/seccomp_linux.go: privileged gets no default profile
    if seccomp == "default":
        return default_seccomp(caps, arch=arch)
    raise InvalidArgument(f"seccomp must be 'default', 'unconfined' or a profile, not {seccomp!r}")


def runc_spec(terminal: bool = True) -> dict:
    """What ``conch-runtime spec`` writes: runc's specconv.Example, minimal and rootful."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    mounts = _default_mounts(65536 * 1024, False)
    for m in mounts:
        if m["destination"] == "/dev/shm":
            m["options"][-1] = "size=65536k"
    return {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": bool(terminal),
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps),
                             "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "conch",
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
