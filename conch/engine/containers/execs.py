"""``docker exec``: processes started inside a running container.

An exec runs through the container's shim, as containerd runs it through its shim: conchd
asks the shim (``{"type":"exec"}`` on its socket, :func:`conch.shim.client.exec_request`)
and the shim runs ``RUNTIME exec --detach``; the runtime exits as soon as the process is
exec'd, and the process is the shim's child from then on. The shim reaps it and writes
its exit record (``<container dir>/execs/<id>.exit.json``, like the container's
``exit.json``), then tells us on the connection that asked. So no Python process lives
as long as an exec'd process does, and after a ``kill -9`` of conchd the process is
still the shim's child, reaped and recorded by it.

The process's stdio are pipes whose other ends conchd keeps and the API pumps; with
``-t`` the runtime makes the pty inside the container and hands its master over
``--console-socket`` to conchd, which then holds it: the API pumps the master, and
``/exec/{id}/resize`` sets its window size (docker's CLI sends the size right after the
start, and on every SIGWINCH). Exec records live in memory, as in dockerd; they end with
the container or the daemon (a restarted conchd knows none, so none claims Running).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field, replace

from conch.errors import ConchError, Conflict, FailedPrecondition, NotFound

log = logging.getLogger(__name__)

# the shim kills a runtime after 120 s; its answer cannot take longer than that
_START_TIMEOUT = 150.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecConfig:
    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    privileged: bool = False
    console_size: tuple[int, int] | None = None  # ConsoleSize at create ([h, w])
    detach_keys: str = ""  # DetachKeys at create ("" = the default ctrl-p,ctrl-q)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exec:
    id: str
    container_id: str
    config: ExecConfig
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event, compare=False)


class ExecService:
    def __init__(self, containers, runtime: str, runtime_root: str, tasks=None):
        self.containers = containers
        self.runtime = runtime
        self.runtime_root = runtime_root
        self.tasks = tasks
        self._execs: dict[str, Exec] = {}
        self._ptys: dict[str, int] = {}  # exec id -> pty master (tty execs while running)
        self._sizes: dict[str, tuple[int, int]] = {}  # sizes asked before the pty existed
        self._starting: set[str] = set()  # exec ids between start and the shim's answer

    def create(self, container_ref: str, config: ExecConfig) -> Exec:
        c = self.containers.get(container_ref)
        if c.state.status.value == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        if not config.cmd:
            raise Conflict("No exec command specified")
        ex = Exec(id=secrets.token_hex(32), container_id=c.id, config=config)
        self._execs[ex.id] = ex
        return ex

    def get(self, exec_id: str) -> Exec:
        ex = self._execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    def _files(self, cid: str, exec_id: str) -> dict[str, str]:
        """Where this exec's process JSON, pid file and exit record go: in the
        container's directory, so they go with it (``rm``) even after a crash."""
        d = os.path.join(self.containers.paths.dir(cid), "execs")
        os.makedirs(d, exist_ok=True)
        base = os.path.join(d, exec_id[:32])
        return {"process": f"{base}.json", "pid_file": f"{base}.pid",
                "exit_file": f"{base}.exit.json"}

    async def start(self, exec_id: str, *, console_size: tuple[int, int] | None = None,
                    detach: bool = False) -> "ExecProcess":
        """Start the exec through the container's shim and return once it runs (or has
        failed to: then its exit code is already known). The caller owns the returned
        process's stdin/stdout/stderr streams (None when not attached; all None with
        ``detach``) and calls :meth:`ExecProcess.release` when it stops pumping them.
        With a tty, ``proc.stdout`` carries the runtime's own messages (an exec that
        fails to start) and :meth:`pty` the pty master (a duplicate the caller must
        close)."""
        ex = self.get(exec_id)
        if ex.running or ex.exit_code is not None or exec_id in self._starting:
            raise Conflict(f"Exec {exec_id} has already been started")
        c = self.containers.get(ex.container_id)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        self._starting.add(exec_id)
        try:
            return await self._start(ex, c, console_size, detach)
        finally:
            self._starting.discard(exec_id)

    async def _start(self, ex: "Exec", c, console_size, detach: bool) -> "ExecProcess":
        from conch.shim import client as shim

        cfg = ex.config
        files = self._files(c.id, ex.id)
        process = self._process_json(c, cfg, console_size or cfg.console_size)
        with open(files["process"], "w") as f:
            json.dump(process, f)
        proc = ExecProcess()
        # Our ends of the process's pipes stay here and are pumped by the API exactly as
        # when the runtime ran as our child; the shim gets the other ends (SCM_RIGHTS) and
        # hands them to the runtime, keeping no copy. This is simpler than the shim
        # relaying bytes (no per-exec buffers, framing, stdin or resize in C) and keeps
        # the shim tiny. The shim also holds a copy of our read ends, untouched until
        # our connection to it goes (conchd killed): then it drains them, so a process
        # that goes on writing neither gets EPIPE nor blocks. With a tty the runtime sends
        # the pty master to a socket of ours, as before, so resize stays a TIOCSWINSZ
        # here; the shim gets a copy of the master afterwards (_keep_pty), held and
        # drained the same way, so the process gets no SIGHUP when conchd dies.
        theirs: list[int] = []
        ours: list[tuple[str, int]] = []
        listener = None
        try:
            null_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            null_w = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            theirs += [null_r, null_w]
            if cfg.tty:
                stdio = [null_r, null_w, null_w]
                if not detach:  # the runtime's own messages (stdout and stderr)
                    r, w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(w)
                    ours.append(("stdout", r))
                    stdio = [null_r, w, w]
                listener, console_path = _console_listener()
            else:
                stdio = [null_r, null_w, null_w]
                for i, (name, wanted) in enumerate((("stdin", cfg.attach_stdin),
                                                    ("stdout", cfg.attach_stdout),
                                                    ("stderr", cfg.attach_stderr))):
                    if not wanted or detach:
                        continue
                    r, w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(r if i == 0 else w)
                    ours.append((name, w if i == 0 else r))
                    stdio[i] = r if i == 0 else w
                console_path = None
            try:
                # our read ends too: the shim drains them if we die (no EPIPE for it)
                keep = [fd for name, fd in ours if name != "stdin"]
                sock = await asyncio.to_thread(
                    shim.exec_request, self.containers.paths.socket(c.id), stdio=stdio,
                    console_socket=console_path, keep=keep, timeout=10, **files)
            finally:
                for fd in theirs:
                    os.close(fd)
                theirs = []
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            proc._conn = writer
            while ours:
                await proc._attach(*ours.pop(0))  # owns the fd from here, even on failure
            first = await self._first_reply(ex.id, c.id, reader, listener)
        except BaseException:
            for fd in theirs:
                os.close(fd)
            for _, fd in ours:
                os.close(fd)
            pty = self._ptys.pop(ex.id, None)
            if pty is not None:
                os.close(pty)
            proc._close()
            self._unlink(files)
            raise
        finally:
            if listener is not None:
                _close_listener(listener)
        _unlink(files["process"])  # read by the runtime, which has exited
        if "pid" in first and "exit_code" not in first:
            proc.pid = int(first["pid"])
            try:
                proc._pidfd = os.pidfd_open(proc.pid)  # kill() can never hit a reused pid
            except OSError:
                pass  # gone already: its exit line follows
            self._execs[ex.id] = replace(self._execs[ex.id], running=True, pid=proc.pid)
            watcher = self._watch(ex.id, proc, reader, files)
            if ex.id in self._ptys:  # the shim holds the master too, for if we die
                self._spawn(self._keep_pty(c.id, proc.pid, os.dup(self._ptys[ex.id])))
        else:  # the runtime failed (e.g. 127): that is the exit, nothing ran
            watcher = self._finish(ex.id, proc, first, files)
        self._spawn(watcher)
        return proc

    def _spawn(self, coro) -> None:
        if self.tasks is not None:
            self.tasks.create_task(coro)
        else:
            asyncio.get_running_loop().create_task(coro)

    async def _keep_pty(self, cid: str, pid: int, fd: int) -> None:
        """A duplicate of a tty exec's pty master to its shim (in the background: the
        session does not wait for it). Failing only loses what it is for: the process
        would get SIGHUP if conchd died."""
        from conch.shim import client as shim

        try:
            await asyncio.to_thread(shim.exec_keep, self.containers.paths.socket(cid), pid, fd)
        except (ConchError, OSError) as exc:
            log.debug("exec %d: the shim does not hold its pty: %s", pid, exc)
        finally:
            os.close(fd)

    async def _first_reply(self, exec_id: str, cid: str, reader, listener) -> dict:
        """The shim's first line ({"pid"} or an exit line); with a tty, the pty master
        from our console socket meanwhile (the runtime sends it before it exits, so it
        is queued on the socket by the time the pid line comes)."""
        from conch.shim import client as shim

        line_task = asyncio.ensure_future(reader.readline())
        try:
            if listener is not None:
                loop = asyncio.get_running_loop()
                accept = asyncio.ensure_future(loop.sock_accept(listener))
                try:
                    await asyncio.wait([accept, line_task], timeout=_START_TIMEOUT,
                                       return_when=asyncio.FIRST_COMPLETED)
                    if line_task.done() and not accept.done():
                        await asyncio.wait([accept], timeout=2)
                finally:
                    if not accept.done():
                        accept.cancel()
                if accept.done() and not accept.cancelled() and accept.exception() is None:
                    conn, _ = accept.result()
                    with conn:
                        # bounded: a runtime that connects and sends nothing must not
                        # stall this request forever
                        conn.settimeout(10)
                        try:
                            _msg, fds, _f, _a = await asyncio.to_thread(socket.recv_fds, conn, 4096, 4)
                        except OSError:
                            fds = []
                    for extra in fds[1:]:  # one pty master is expected
                        os.close(extra)
                    if fds:
                        self._ptys[exec_id] = fds[0]
                        size = self._sizes.pop(exec_id, None)
                        if size is not None:
                            _set_winsize(fds[0], *size)
            line = await asyncio.wait_for(line_task, _START_TIMEOUT)
        finally:
            if not line_task.done():
                line_task.cancel()
        if not line:
            # the shim hung up without a word: it (or the container) is gone
            raise Conflict(f"Container {cid} is not running")
        try:
            return shim.parse_exec_reply(line)
        except FailedPrecondition as exc:
            if "not running" in str(exc):
                raise Conflict(f"Container {cid} is not running") from exc
            if "unknown request type" in str(exc):  # a shim from before exec went through it
                raise FailedPrecondition(f"container {cid[:12]}'s shim is too old to run execs: "
                                         "restart the container") from exc
            raise

    def pty(self, exec_id: str) -> int | None:
        """A duplicate of the exec's pty master (the caller closes it), or None."""
        fd = self._ptys.get(exec_id)
        return os.dup(fd) if fd is not None else None

    def resize(self, exec_id: str, height: int, width: int) -> None:
        """TIOCSWINSZ on the exec's pty; kept for the start when it is not running yet."""
        ex = self.get(exec_id)
        if not ex.config.tty:
            raise Conflict(f"exec {exec_id} was not started with a tty")
        fd = self._ptys.get(exec_id)
        if fd is None:
            self._sizes[exec_id] = (height, width)
        else:
            _set_winsize(fd, height, width)

    async def _watch(self, exec_id: str, proc: "ExecProcess", reader, files) -> None:
        """Until the shim's exit line (or, without one, its exit record; else the exit
        is unknown: -1, never 0)."""
        from conch.shim import client as shim

        result = None
        try:
            line = await reader.readline()
            if line:
                result = shim.parse_exec_reply(line)
        except (OSError, ConchError):
            pass
        if result is None or "exit_code" not in result:
            try:
                result = shim.read_exit(files["exit_file"])
            except ConchError:
                result = None
        await self._finish(exec_id, proc, result or {"exit_code": -1}, files)

    async def _finish(self, exec_id: str, proc: "ExecProcess", result: dict, files) -> None:
        code = int(result.get("exit_code", -1))
        fd = self._ptys.pop(exec_id, None)
        if fd is not None:
            os.close(fd)
        self._unlink(files)
        proc._exit(code)
        ex = self._execs.get(exec_id)
        if ex is not None:
            self._execs[exec_id] = replace(ex, running=False, exit_code=code)
            ex.done.set()

    @staticmethod
    def _unlink(files: dict[str, str]) -> None:
        for path in files.values():
            _unlink(path)

    async def wait(self, exec_id: str) -> int:
        ex = self.get(exec_id)
        await ex.done.wait()
        return self.get(exec_id).exit_code

    def forget_container(self, container_id: str) -> None:
        for eid in [e for e, x in self._execs.items() if x.container_id == container_id]:
            self._execs.pop(eid, None)

    def _process_json(self, c, cfg: ExecConfig, console_size=None) -> dict:
        """The OCI process for the exec: the container's own process spec (caps,
        rlimits, no_new_privs, apparmor...) with the exec's args, env, cwd and user."""
        from conch.engine.containers import ociconfig

        bundle_cfg = os.path.join(self.containers.paths.bundle(c.id), "config.json")
        with open(bundle_cfg) as f:
            base = json.load(f)["process"]
        proc = dict(base)
        proc["args"] = list(cfg.cmd)
        env = {e.partition("=")[0]: e for e in base.get("env") or ()}
        # moby CreateDaemonEnvironment(execConfig.Tty): TERM=xterm follows the exec's tty,
        # not the container's (unless the container's own Env sets TERM)
        own_term = any(e.partition("=")[0] == "TERM" for e in c.spec.env)
        if cfg.tty:
            env.setdefault("TERM", "TERM=xterm")
        elif not own_term and env.get("TERM") == "TERM=xterm":
            env.pop("TERM")
        for e in cfg.env:
            env[e.partition("=")[0]] = e
        proc["env"] = list(env.values())
        proc["terminal"] = bool(cfg.tty)
        if cfg.tty and console_size:  # sized before the process runs
            proc["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
        if cfg.working_dir:
            proc["cwd"] = cfg.working_dir
        if cfg.user:
            uid, gid, extra = ociconfig.resolve_user(cfg.user, self.containers.paths.rootfs(c.id))
            proc["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        if cfg.privileged:
            from conch.runtime.presets import ALL_CAPABILITIES

            caps = list(ALL_CAPABILITIES)
            proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        return proc


def _set_winsize(fd: int, height: int, width: int) -> None:
    import fcntl
    import struct
    import termios

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    except OSError:
        pass  # the exec ended meanwhile


class ExecProcess:
    """A started exec as the API pumps it (the shape of the asyncio Process it pumped
    when the runtime was conchd's child): ``stdin`` (a StreamWriter), ``stdout`` and
    ``stderr`` (StreamReaders), each None when not attached; ``pid`` (the process as
    the host sees it; 0 if it never ran); ``wait()``; ``returncode``; ``kill()``."""

    def __init__(self) -> None:
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self.pid = 0
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._pidfd: int | None = None
        self._conn: asyncio.StreamWriter | None = None  # to the shim, until the exit line
        self._transports: list = []
        self._drains: list = []

    async def _attach(self, name: str, fd: int) -> None:
        """Our end of one pipe as a stream (it owns ``fd``, closed here on failure)."""
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "wb" if name == "stdin" else "rb", buffering=0)
        try:
            if name == "stdin":
                transport, protocol = await loop.connect_write_pipe(
                    asyncio.streams.FlowControlMixin, pipe)
                self.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
            else:
                reader = asyncio.StreamReader(limit=2 ** 16)
                transport, _ = await loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(reader), pipe)
                setattr(self, name, reader)
        except BaseException:
            pipe.close()
            raise
        self._transports.append(transport)

    async def wait(self) -> int:
        await self._exited.wait()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL to the process (moby kills an exec whose client went away)."""
        if self.returncode is None and self._pidfd is not None:
            import signal

            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def release(self) -> None:
        """The API stops pumping (the session ended, the process may run on): what it
        still writes is read and dropped, as dockerd drops a detached exec's output,
        rather than filling the pipe (blocking it) or closing it (SIGPIPE). Stdin stays
        open until the process exits (a detach-keys detach leaves it open in docker)."""
        for reader in (self.stdout, self.stderr):
            if reader is not None and not reader.at_eof():
                self._drains.append(asyncio.ensure_future(_drain(reader)))

    def _exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()
        if self.stdin is not None:
            self.stdin.close()
        self._close_conn()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _close(self) -> None:
        """A start that failed: everything goes."""
        for transport in self._transports:
            transport.close()
        self._close_conn()


async def _drain(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass


def _console_listener() -> tuple[socket.socket, str]:
    """A listening socket (in a private temp dir) for the runtime's ``--console-socket``."""
    d = tempfile.mkdtemp(prefix="conch-exec-")
    path = os.path.join(d, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        listener.setblocking(False)
    except OSError:
        listener.close()
        _close_listener_path(path)
        raise
    return listener, path


def _close_listener(listener: socket.socket) -> None:
    path = listener.getsockname()
    listener.close()
    _close_listener_path(path)


def _close_listener_path(path: str) -> None:
    _unlink(path)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
