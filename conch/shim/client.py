"""A small synchronous client for conch-shim (stdlib only); the contract is in the package
docstring (:mod:`conch.shim`).

- :func:`spawn` starts a shim for a bundle and waits for its ready line;
- :func:`attach` / :func:`read_frames` stream a running container's stdio;
- :func:`resize` / :func:`status` are one request, one reply;
- :func:`read_exit` reads the exit file (``None`` while the container runs);
- :func:`exec_request` runs a process in the container through its shim (the reply lines
  on the returned socket: :func:`parse_exec_reply`).

The engine (asyncio) calls these from a thread or wraps the returned socket itself; the
functions hold no state, so a restarted engine finds a shim again from its socket path.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from conch.errors import ConchError, FailedPrecondition, InvalidArgument, Unavailable

__all__ = ["STDOUT", "STDERR", "ShimInfo", "WarmShim", "WarmShimGone", "shim_binary", "spawn",
           "spawn_warm", "attach", "read_frames", "resize", "status", "read_exit",
           "exec_request", "exec_keep", "parse_exec_reply"]

# Where `make setup` builds the binary: <repo>/build/conch-shim.
_BUILT = Path(__file__).resolve().parents[2] / "build" / "conch-shim"

# Runtime messages that mean the user's command is wrong (docker answers these with 400
# and exit code 126/127) rather than the machine being unable to run it: an "exec" error
# with one of these (conch-runtime/runc: `exec: "/x": stat /x: no such file or
# directory`; crun: `executable file `x` not found in $PATH`).
_USER_ERRORS = ("no such file or directory", "executable file not found", "not found in $path",
                "permission denied", "is a directory", "not a directory")

STDOUT, STDERR = 1, 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ShimInfo:
    pid: int       # the container's init, as the host sees it
    shim_pid: int  # the shim (not our child: it double-forked)


def shim_binary() -> str:
    """The conch-shim executable: the repository's build, else one on PATH."""
    if _BUILT.exists():
        return str(_BUILT)
    found = shutil.which("conch-shim")
    if found:
        return found
    raise FailedPrecondition(f"conch-shim is not built ({_BUILT} missing): run `make setup`")


def spawn(*, id: str, bundle: str | os.PathLike, runtime: str, runtime_root: str | os.PathLike,
          exit_file: str | os.PathLike, socket_path: str | os.PathLike,
          log_path: str | os.PathLike, log_max_size: int | None = None,
          log_max_files: int | None = None, tty: bool = False, stdin: bool = False,
          no_start: bool = False,
          runtime_args: Sequence[str] = (), debug_log: str | os.PathLike | None = None,
          binary: str | None = None, timeout: float = 60.0,
          warm: "WarmShim | None" = None) -> ShimInfo:
    """Start a shim (which creates and starts the container) and wait for its ready line.

    With ``warm`` (from :func:`spawn_warm`, same runtime), that pre-started shim is used
    instead of a new one; it is consumed either way.

    Raises InvalidArgument for bad flags or a command/path the runtime cannot exec,
    FailedPrecondition for other runtime failures (the runtime's message in both), and
    Unavailable when the shim says nothing within ``timeout`` seconds.
    """
    options = ["--id", id, "--bundle", str(bundle), "--runtime", runtime,
               "--runtime-root", str(runtime_root), "--exit-file", str(exit_file),
               "--socket", str(socket_path), "--log-path", str(log_path)]
    if log_max_size is not None:
        options += ["--log-max-size", str(int(log_max_size))]
    if log_max_files is not None:
        options += ["--log-max-files", str(int(log_max_files))]
    if tty:
        options.append("--tty")
    if stdin:
        options.append("--stdin")
    if no_start:
        options.append("--no-start")
    for arg in runtime_args:
        options += ["--runtime-arg", arg]
    if debug_log is not None:
        options += ["--debug-log", str(debug_log)]
    if warm is not None:
        return _parse_ready(id, *warm.activate(options, timeout))

    proc = subprocess.Popen([binary or shim_binary(), *options], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
    try:
        line = _read_line(proc.stdout.fileno(), timeout)
    finally:
        proc.stdout.close()
        # The process we started exits as soon as the shim proper has forked.
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    return _parse_ready(id, line, rc)


def _parse_ready(id: str, line: str | None, rc: int) -> ShimInfo:
    if line is None:
        raise Unavailable(f"conch-shim for {id!r} did not report in time")
    if not line:
        raise Unavailable(f"conch-shim for {id!r} exited ({rc}) without reporting")
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ConchError(f"conch-shim for {id!r}: bad ready line {line!r}") from exc
    if "error" in msg:
        error = str(msg["error"])
        lower = error.lower()
        if rc == 2 or ("exec" in lower and any(s in lower for s in _USER_ERRORS)):
            raise InvalidArgument(error)
        raise FailedPrecondition(error)
    return ShimInfo(pid=int(msg["pid"]), shim_pid=int(msg["shim_pid"]))


class WarmShimGone(Unavailable):
    """A warm shim died before it was given a container (see :meth:`WarmShim.activate`)."""


class WarmShim:
    """A shim started ahead of time (``conch-shim --warm``) whose runtime has already
    paid its start-up (see shim/conch-shim.c, "warm mode"). The engine holds the socket;
    closing it (or the engine dying) makes the shim and its waiting runtime exit.
    Only for conch-runtime, which knows the ``warm`` command."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def activate(self, options: list[str], timeout: float) -> tuple[str | None, int]:
        """Send the start options; (ready line or "" at EOF or None on timeout, 0).

        Raises :class:`WarmShimGone` when the options could not even be sent (the shim
        died while waiting): nothing was started, so the caller may start a cold shim
        for the same container. Once they are sent, a silent shim is an error like a
        cold one's: it may have created the container already."""
        try:
            try:
                self.sock.sendall("\0".join(options).encode())
            except OSError as exc:
                raise WarmShimGone(f"the warm shim is gone: {exc.strerror or exc}") from exc
            return _read_line(self.sock.fileno(), timeout), 0
        finally:
            self.close()

    def alive(self) -> bool:
        """False once the shim has gone (its end closed: EOF or an error line queued)."""
        ready, _, _ = select.select([self.sock], [], [], 0)
        return not ready

    def close(self) -> None:
        self.sock.close()

    def discard(self, timeout: float) -> bool:
        """Tell the shim to go (EOF) and wait up to ``timeout`` seconds until it has gone:
        it kills and reaps its waiting runtime, then exits, and only then does its end
        of the socket close. True when it has gone. conchd's stop waits on this, so no
        warm shim or runtime is left behind when the stop returns (issue 15)."""
        deadline = time.monotonic() + timeout
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                ready, _, _ = select.select([self.sock], [], [], left)
                if ready and not self.sock.recv(4096):  # EOF (an error line may come first)
                    return True
        except OSError:
            return True  # its end is gone already (ECONNRESET, ENOTCONN)
        finally:
            self.sock.close()


def spawn_warm(*, runtime: str, runtime_root: str | os.PathLike, binary: str | None = None) -> WarmShim:
    """Start a warm shim for ``runtime`` (conch-runtime) and return it (~2 ms: the shim
    double-forks and the first child exits at once; the runtime starts behind it)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen([binary or shim_binary(), "--warm", "--runtime", runtime,
                                 "--runtime-root", str(runtime_root)],
                                stdin=subprocess.DEVNULL, stdout=theirs,
                                stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    proc.wait()
    return WarmShim(ours)


def _read_line(fd: int, timeout: float) -> str | None:
    """One line from fd: "" at EOF without one, None on timeout."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.partition(b"\n")[0].decode(errors="replace")


def _connect(socket_path: str | os.PathLike, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"shim socket {str(socket_path)!r}: {exc.strerror or exc}") from exc
    return sock


def _request(socket_path: str | os.PathLike, request: dict, timeout: float,
             fds: Sequence[int] = ()) -> dict:
    """One request line (with ``fds`` passed as SCM_RIGHTS), one JSON reply line."""
    with _connect(socket_path, timeout) as sock:
        try:
            line = json.dumps(request).encode() + b"\n"
            if fds:
                socket.send_fds(sock, [line], list(fds))
            else:
                sock.sendall(line)
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise Unavailable(f"shim socket {str(socket_path)!r}: {exc}") from exc
    try:
        return json.loads(data.partition(b"\n")[0])
    except ValueError as exc:
        raise ConchError(f"shim at {str(socket_path)!r}: bad reply {data!r}") from exc


def attach(socket_path: str | os.PathLike, stdin: bool = False, stdout: bool = True,
           stderr: bool = True, *, stdin_once: bool = False,
           timeout: float | None = None) -> socket.socket:
    """A socket streaming the container's live output (multiplexed frames without a tty,
    raw bytes with one; see :func:`read_frames`). With ``stdin``, what is sent on it goes
    to the container; ``sock.shutdown(SHUT_WR)`` closes the container's stdin when
    ``stdin_once``. The caller owns (and closes) the socket."""
    sock = _connect(socket_path, timeout)
    request = {"type": "attach", "stdin": bool(stdin), "stdout": bool(stdout),
               "stderr": bool(stderr), "stdin_once": bool(stdin_once)}
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
    except OSError as exc:
        sock.close()
        raise Unavailable(f"shim socket {str(socket_path)!r}: {exc}") from exc
    return sock


def read_frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) pairs from a non-tty attach socket until the shim hangs up
    (stream 1 = stdout, 2 = stderr: docker's multiplexed stream format)."""
    buf = b""
    while True:
        while len(buf) >= 8:
            stream, length = struct.unpack(">BxxxI", buf[:8])
            if len(buf) < 8 + length:
                break
            yield stream, buf[8:8 + length]
            buf = buf[8 + length:]
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return
        buf += chunk


def resize(socket_path: str | os.PathLike, height: int, width: int,
           timeout: float = 5.0) -> None:
    """Set the container's pty size (TIOCSWINSZ on the master)."""
    reply = _request(socket_path, {"type": "resize", "height": int(height),
                                   "width": int(width)}, timeout)
    if not reply.get("ok"):
        raise FailedPrecondition(f"resize: {reply.get('error', reply)}")


def status(socket_path: str | os.PathLike, timeout: float = 5.0) -> dict:
    """``{"pid": N, "running": bool}`` from a live shim; Unavailable when none answers."""
    return _request(socket_path, {"type": "status"}, timeout)


def read_exit(path: str | os.PathLike) -> dict | None:
    """The exit file (``{"exit_code", "signal", "exited_at"}``), or None if not written
    yet. The shim renames it into place, so a file that exists is complete."""
    try:
        data = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConchError(f"exit file {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ConchError(f"exit file {str(path)!r} is corrupt: {data!r}") from exc


def exec_request(socket_path: str | os.PathLike, *, process: str | os.PathLike,
                 pid_file: str | os.PathLike, exit_file: str | os.PathLike,
                 stdio: Sequence[int], console_socket: str | os.PathLike | None = None,
                 keep: Sequence[int] = (), timeout: float | None = 10.0) -> socket.socket:
    """Ask the shim to run ``RUNTIME exec --detach`` for the process JSON at ``process``
    with ``stdio`` (three fds: stdin, stdout, stderr; the caller still closes its own
    copies) as its stdio. The returned socket (the caller's) carries the replies, one
    JSON line each: ``{"pid": N}`` once the process runs, then its exit line (also
    written to ``exit_file``), or only the exit line if the runtime failed; see
    :func:`parse_exec_reply`. Closing it does not stop the process. ``keep`` (at most
    three): the caller's own ends of the process's output pipes, which the shim holds
    and drains once this connection is gone (so the process neither gets EPIPE nor
    blocks when the engine dies)."""
    request = {"type": "exec", "process": str(process), "pid_file": str(pid_file),
               "exit_file": str(exit_file)}
    if console_socket is not None:
        request["console_socket"] = str(console_socket)
    if len(stdio) != 3 or len(keep) > 3:
        raise InvalidArgument("exec_request wants three fds (stdin, stdout, stderr) and at "
                              "most three to keep")
    sock = _connect(socket_path, timeout)
    try:
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [*stdio, *keep])
    except OSError as exc:
        sock.close()
        raise Unavailable(f"shim socket {str(socket_path)!r}: {exc.strerror or exc}") from exc
    return sock


def exec_keep(socket_path: str | os.PathLike, pid: int, fd: int, timeout: float = 10.0) -> None:
    """Hand the shim one more fd of the engine's for the running exec ``pid`` to hold
    and drain once the engine is gone (a tty exec's pty master: then the process gets
    no SIGHUP when conchd dies). The caller still closes its ``fd``."""
    reply = _request(socket_path, {"type": "keep", "pid": int(pid)}, timeout, [fd])
    if not reply.get("ok"):
        raise FailedPrecondition(f"exec keep: {reply.get('error', reply)}")


def parse_exec_reply(line: bytes | str) -> dict:
    """One reply line of :func:`exec_request`: ``{"pid": N}``, an exit line
    (``{"exit_code", "signal", "exited_at", "pid"}``); ``{"error": ...}`` (the shim refused
    the request) raises FailedPrecondition."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ConchError(f"conch-shim: bad exec reply {line!r}") from exc
    if not isinstance(msg, dict):
        raise ConchError(f"conch-shim: bad exec reply {line!r}")
    if "error" in msg:
        raise FailedPrecondition(f"exec: {msg['error']}")
    return msg
