"""The parent side of ``create`` (and of ``run``): fork, drive the children, record state.

Steps, in order (see ``conch.runtime`` for the process picture):
 1. load and validate config.json; compile seccomp and check rlimits (fail before forking)
 2. write the state record ("creating", with the cgroup paths) so that ``delete --force``
    can clean up after a runtime killed at any later point
 3. make exec.fifo; fork C (which forks G); make the cgroup's directories (G waits for
    them only at its cgroup mount), apply resources and move G into it, all while G
    builds its rootfs
 4. write uid/gid maps when C made a user namespace
 5. learn G's pid; run prestart/createRuntime hooks while G waits before pivot_root
 6. G reports ready: record pid and start time, status "created", write --pid-file
On any failure the children are killed and the cgroup and state directory are removed.
"""

import os
import _signal as signal  # the C module: "signal" imports enum (~3 ms)
import time

from conch.errors import InvalidArgument
from conch.runtime import config as rconfig
from conch.runtime import init as rinit
from conch.runtime import process as rproc
from conch.runtime.state import State, process_start, remove_state_dir
from conch.runtime.sync import Channel


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def create(root: str, cid: str, bundle: str, *, pid_file: str = "", console_socket: str = "",
           console_fd: int | None = None, preserve_fds: int = 0, no_pivot: bool = False) -> State:
    bundle = os.path.abspath(bundle)
    spec = rconfig.load(bundle)
    proc = spec.get("process")
    if proc is None:
        raise InvalidArgument("config.json: process is required to create a container")
    if proc.get("terminal") and not console_socket and console_fd is None:
        raise InvalidArgument("process.terminal is true: a --console-socket is required "
                              "(or use 'run' in the foreground)")
    linux = spec.get("linux") or {}
    ns = rconfig.namespaces(spec)
    rlimits = rproc.check_rlimits(proc.get("rlimits"))
    caps = rproc.cap_masks(proc.get("capabilities"))
    program, sflags = rproc.compile_seccomp(linux.get("seccomp"))
    from conch.cgroups import open_manager

    cgroup = open_manager(linux.get("cgroupsPath") or None, container_id=cid)
    state = State.new(root, cid, bundle=bundle, created=now_rfc3339(), status="creating",
                      annotations=spec.get("annotations") or {}, cgroup=cgroup.save(),
                      creator_pid=os.getpid(), rootfs=rconfig.rootfs_path(spec, bundle),
                      config_path=os.path.join(bundle, "config.json"),
                      hooks=sorted(k for k, v in (spec.get("hooks") or {}).items() if v))
    child_pids: list[int] = []
    try:
        state.save()
        os.mkfifo(state.fifo, 0o622)
        # owned by the container's root, as runc does: inside a user namespace the init
        # reopens it through /proc/self/fd as that (unprivileged on the host) user
        os.chown(state.fifo, _host_id(linux.get("uidMappings")), _host_id(linux.get("gidMappings")))
        os.chmod(state.fifo, 0o622)
        if console_socket:
            console_fd = rconsole_connect(console_socket)
        # Opened here, handed down as an fd: inside a user namespace the init may not
        # be allowed to walk to --root (runc passes the fifo the same way).
        fifo_fd = os.open(state.fifo, os.O_PATH | os.O_CLOEXEC)
        parent_ch, child_ch = Channel.pair()
        hooks = spec.get("hooks") or {}
        plan = rinit.Plan(
            spec=spec, rootfs=state.rootfs, namespaces=ns, channel=child_ch, fifo=fifo_fd,
            console_fd=console_fd, cgroup_mounts=_cgroup_mounts(cgroup, ns),
            rlimits=rlimits, caps=caps, seccomp=program, seccomp_flags=sflags,
            preserve_fds=preserve_fds, no_pivot=no_pivot,
            has_runtime_hooks=bool(hooks.get("prestart") or hooks.get("createRuntime")),
            state_json=state.oci("creating"))
        rinit.preload(spec, proc)
        if "user" in ns:  # through the intermediate C, which may change user namespace
            pid = os.fork()
            if pid == 0:
                parent_ch.close()
                rinit.run_intermediate(plan)  # never returns
                os._exit(1)
        else:
            pid = rinit.fork_init(plan, parent_ch)  # G itself
        child_pids.append(pid)
        os.close(fifo_fd)
        os.close(child_ch.rfd)
        os.close(child_ch.wfd)
        if console_fd is not None and console_socket:
            os.close(console_fd)
        _drive(parent_ch, pid, spec, ns, cgroup, state, plan, child_pids)
        parent_ch.close()
        if pid_file:
            _write_pid_file(pid_file, state.pid)
        return state
    except BaseException:
        for p in reversed(child_pids):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(child_pids[:1])
        _cleanup_failed(state, cgroup)
        raise


def rconsole_connect(path: str) -> int:
    from conch.runtime import console

    return console.connect(path)


def _drive(ch: Channel, pid: int, spec, ns, cgroup, state: State, plan, child_pids) -> None:
    linux = spec.get("linux") or {}
    # Made after the fork, while the children unshare and build the rootfs. On a cold
    # host the mkdirs wait for the grace period prearm's first move waits out (it holds
    # cgroup_mutex meanwhile); the init waits for them only at its cgroup mount.
    cgroup.create()
    if ns.get("user") == "":
        ch.expect("userns")
        _write_id_maps(pid, linux)
        ch.send(type="mapped")
    if plan.direct:
        init_pid = pid
    else:
        init_pid = ch.expect("pid")["pid"]
        child_pids.append(init_pid)
        _reap([pid])
    _send(ch, "cgroup-dirs")  # G may bind-mount them now, and build on while we go on
    # The limits go on before G joins: v1 device rules are a "deny a" and then one allow
    # per rule, and G creates /dev (mknod) meanwhile; inside the cgroup it could mknod
    # between the two and fail with EPERM (seen under containerd). Joining a cgroup
    # whose rules are complete has no such window.
    cgroup.apply(_with_default_devices(linux.get("resources") or {}))
    # G builds its rootfs while we move it into its cgroup (see init.run_intermediate)
    cgroup.add(init_pid)
    from conch.runtime import prearm

    prearm.stop()
    _send(ch, "cgroup", pid=init_pid)
    state.pid = init_pid
    state.pid_start = process_start(init_pid) or 0
    state.save()
    hooks = spec.get("hooks") or {}
    if plan.has_runtime_hooks:
        ch.expect("hooks")
        from conch.runtime import hooks as rhooks

        st = dict(state.oci("creating"), pid=init_pid)  # runtime-spec: hooks see the pid
        rhooks.run("prestart", hooks.get("prestart"), st)
        rhooks.run("createRuntime", hooks.get("createRuntime"), st)
        ch.send(type="hooks-done")
    ch.expect("ready")
    state.status = "created"
    state.save()


def _send(ch: Channel, kind: str, **fields) -> None:
    try:
        ch.send(type=kind, **fields)
    except BrokenPipeError:
        ch.expect(kind + "-ack")  # G failed meanwhile: raises its error message


# runc (libcontainer/specconv) appends these to every container's device cgroup rules:
# the default device nodes must work whatever the config says, and mknod of any node is
# allowed (opening one still needs an allow rule).
_DEFAULT_DEVICE_RULES = [
    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},   # console
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},  # pts
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # tun
]


def _with_default_devices(resources: dict) -> dict:
    if not isinstance(resources, dict) or resources.get("devices") is None:
        # absent or null: no device rules at all (not a dict: parse_resources says why)
        return resources
    out = dict(resources)
    out["devices"] = list(resources["devices"]) + [
        dict(r) for r in _DEFAULT_DEVICE_RULES]
    return out


def _host_id(mappings) -> int:
    """The host id that container id 0 maps to (0 without a mapping)."""
    for m in mappings or ():
        if m["containerID"] <= 0 < m["containerID"] + m["size"]:
            return m["hostID"] - m["containerID"]
    return 0


def _write_id_maps(pid: int, linux: dict) -> None:
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key) or ())
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(lines)


def _cgroup_mounts(cgroup, ns) -> list:
    """(name, fstype, options, host_dir) for each hierarchy, for a "cgroup" mount."""
    # Without a cgroup namespace of its own, a fresh cgroupfs mount would show the host's
    # whole hierarchy: bind the container's directories instead (runc does the same).
    own_ns = "cgroup" in ns
    if cgroup.version == 2:
        return [("", "cgroup2" if own_ns else "bind", "", cgroup.paths.get("", ""))]
    out = []
    for opts, host_dir in cgroup.mount_sources():
        name = ",".join(o.replace("name=", "") for o in opts.split(",") if o != "none")
        out.append((name, "cgroup" if own_ns else "bind", opts, host_dir))
    return out


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    # a new file of ours, never one planted there (or a link) by whoever can write the dir
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _reap(pids) -> None:
    for p in pids:
        try:
            os.waitpid(p, 0)
        except ChildProcessError:
            pass


def _cleanup_failed(state: State, cgroup) -> None:
    try:
        cgroup.kill_all(signal.SIGKILL)
    except Exception:  # noqa: BLE001 - best effort, the destroy below reports
        pass
    deadline = time.monotonic() + 2
    while True:
        try:
            cgroup.destroy()
            break
        except Exception:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    remove_state_dir(state.dir)
