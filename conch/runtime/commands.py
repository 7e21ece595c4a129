"""One function per runc verb. Each takes parsed options and returns an exit code.

Output formats follow runc's where tools parse them: ``state`` prints the runtime-spec
state object (indented JSON), ``list --format json`` and ``ps --format json`` print what
runc prints, ``features`` prints the runtime-spec features document.
"""

from conch.oci import fastjson
import os
import _signal as signal  # the C module: "signal" imports enum (~3 ms)
import time

from conch.errors import Conflict, FailedPrecondition, InvalidArgument
from conch.runtime.state import State, list_ids, process_start, remove_state_dir


def _frozen_probe(state: State):
    if not state.cgroup:
        return None

    def frozen() -> bool:
        from conch.cgroups import load_manager

        try:
            return load_manager(state.cgroup).frozen()
        except Exception:  # noqa: BLE001 - no freezer: never paused
            return False

    return frozen


def status_of(state: State) -> str:
    return state.current_status(_frozen_probe(state))


# -- lifecycle ----------------------------------------------------------------------

def cmd_create(o) -> int:
    from conch.runtime.create import create

    create(o.root, o.id, o.bundle, pid_file=o.pid_file, console_socket=o.console_socket,
           preserve_fds=o.preserve_fds, no_pivot=o.no_pivot)
    return 0


def cmd_start(o) -> int:
    state = State.load(o.root, o.id)
    start(state)
    return 0


def start(state: State) -> None:
    from conch.runtime.fastpath import release_init

    status = status_of(state)
    if status != "created":
        raise FailedPrecondition(f"cannot start container {state.id!r}: it is {status}, not created")
    fd = release_init(state)
    try:
        hooks = _hooks(state).get("poststart") if state.may_have_hooks("poststart") else None
        if hooks:
            # It keeps the write end open (close-on-exec) until its execve: EOF says
            # the user process runs, and only then may poststart hooks run (spec order).
            _wait_eof(fd)
    finally:
        os.close(fd)
    if hooks:
        from conch.runtime import hooks as rhooks

        # runtime-spec: a failing poststart hook is a warning, and the rest still run
        rhooks.run_warn("poststart", hooks, state.oci("running"))


def _wait_eof(fd: int) -> None:
    import select

    while True:
        select.select([fd], [], [])
        try:
            if not os.read(fd, 64):
                return
        except BlockingIOError:
            continue


def _hooks(state: State) -> dict:
    try:
        with open(state.config_path, "rb") as f:
            return fastjson.loads(f.read()).get("hooks") or {}
    except (OSError, ValueError):
        return {}


def cmd_run(o) -> int:
    from conch.kernel import prctl
    from conch.runtime.create import create

    if o.detach:
        state = create(o.root, o.id, o.bundle, pid_file=o.pid_file,
                       console_socket=o.console_socket, preserve_fds=o.preserve_fds,
                       no_pivot=o.no_pivot)
        start(state)
        return 0
    # Foreground: become the subreaper so the init, whose parent (the intermediate)
    # exits during create, is re-parented to us and we can wait for its exit status.
    prctl.set_child_subreaper()
    console_fd = peer = None
    if not o.console_socket and _wants_terminal(o.bundle):
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        console_fd, peer = b.detach(), a
    state = create(o.root, o.id, o.bundle, pid_file=o.pid_file, console_socket=o.console_socket,
                   console_fd=console_fd, preserve_fds=o.preserve_fds, no_pivot=o.no_pivot)
    master = None
    if peer is not None:
        from conch.runtime import console

        os.close(console_fd)
        master = console.recv_fd(peer.fileno())
        peer.close()
    forward = _forward_signals(state.pid, tty=master is not None)
    try:
        start(state)
        import gc

        gc.enable()  # off for the start (see main.run); the wait may be long
        if master is not None:
            from conch.runtime import console

            console.proxy(master, state.pid)
        code = _wait(state.pid)
    finally:
        for sig, old in forward.items():
            signal.signal(sig, old)
        if not o.keep:
            delete(state, force=True)
    return code


def _wants_terminal(bundle: str) -> bool:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return bool((fastjson.loads(f.read()).get("process") or {}).get("terminal"))
    except (OSError, ValueError):
        return False


def _forward_signals(pid: int, tty: bool) -> dict:
    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    sigs = [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2]
    if not tty:  # on a tty, ^C reaches the container through the pty
        sigs.append(signal.SIGINT)
    return {s: signal.signal(s, forward) for s in sigs}


def _wait(pid: int) -> int:
    """Wait for ``pid`` (our child, as subreaper), reaping any other orphans meanwhile."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


# -- inspection ---------------------------------------------------------------------

def cmd_state(o) -> int:
    state = State.load(o.root, o.id)
    print(fastjson.dumps_pretty(state.oci(status_of(state))))
    return 0


def cmd_list(o) -> int:
    rows = []
    for cid in list_ids(o.root):
        try:
            st = State.load(o.root, cid)
        except Exception:  # noqa: BLE001 - a half-deleted entry is skipped
            continue
        status = status_of(st)
        rows.append({"ociVersion": "1.2.0", "id": st.id, "pid": st.pid if status != "stopped" else 0,
                     "status": status, "bundle": st.bundle, "rootfs": st.rootfs,
                     "created": st.created, "annotations": st.annotations or None,
                     "owner": st.owner or "root"})
    if o.quiet:
        for r in rows:
            print(r["id"])
    elif o.format == "json":
        print(fastjson.dumps(rows))
    else:
        print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<32}OWNER")
        for r in rows:
            print(f"{r['id']:<20}{r['pid']:<10}{r['status']:<10}{r['bundle']:<40}{r['created']:<32}{r['owner']}")
    return 0


def cmd_ps(o) -> int:
    state = State.load(o.root, o.id)
    pids = container_pids(state)
    if o.format == "json":
        print(fastjson.dumps(pids))
        return 0
    print(f"{'PID':>8} {'PPID':>8} CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = f.read().rsplit(b")", 1)[1].split()[1].decode()
        except OSError:
            continue
        print(f"{pid:>8} {ppid:>8} {cmd}")
    return 0


def container_pids(state: State) -> list[int]:
    from conch.cgroups import load_manager

    if not state.cgroup:
        return [state.pid] if state.alive() else []
    return sorted(load_manager(state.cgroup).pids())


# -- signals, pause, delete ---------------------------------------------------------

def parse_signal(text: str) -> int:
    text = (text or "SIGTERM").upper()
    if text.isdigit():
        num = int(text)
        if not 0 < num < 65:
            raise InvalidArgument(f"invalid signal number {num}")
        return num
    name = text if text.startswith("SIG") else "SIG" + text
    num = getattr(signal, name, None)
    if not isinstance(num, int) or name.startswith("SIG_"):
        raise InvalidArgument(f"unknown signal {text!r}")
    return num


def cmd_kill(o) -> int:
    state = State.load(o.root, o.id)
    sig = parse_signal(o.signal)
    status = status_of(state)
    if status == "stopped" and not o.all:
        raise FailedPrecondition(f"container {state.id!r} is not running")
    if o.all:
        from conch.cgroups import load_manager

        load_manager(state.cgroup).kill_all(sig)
    else:
        os.kill(state.pid, sig)
    return 0


def cmd_pause(o) -> int:
    from conch.cgroups import load_manager

    state = State.load(o.root, o.id)
    if status_of(state) != "running":
        raise FailedPrecondition(f"container {state.id!r} is not running")
    load_manager(state.cgroup).freeze()
    return 0


def cmd_resume(o) -> int:
    from conch.cgroups import load_manager

    state = State.load(o.root, o.id)
    if status_of(state) != "paused":
        raise FailedPrecondition(f"container {state.id!r} is not paused")
    load_manager(state.cgroup).thaw()
    return 0


def cmd_delete(o) -> int:
    from conch.errors import NotFound

    try:
        state = State.load(o.root, o.id)
    except NotFound:
        if o.force:
            return 0  # runc: delete --force of a missing container succeeds
        raise
    delete(state, force=o.force)
    return 0


def delete(state: State, force: bool) -> None:
    """Kill what is left (when allowed), remove the cgroup, run poststop, remove state."""
    status = status_of(state)
    if status in ("running", "paused", "creating") and not force:
        raise Conflict(f"cannot delete container {state.id!r} that is not stopped: {status}"
                       " (use --force)")
    mgr = None
    if state.cgroup:
        from conch.cgroups import load_manager

        mgr = load_manager(state.cgroup)
        if mgr.pids():  # kill_all freezes and thaws: skip it when nothing is left
            mgr.kill_all(signal.SIGKILL)
    if state.alive():
        os.kill(state.pid, signal.SIGKILL)
    _wait_gone(state)
    if mgr is not None:
        mgr.destroy()
    if status != "creating" or state.pid:
        hooks = _hooks(state).get("poststop") if state.may_have_hooks("poststop") else None
        if hooks:
            from conch.runtime import hooks as rhooks

            # runtime-spec: a failing poststop hook is a warning, and the rest still run
            rhooks.run_warn("poststop", hooks, state.oci("stopped"))
    remove_state_dir(state.dir)


def _wait_gone(state: State, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while state.pid and process_start(state.pid) == state.pid_start and state.pid_start:
        if time.monotonic() > deadline:
            raise FailedPrecondition(f"container {state.id!r} init {state.pid} did not die")
        try:  # reap it if it is our child (run in the foreground)
            os.waitpid(state.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.002)


# -- spec, features -----------------------------------------------------------------

def cmd_spec(o) -> int:
    from conch.runtime import presets

    if o.rootless:
        raise InvalidArgument("spec --rootless is not supported by conch-runtime")
    import json

    path = os.path.join(o.bundle or ".", "config.json")
    if os.path.exists(path):
        raise FailedPrecondition(f"{path} already exists: remove it first")
    with open(path, "w") as f:
        json.dump(presets.runc_spec(), f, indent=2)
        f.write("\n")
    return 0


def cmd_features(o) -> int:
    import json

    from conch.kernel import capabilities as kcaps
    from conch.kernel import mount as km

    doc = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(set(km.MOUNT_OPTIONS) | set(km.PROPAGATION_OPTIONS)),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": kcaps.NAMES[: kcaps.last_cap() + 1],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                               "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.implementation": "conch-runtime"},
    }
    print(json.dumps(doc, indent=2))
    return 0
