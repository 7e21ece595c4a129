"""The child side of ``create``: the intermediate process (C) and the container init (G).

Both run in freshly forked copies of the single-threaded runtime process, so unshare,
setns and pivot_root are safe here. Neither ever returns into the caller's code: every
path ends in ``os._exit`` or ``execve``. Each step runs under a name; a failure is sent
back to the parent as an error message naming the step, and the process exits before it
could exec half-configured.
"""

import os
import sys
import _signal as signal  # the C module: "signal" imports enum (~3 ms)

from conch.kernel import namespaces as kns
from conch.kernel import prctl
from conch.runtime import config as rconfig
from conch.runtime import process as rproc
from conch.runtime import rootfs as rrootfs

# setns order: the user namespace first (it owns the others), the mount namespace last
# (once we are in it, /proc paths of the host may no longer resolve).
_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")


class Plan:
    """Everything the children need, computed by the parent before forking."""

    __slots__ = ("spec", "rootfs", "namespaces", "channel", "fifo", "console_fd",
                 "cgroup_mounts", "rlimits", "caps", "seccomp", "seccomp_flags",
                 "preserve_fds", "has_runtime_hooks", "no_pivot", "state_json", "direct")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


def fork_init(plan: Plan, parent_end) -> int:
    """P forks G itself, without the intermediate, when the container has no user
    namespace (a process may not change user namespace while it has threads, and the
    parent runs the prearm thread): a pid namespace, the one namespace that must exist
    before G does, affects only the children of whoever unshares or joins it, so P does
    that around the fork and then puts its own children back in its own pid namespace;
    G enters every other namespace itself (``_enter_namespaces``). One fork and one
    process exit fewer than C's way on every container start. ``parent_end`` is P's
    end of the channel, closed in G. Returns G's pid."""
    plan.direct = True
    pidns = plan.namespaces.get("pid")
    own = None
    if pidns is not None:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if pidns:
                join_namespaces({"pid": pidns})
            else:
                kns.unshare(kns.CLONE_NEWPID)
        except BaseException:
            os.close(own)
            raise
    try:
        pid = os.fork()
        if pid == 0:
            parent_end.close()  # else P's death would never reach G as an EOF
            run_init(plan)  # never returns
            os._exit(1)
    finally:
        if own is not None:
            try:
                kns.setns(own, kns.CLONE_NEWPID, "/proc/self/ns/pid")
            finally:
                os.close(own)
    return pid


def _enter_namespaces(namespaces: dict) -> None:
    """G, forked straight from P (see ``fork_init``): join and make every namespace but
    the pid one (already ours) and the cgroup one (made once in the cgroup)."""
    join_namespaces({k: v for k, v in namespaces.items() if k != "pid"})
    flags = 0
    for kind, path in namespaces.items():
        if path == "" and kind not in ("user", "cgroup", "pid"):
            flags |= kns.NAMESPACES[kind][0]
    if flags:
        kns.unshare(flags)


def run_intermediate(plan: Plan) -> None:
    """C: enter the namespaces, fork the init, report its pid, exit.

    C does not wait for the cgroup: the parent moves G (not C) into it while G builds
    its rootfs. On cgroup v1 the first migration waits for an RCU grace period (10-20 ms
    on this kind of VM), so overlapping it with G's work is most of a container's start.
    """
    ch = plan.channel
    step = "start"
    try:
        prctl.set_dumpable(False)  # see run_init
        prctl.set_pdeathsig(signal.SIGKILL)
        step = "join namespaces"
        join_namespaces(plan.namespaces)
        if plan.namespaces.get("user") == "":
            step = "unshare user namespace"
            kns.unshare(kns.CLONE_NEWUSER)
            ch.send(type="userns")
            ch.expect("mapped")
        if "user" in plan.namespaces:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        step = "unshare namespaces"
        flags = 0
        for kind, path in plan.namespaces.items():
            # the cgroup namespace is made by G once it is inside the container's cgroup
            if path == "" and kind not in ("user", "cgroup"):
                flags |= kns.NAMESPACES[kind][0]
        if flags:
            kns.unshare(flags)
        step = "fork init"
        pid = os.fork()
        if pid == 0:
            run_init(plan)  # never returns
        ch.send(type="pid", pid=pid)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        ch.send_error(step, exc)
        os._exit(1)


class _CgroupProgress:
    """G's view of the parent's cgroup work, which runs alongside G's own steps: first
    the directories exist ("cgroup-dirs"), then the limits are on and G is inside
    ("cgroup", which also tells G its pid as the host sees it, for the state given to
    hooks). Each wait happens only where a step needs it: bind mounts of the container's
    cgroup directories need them made; a cgroup namespace (whose root is the cgroup G is
    in when it unshares or mounts), hooks and the user process need G inside. So G
    builds most of its rootfs while the parent still writes limits and moves it."""

    __slots__ = ("ch", "ns", "state_json", "made", "joined")

    def __init__(self, ch, ns: dict, state_json: dict):
        self.ch, self.ns, self.state_json = ch, ns, state_json
        self.made = self.joined = False

    def wait_made(self) -> None:
        if not self.made:
            self.ch.expect("cgroup-dirs")
            self.made = True

    def wait_joined(self) -> None:
        if self.joined:
            return
        self.wait_made()
        self.state_json["pid"] = self.ch.expect("cgroup")["pid"]
        if self.ns.get("cgroup") == "":
            kns.unshare(kns.CLONE_NEWCGROUP)
        self.joined = True


def join_namespaces(namespaces: dict) -> None:
    fds = []
    for kind in _JOIN_ORDER:
        path = namespaces.get(kind)
        if path:
            try:
                fds.append((kind, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as exc:
                from conch.errors import SystemCallError

                raise SystemCallError("open", exc.errno or 0, path, f"{kind} namespace") from exc
    for kind, path, fd in fds:
        try:
            kns.setns(fd, kns.NAMESPACES[kind][0], path)
        finally:
            os.close(fd)


def run_init(plan: Plan) -> None:
    """G: pid 1 of the container. Builds the rootfs and process, waits for start, execs."""
    ch = plan.channel
    spec = plan.spec
    proc = spec.get("process") or {}
    linux = spec.get("linux") or {}
    ns = plan.namespaces
    in_userns = "user" in ns
    step = "init"
    try:
        # Not dumpable until the execve (which makes the user's process dumpable again):
        # a process of the container joining later must not ptrace us or open our fds
        # through /proc while we still hold the host's (runc's CVE-2016-9962 fix).
        prctl.set_dumpable(False)
        if plan.direct:
            step = "enter namespaces"
            _enter_namespaces(ns)
        step = "setsid"
        os.setsid()
        fifo_fd = plan.fifo  # an O_PATH fd opened by the parent: see create.create
        cgroup = _CgroupProgress(ch, ns, plan.state_json)
        if "mount" in ns:
            step = "prepare rootfs"
            rrootfs.prepare_root(plan.rootfs, linux.get("rootfsPropagation", ""))
        # Without a mount namespace of its own the container shares the runtime's, and
        # its mounts are made there, under the rootfs, as runc does (the spec allows a
        # container without one; its /proc is what the steps after chroot read). Only
        # the propagation of "/" is left alone then: it is the caller's, not ours.
        for m in spec.get("mounts") or ():
            step = f"mount {m.get('destination')}"
            if m.get("type") == "cgroup":
                # a cgroupfs of a cgroup namespace, else binds of the host's directories
                # (create._cgroup_mounts)
                cgroup.wait_joined() if "cgroup" in ns else cgroup.wait_made()
            rrootfs.mount_one(m, plan.rootfs, plan.cgroup_mounts, in_userns)
        if rrootfs.dev_is_mounted(spec):
            step = "create devices"
            rrootfs.create_devices(spec, plan.rootfs, in_userns)
        if ns.get("cgroup") == "":
            step = "join cgroup"  # the unshare needs CAP_SYS_ADMIN, which finalize drops
            cgroup.wait_joined()
        step = "hostname"
        _set_names(spec, ns)
        if plan.has_runtime_hooks:
            step = "prestart/createRuntime hooks"
            cgroup.wait_joined()  # the hooks see the container in its cgroup, with its pid
            ch.send(type="hooks")
            ch.expect("hooks-done")
        hooks = (spec.get("hooks") or {}).get("createContainer")
        if hooks:
            step = "createContainer hooks"
            cgroup.wait_joined()
            from conch.runtime import hooks as rhooks

            rhooks.run("createContainer", hooks, plan.state_json)
        step = "pivot_root"
        if "mount" in ns and not plan.no_pivot:
            rrootfs.pivot_root(plan.rootfs)
        else:
            rrootfs.chroot(plan.rootfs)
        step = "sysctl"
        rrootfs.apply_sysctls(linux.get("sysctl"))
        if ns.get("network") == "":
            step = "loopback"
            _loopback_up()
        if "mount" in ns:
            # read-only first, masks after: runc's order, so the mount table matches
            step = "readonlyPaths"
            rrootfs.readonly_paths(linux.get("readonlyPaths"))
            step = "maskedPaths"
            rrootfs.mask_paths(linux.get("maskedPaths"))
            if (spec.get("root") or {}).get("readonly"):
                step = "readonly rootfs"
                rrootfs.readonly_root()
            rrootfs.set_root_propagation(linux.get("rootfsPropagation", ""))
        persona = rconfig.personality(spec)
        if persona is not None:
            step = "personality"
            from conch.kernel.libc import check, libc

            check(libc().personality(persona), "personality", detail=hex(persona))
        step = "process"
        exe, args, env = prepare_exec(proc)
        if proc.get("terminal"):
            # Last before finalize, once everything that commonly fails (the program's
            # lookup above all) has passed: the master goes out on the console socket
            # here, and a listener (containerd's shim, conmon) takes one connection only.
            step = "console"
            _setup_console(plan, proc)
            step = "process"
        finalize(proc, plan)
        rproc.mark_fds_cloexec(3 + (plan.preserve_fds or 0))
        step = "join cgroup"
        cgroup.wait_joined()
        ch.send(type="ready")
        ch.close()
    except BaseException as exc:  # noqa: BLE001
        ch.send_error(step, exc)
        os._exit(1)
    # -- after this point create has returned: wait for start, then become the process
    try:
        # The write end stays open, close-on-exec, until execve: ``start`` reads the
        # byte and then waits for EOF, so poststart hooks run only once the user
        # process has been exec'd (runtime-spec lifecycle, step 9) — or G has died.
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fifo_fd)
        hooks = (spec.get("hooks") or {}).get("startContainer")
        if hooks:
            from conch.runtime import hooks as rhooks

            rhooks.run("startContainer", hooks, dict(plan.state_json, status="running"))
        if proc.get("noNewPrivileges"):
            rproc.load_seccomp(plan.seccomp, plan.seccomp_flags)
        reset_signals()
        rproc.execute(exe, args, env)
    except BaseException as exc:  # noqa: BLE001
        _die_after_start(proc, exc)


def preload(spec: dict, proc: dict) -> None:
    """Import everything the children use, in the parent before it forks: after
    pivot_root or setns the host's Python library is out of reach, and inside a user
    namespace even before that (host root's files are not ours there)."""
    import fcntl  # noqa: F401 - process.mark_fds_cloexec, console
    import resource  # noqa: F401 - process.set_rlimits

    from conch.kernel import capabilities, libc

    libc.libc()
    capabilities.last_cap()
    if (spec.get("linux") or {}).get("seccomp"):
        from conch.kernel import seccomp  # noqa: F401
    if proc.get("terminal"):
        import socket  # noqa: F401

        from conch.runtime import console  # noqa: F401
    if (spec.get("hooks") or {}).get("startContainer"):
        from conch.runtime import hooks  # noqa: F401


def prepare_exec(proc: dict):
    env = rproc.env_dict(proc.get("env"))
    if "HOME" not in env:  # runc and docker set HOME from the user's passwd entry
        env["HOME"] = rproc.home_of(int((proc.get("user") or {}).get("uid", 0)))
    args = list(proc.get("args") or ())
    exe = rproc.resolve_executable(args[0], env)
    return exe, args, env


def finalize(proc: dict, plan: Plan) -> None:
    """cwd, rlimits, oom score, no_new_privs, seccomp (early case), user and caps."""
    cwd = proc.get("cwd") or "/"
    cwd_done = _try_chdir(cwd)
    rproc.set_rlimits(plan.rlimits or ())
    if "oomScoreAdj" in proc:
        rproc.set_oom_score_adj(proc["oomScoreAdj"])
    if proc.get("noNewPrivileges"):
        prctl.set_no_new_privs()
    else:
        rproc.load_seccomp(plan.seccomp, plan.seccomp_flags)
    user = proc.get("user") or {}
    # process.user.umask, else 0022 whatever the caller's: runc's rule (checked against
    # runc 1.1.5), so a container does not inherit the umask of whoever ran the runtime
    os.umask(user["umask"] if user.get("umask") is not None else 0o022)
    rproc.switch_user(user, plan.caps, setgroups_allowed=_setgroups_allowed())
    if not cwd_done:
        os.chdir(cwd)  # a cwd only the container user may enter: retry as that user


def _try_chdir(cwd: str) -> bool:
    try:
        os.chdir(cwd)
        return True
    except PermissionError:
        return False
    except FileNotFoundError:
        # runc creates a missing cwd (Docker relies on it for WORKDIR of fresh volumes)
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
        return True


def _loopback_up() -> None:
    """Bring up ``lo`` in a new network namespace, as runc does (SIOCSIFFLAGS on an
    AF_INET datagram socket, made through libc: the socket module costs ~3 ms)."""
    import fcntl

    from conch.kernel.libc import check, libc

    # struct ifreq: the name in 16 bytes, then ifr_flags (a native short), padded to 40;
    # packed by hand: struct is not imported by anything else here, and after
    # pivot_root the host's library is out of reach.
    def ifreq(flags: int) -> bytes:
        return b"lo".ljust(16, b"\0") + flags.to_bytes(2, sys.byteorder) + bytes(22)

    fd = check(libc().socket(2, 2 | 0o2000000, 0), "socket", detail="AF_INET for lo")  # SOCK_CLOEXEC
    try:
        flags = int.from_bytes(fcntl.ioctl(fd, 0x8913, ifreq(0))[16:18], sys.byteorder)  # SIOCGIFFLAGS
        fcntl.ioctl(fd, 0x8914, ifreq(flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
    finally:
        os.close(fd)


def reset_signals() -> None:
    """Python starts with SIGPIPE and SIGXFSZ ignored, and an ignored disposition
    survives execve: give the container's process the defaults every program expects."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def _set_names(spec: dict, ns: dict) -> None:
    """Set in the container's UTS namespace, new or joined by path (runc sets it in a
    joined one too; config.validate refused a container that has none of its own)."""
    hostname = spec.get("hostname")
    domainname = spec.get("domainname")
    from conch.kernel.libc import check, libc

    # through libc rather than socket.sethostname: the socket module costs ~3 ms to import
    if hostname:
        name = hostname.encode()
        check(libc().sethostname(name, len(name)), "sethostname", detail=hostname)
    if domainname:
        name = domainname.encode()
        check(libc().setdomainname(name, len(name)), "setdomainname", detail=domainname)


def _setup_console(plan: Plan, proc: dict) -> None:
    from conch.runtime import console

    master, slave = console.open_pty()
    console.bind_console(slave)
    console.send_fd(plan.console_fd, master)
    os.close(master)
    os.close(plan.console_fd)
    console.make_controlling(slave, proc.get("consoleSize"))


def _die_after_start(proc: dict, exc: BaseException) -> None:
    """Failure after ``start`` released us: there is no caller left to tell but stderr."""
    code = 127 if isinstance(exc, FileNotFoundError) else 126 if isinstance(exc, PermissionError) else 1
    try:
        os.write(2, f"conch-runtime: exec {proc.get('args', ['?'])[0]}: {exc}\n".encode())
    except OSError:
        pass
    os._exit(code)
