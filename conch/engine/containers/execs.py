"""``docker exec``: processes started inside a running container.

An exec is run by ``conch-runtime exec`` in the foreground as conchd's child: the runtime
waits for the process and exits with its status, and its stdio pipes are the exec's
stdio. With ``-t`` the runtime makes the pty inside the container and hands its master
over ``--console-socket`` to conchd, which then holds it: the API pumps the master, and
``/exec/{id}/resize`` sets its window size (docker's CLI sends the size right after the
start, and on every SIGWINCH). Exec records live in memory, as in dockerd; they end with
the container or the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field, replace

from conch.errors import Conflict, NotFound


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

    def _binary(self, cid: str) -> str:
        """The container's runtime (HostConfig.Runtime), which must run its execs too."""
        rt_for = getattr(self.containers, "rt_for", None)
        return rt_for(cid).binary if rt_for is not None else self.runtime

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

    async def start(self, exec_id: str, *, console_size: tuple[int, int] | None = None
                    ) -> asyncio.subprocess.Process:
        """Start the exec; the caller owns the returned process's stdin/stdout/stderr
        pipes (which are None when not attached). With a tty, ``proc.stdout`` carries the
        runtime's own messages (an exec that fails to start) and :meth:`pty` the pty
        master (a duplicate the caller must close)."""
        ex = self.get(exec_id)
        if ex.running or ex.exit_code is not None:
            raise Conflict(f"Exec {exec_id} has already been started")
        c = self.containers.get(ex.container_id)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        process = self._process_json(c, ex.config, console_size or ex.config.console_size)
        fd, path = tempfile.mkstemp(prefix="exec-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(process, f)
        cfg = ex.config
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        if cfg.tty:
            proc = await self._start_tty(exec_id, c.id, path)
        else:
            proc = await asyncio.create_subprocess_exec(
                self._binary(c.id), "--root", self.runtime_root, "exec", "--process", path, c.id,
                stdin=pipe if cfg.attach_stdin else null,
                stdout=pipe if cfg.attach_stdout else null,
                stderr=pipe if cfg.attach_stderr else null)
        self._execs[exec_id] = replace(self._execs[exec_id], running=True, pid=proc.pid)
        watcher = self._watch(exec_id, proc, path)
        if self.tasks is not None:
            self.tasks.create_task(watcher)
        else:
            asyncio.get_running_loop().create_task(watcher)
        return proc

    async def _start_tty(self, exec_id: str, cid: str, process_path: str):
        """``exec --console-socket``: the runtime sends the pty master to a socket of
        ours (in a private temp dir) before it runs the process."""
        import socket

        d = tempfile.mkdtemp(prefix="conch-exec-")
        path = os.path.join(d, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.setblocking(False)
            proc = await asyncio.create_subprocess_exec(
                self._binary(cid), "--root", self.runtime_root, "exec", "--console-socket", path,
                "--process", process_path, cid, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            loop = asyncio.get_running_loop()
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait([accept, exited], timeout=60, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not accept.done():  # the runtime failed before making the pty: its message
                accept.cancel()    # is on proc.stdout for the caller
                return proc
            conn, _ = accept.result()
            with conn:
                # in a thread, bounded: a runtime that connects and sends nothing must not
                # stall the event loop (nor this request forever)
                conn.settimeout(10)
                try:
                    _msg, fds, _flags, _addr = await asyncio.to_thread(socket.recv_fds, conn, 4096, 4)
                except OSError:
                    fds = []
            for extra in fds[1:]:  # one pty master is expected; anything else is closed
                os.close(extra)
            if fds:
                self._ptys[exec_id] = fds[0]
                size = self._sizes.pop(exec_id, None)
                if size is not None:
                    _set_winsize(fds[0], *size)
            return proc
        finally:
            listener.close()
            try:
                os.unlink(path)
                os.rmdir(d)
            except OSError:
                pass

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

    async def _watch(self, exec_id: str, proc, path: str) -> None:
        code = await proc.wait()
        fd = self._ptys.pop(exec_id, None)
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        ex = self._execs.get(exec_id)
        if ex is not None:
            self._execs[exec_id] = replace(ex, running=False, exit_code=code)
            ex.done.set()

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
