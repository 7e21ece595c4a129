"""``exec``: start another process inside a running container.

Same shape as create, shorter: the runtime (P) forks C, which joins the init's
namespaces (``/proc/<init>/ns/*``, user namespace first, mount namespace last — joining
it also moves our root to the container's root) and forks G so that G is inside the pid
namespace. G sets up cwd, rlimits, user, caps and seccomp from the process spec and
execs. The sync pipe is close-on-exec: end-of-file after G's pid means the exec
succeeded, an error message means it did not.
"""

from conch.oci import fastjson as json  # no json module (re) on the hot path
import os
import sys
import _signal as signal  # the C module: "signal" imports enum (~3 ms)

from conch.errors import FailedPrecondition, InvalidArgument
from conch.kernel import prctl
from conch.runtime import init as rinit
from conch.runtime import process as rproc
from conch.runtime.state import State
from conch.runtime.sync import Channel, ChildFailed


def build_process(o, spec: dict) -> dict:
    """The process to run: --process JSON, or the container's process with overrides
    from the command line (runc's getProcess)."""
    if o.process:
        try:
            with open(o.process, "rb") as f:
                proc = json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"--process {o.process}: {exc}") from exc
        if not proc.get("args"):
            raise InvalidArgument(f"--process {o.process}: args is required")
        return proc
    if not o.args:
        raise InvalidArgument("exec needs a command to run (or --process FILE)")
    proc = dict(spec.get("process") or {})
    proc["args"] = list(o.args)
    proc["env"] = list(proc.get("env") or ()) + list(o.env or ())
    proc["terminal"] = bool(o.tty)
    if o.cwd:
        proc["cwd"] = o.cwd
    if o.user:
        uid, _, gid = o.user.partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0,
                            "additionalGids": [int(g) for g in o.additional_gids or ()]}
        except ValueError:
            raise InvalidArgument(f"--user {o.user!r}: want UID[:GID] as numbers") from None
    if o.cap:
        caps = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for cap in o.cap:
            for key in ("bounding", "effective", "permitted"):
                caps.setdefault(key, [])
                if cap not in caps[key]:
                    caps[key].append(cap)
        proc["capabilities"] = caps
    if o.no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def cmd_exec(o) -> int:
    from conch.runtime.commands import status_of

    state = State.load(o.root, o.id)
    status = status_of(state)
    if status not in ("running", "created"):
        raise FailedPrecondition(f"cannot exec in container {state.id!r}: it is {status}")
    with open(state.config_path, "rb") as f:
        spec = json.loads(f.read())
    proc = build_process(o, spec)
    if proc.get("terminal") and o.detach and not o.console_socket:
        raise InvalidArgument("exec -t --detach needs --console-socket")
    ns = {}
    for entry in (spec.get("linux") or {}).get("namespaces") or ():
        from conch.kernel.namespaces import NAMESPACES

        ns[entry["type"]] = f"/proc/{state.pid}/ns/{NAMESPACES[entry['type']][1]}"
    plan = rinit.Plan(spec=spec, namespaces=ns, rlimits=rproc.check_rlimits(proc.get("rlimits")),
                      caps=rproc.cap_masks(proc.get("capabilities")),
                      preserve_fds=o.preserve_fds)
    plan.seccomp, plan.seccomp_flags = rproc.compile_seccomp((spec.get("linux") or {}).get("seccomp"))
    foreground = not o.detach
    if foreground:
        prctl.set_child_subreaper()
    console_fd = peer = None
    if proc.get("terminal"):
        if o.console_socket:
            from conch.runtime import console

            console_fd = console.connect(o.console_socket)
        else:
            import socket

            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            console_fd, peer = b.detach(), a
    plan.console_fd = console_fd
    from conch.cgroups import load_manager

    cgroup = load_manager(state.cgroup) if state.cgroup else None
    parent_ch, child_ch = Channel.pair()
    plan.channel = child_ch
    rinit.preload(spec, proc)
    pid = os.fork()
    if pid == 0:
        parent_ch.close()
        _intermediate(plan, proc)  # never returns
    child_ch.close()
    if console_fd is not None:
        os.close(console_fd)
    try:
        if cgroup is not None:
            cgroup.add(pid)
        parent_ch.send(type="go")
        exec_pid = parent_ch.expect("pid")["pid"]
        os.waitpid(pid, 0)
        try:
            parent_ch.expect("never")  # EOF = exec'd; an error message = failed
        except ChildFailed as exc:
            if exc.step != "sync":
                code = _exec_failure_code(str(exc))
                if code:
                    # the shell's (and docker exec's) codes: 127 not found, 126 not runnable
                    sys.stderr.write(f"conch-runtime: {exc}\n")
                    return code
                raise
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise
    finally:
        parent_ch.close()
    if o.pid_file:
        from conch.runtime.create import _write_pid_file

        _write_pid_file(o.pid_file, exec_pid)
    if not foreground:
        return 0
    from conch.runtime.commands import _forward_signals, _wait

    master = None
    if peer is not None:
        from conch.runtime import console

        master = console.recv_fd(peer.fileno())
        peer.close()
    _forward_signals(exec_pid, tty=master is not None)
    import gc

    gc.enable()  # off for the start (see main.run); the wait may be long
    if master is not None:
        from conch.runtime import console

        console.proxy(master, exec_pid)
    return _wait(exec_pid)


def _exec_failure_code(message: str) -> int:
    lower = message.lower()
    if "executable file not found" in lower or "no such file or directory" in lower:
        return 127
    if "permission denied" in lower:
        return 126
    return 0


def _intermediate(plan, proc: dict) -> None:
    ch = plan.channel
    step = "join namespaces"
    try:
        prctl.set_pdeathsig(signal.SIGKILL)
        ch.expect("go")
        rinit.join_namespaces(plan.namespaces)
        if "user" in plan.namespaces:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        step = "fork"
        pid = os.fork()
        if pid == 0:
            _exec_child(plan, proc)
        ch.send(type="pid", pid=pid)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001
        ch.send_error(step, exc)
        os._exit(1)


def _exec_child(plan, proc: dict) -> None:
    ch = plan.channel
    step = "process"
    try:
        if proc.get("terminal"):
            step = "console"
            from conch.runtime import console

            os.setsid()
            master, slave = console.open_pty()
            console.send_fd(plan.console_fd, master)
            os.close(master)
            os.close(plan.console_fd)
            console.make_controlling(slave, proc.get("consoleSize"))
        step = "process"
        exe, args, env = rinit.prepare_exec(proc)
        rinit.finalize(proc, plan)
        rproc.mark_fds_cloexec(3 + (plan.preserve_fds or 0))
        if proc.get("noNewPrivileges"):
            rproc.load_seccomp(plan.seccomp, plan.seccomp_flags)
        step = "exec"
        rinit.reset_signals()
        rproc.execute(exe, args, env)
    except BaseException as exc:  # noqa: BLE001
        ch.send_error(step, exc)
        os._exit(1)
