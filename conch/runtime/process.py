"""Turning the init (or exec) process into the configured ``process``: rlimits, OOM score,
user and groups, capabilities, no_new_privs, seccomp, and finally execve.

The order matters and is runc's (standard_init_linux.go + finalizeNamespace):
rlimits/oom → [seccomp when no_new_privs is off: loading it needs CAP_SYS_ADMIN, which is
about to be dropped] → bounding set → keepcaps + setgroups/setgid/setuid → capset →
ambient → (wait for start) → [seccomp when no_new_privs is on: as late as possible, so
the filter never sees our own syscalls] → execve.
"""

import os

from conch.errors import InvalidArgument, NotFound, PermissionDenied, SystemCallError
from conch.kernel import capabilities as kcaps
from conch.kernel import prctl

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def env_dict(env_list) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env_list or ():
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"process.env entry {item!r} has no name")
        out[key] = value
    return out


def check_rlimits(rlimits) -> list[tuple[int, int, int]]:
    """Validate before any fork: a limit above our hard limit cannot be set without
    CAP_SYS_RESOURCE (absent in some sandboxes), and says so instead of failing later."""
    import resource

    out = []
    for rl in rlimits or ():
        name = rl.get("type", "")
        num = _RLIMITS.get(name)
        if num is None:
            raise InvalidArgument(f"process.rlimits: unknown type {name!r}")
        soft, hard = int(rl.get("soft", 0)), int(rl.get("hard", 0))
        if soft > hard:
            raise InvalidArgument(f"process.rlimits {name}: soft {soft} is above hard {hard}")
        cur_hard = resource.getrlimit(num)[1]
        if cur_hard != resource.RLIM_INFINITY and hard > cur_hard and not _has_cap("CAP_SYS_RESOURCE"):
            raise PermissionDenied(
                f"process.rlimits {name}: hard limit {hard} is above this process's hard limit "
                f"{cur_hard} and raising it needs CAP_SYS_RESOURCE, which this process lacks; "
                f"lower the limit to at most {cur_hard}")
        out.append((num, soft, hard))
    return out


def _has_cap(name: str) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << kcaps.NUMBERS[name]))
    return False


def set_rlimits(limits) -> None:
    import resource

    for num, soft, hard in limits:
        try:
            resource.setrlimit(num, (soft, hard))
        except (ValueError, OSError) as exc:
            raise SystemCallError("setrlimit", getattr(exc, "errno", 0) or 1, "",
                                  f"resource {num} soft={soft} hard={hard}") from exc


def set_oom_score_adj(value) -> None:
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(int(value)))
    except OSError as exc:
        raise SystemCallError("write", exc.errno or 0, "/proc/self/oom_score_adj",
                              f"oomScoreAdj={value}; lowering it needs CAP_SYS_RESOURCE") from exc


def resolve_executable(arg0: str, env: dict) -> str:
    """Find the program like execvp would, inside the (already pivoted) root, so a
    missing binary fails ``create`` with a clear message instead of the started process."""
    if "/" in arg0:
        candidates = [arg0]
    else:
        candidates = [os.path.join(d or ".", arg0) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    denied = None
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not (st.st_mode & 0o170000 == 0o100000):
            denied = denied or path
            continue
        if not os.access(path, os.X_OK) and not st.st_mode & 0o111:
            denied = denied or path
            continue
        return path
    if denied:
        raise PermissionDenied(f'exec: "{arg0}": permission denied')
    if "/" in arg0:
        raise NotFound(f'exec: "{arg0}": stat {arg0}: no such file or directory')
    raise NotFound(f'exec: "{arg0}": executable file not found in $PATH')


def cap_masks(caps: dict | None) -> dict[str, int]:
    """Capability sets as bit masks. A capability this process does not hold in its own
    bounding set cannot be granted (capset fails with EPERM): it is dropped with a
    warning on stderr — "all capabilities" (--privileged) means all we have, as with
    runc under a restricted parent (this sandbox has no CAP_SYS_RESOURCE)."""
    caps = caps or {}
    out = {}
    available = _own_bounding()
    dropped = 0
    for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        names = caps.get(key) or []
        unknown = [n for n in names if n not in kcaps.NUMBERS]
        if unknown:
            raise InvalidArgument(f"process.capabilities.{key}: unknown capability {unknown[0]!r}")
        mask = kcaps.mask(names)
        dropped |= mask & ~available
        out[key] = mask & available
    if dropped:
        import sys

        names = [n for n, i in kcaps.NUMBERS.items() if dropped & (1 << i)]
        sys.stderr.write("conch-runtime: warning: capabilities not in this process's bounding "
                         f"set are dropped: {', '.join(names)}\n")
    return out


def _own_bounding() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (kcaps.last_cap() + 1)) - 1


def home_of(uid: int) -> str:
    try:
        # the image's file: any bytes, kept as they are (the C front reads it so too)
        with open("/etc/passwd", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def switch_user(user: dict, masks: dict[str, int], setgroups_allowed: bool = True) -> None:
    """Bounding set, then uid/gid with keepcaps so the configured caps survive, then capset."""
    kcaps.bounding_drop_except(masks["bounding"])
    prctl.set_keepcaps(True)
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    groups = [int(g) for g in user.get("additionalGids") or ()]
    if setgroups_allowed:
        os.setgroups(groups)
    elif groups:
        raise InvalidArgument("additionalGids cannot be set: setgroups is denied in this user namespace")
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl.set_keepcaps(False)
    kcaps.capset(masks["effective"], masks["permitted"], masks["inheritable"])
    if masks["ambient"]:
        kcaps.ambient_raise(masks["ambient"])


def load_seccomp(program: bytes | None, flags: int) -> None:
    if program:
        from conch.kernel import seccomp as kseccomp

        kseccomp.load_filter(program, flags=flags)


def compile_seccomp(seccomp: dict | None):
    """(program, flags) or (None, 0); compiled in the parent, before any fork."""
    if not seccomp:
        return None, 0
    from conch.runtime import seccomp as rseccomp

    program = rseccomp.compile_filter(seccomp)
    flags = rseccomp.filter_flags(seccomp) if hasattr(rseccomp, "filter_flags") else 0
    return program, flags


def mark_fds_cloexec(first: int) -> None:
    """Every fd >= first gets FD_CLOEXEC so the container inherits only stdio (+preserved)."""
    import fcntl

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                flags = fcntl.fcntl(fd, fcntl.F_GETFD)
                fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
            except OSError:
                pass


def execute(path: str, args: list[str], env: dict) -> None:
    os.execve(path, args, env)
