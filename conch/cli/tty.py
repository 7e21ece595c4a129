"""Attached streams: raw terminal, resize on SIGWINCH, the stdin pump and stdcopy demux.

Imported only by verbs that attach (run, start -a, attach, exec, logs for the demux), so
``conch ps`` never loads termios.

Order of a session (docker/cli ``hijack.go``): the terminal goes raw before any output is
copied; stdin is pumped on a thread and, when it ends, the write half of the socket is
shut down (``CloseWrite``) so the container sees EOF while its output keeps flowing; the
output is copied on the calling thread until the daemon closes the stream; the terminal
is restored on every path out.

Detach keys (default ctrl-p,ctrl-q) are detected here, on the client, as docker/cli's
escape proxy does: the bytes of a partial sequence are held back and sent on only if the
sequence does not complete.
"""

from __future__ import annotations

import os
import sys

# The C modules, not the signal, socket, struct and threading wrappers: those import
# enum, functools, collections... (~5 ms of every attached `conch run`).
import _signal as signal
from _socket import SHUT_RDWR
from _struct import unpack
from _thread import start_new_thread
TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Callable, Iterable, Iterator

STDIN, STDOUT, STDERR = 0, 1, 2
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


# -- stdcopy -----------------------------------------------------------------------------


class Demuxer:
    """Splits a stdcopy stream (8-byte header: stream, 0, 0, 0, big-endian length)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self._buf += data
        while len(self._buf) >= 8:
            stream = self._buf[0]
            (size,) = unpack(">I", self._buf[4:8])
            if len(self._buf) < 8 + size:
                break
            payload = bytes(self._buf[8 : 8 + size])
            del self._buf[: 8 + size]
            yield stream, payload


def demux(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    d = Demuxer()
    for chunk in chunks:
        yield from d.feed(chunk)


def write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# -- detach keys -----------------------------------------------------------------------------


def parse_detach_keys(spec: str) -> bytes:
    """docker's ``term.ToBytes``: 'ctrl-p,ctrl-q' -> b'\\x10\\x11'; single chars literal."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
            continue
        if not key.lower().startswith("ctrl-") or len(key) != 6:
            raise ValueError(f"Unknown character: '{key}'")
        ch = key[5].lower()
        if "a" <= ch <= "z":
            out.append(ord(ch) - ord("a") + 1)
        elif ch in "@[\\]^_":
            out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class EscapeProxy:
    """Holds back a partial detach sequence; ``feed`` returns (bytes to send, detached)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            if self.keys and b == self.keys[len(self.held)]:
                self.held.append(b)
                if len(self.held) == len(self.keys):
                    return bytes(out), True
                continue
            out += self.held
            self.held.clear()
            out.append(b)
        return bytes(out), False


# -- terminal ---------------------------------------------------------------------------------


def terminal_size(fd: int = STDOUT) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


class RawTerminal:
    """``with RawTerminal(fd):`` puts a terminal in raw mode and always restores it."""

    def __init__(self, fd: int = STDIN) -> None:
        self.fd = fd
        self.saved = None

    def __enter__(self) -> "RawTerminal":
        if os.isatty(self.fd):
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def watch_resize(resize: Callable[[int, int], None]) -> Callable[[], None]:
    """Call ``resize(h, w)`` now and on every SIGWINCH; returns the undo function."""

    def send(*_):
        size = terminal_size(STDOUT) or terminal_size(STDIN)
        if size:
            # off the signal handler: an HTTP request must not run inside it
            start_new_thread(_quiet, (resize, *size))

    send()
    try:
        previous = signal.signal(signal.SIGWINCH, send)
    except ValueError:  # not the main thread (tests)
        return lambda: None
    return lambda: signal.signal(signal.SIGWINCH, previous)


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # a resize that races the container's exit is harmless
        pass


PROXIED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
_SIGNAL_NAMES = {getattr(signal, name): name for name in PROXIED_SIGNALS}


def proxy_signals(kill: Callable[[str], None]) -> Callable[[], None]:
    """``--sig-proxy``: forward the signals we receive to the container (``kill(name)``)."""
    saved = {}

    def handler(signum, _frame):
        name = _SIGNAL_NAMES.get(signum, str(signum))
        start_new_thread(_quiet, (kill, name))

    for name in PROXIED_SIGNALS:
        sig = getattr(signal, name)
        try:
            saved[sig] = signal.signal(sig, handler)
        except ValueError:
            return lambda: None
    return lambda: [signal.signal(s, h) for s, h in saved.items()]


# -- the session ---------------------------------------------------------------------------------


class Session:
    """One hijacked attach/exec stream: pump stdin in, copy output out.

    ``sock`` is a ``conch.client.HijackedSocket`` (``recv``, ``send`` = sendall,
    ``close_write`` = half-close, ``close``).

    ``run()`` returns True when the user detached with the detach keys.
    """

    def __init__(self, sock, *, tty: bool, stdin: bool,
                 detach_keys: str | None = None, stdin_fd: int = STDIN,
                 stdout_fd: int = STDOUT, stderr_fd: int = STDERR) -> None:
        self.sock = sock
        self.tty = tty
        self.stdin = stdin
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        keys = detach_keys if detach_keys is not None else DEFAULT_DETACH_KEYS
        self.escape = EscapeProxy(parse_detach_keys(keys)) if tty and os.isatty(stdin_fd) else None
        self.detached = False

    def _pump(self) -> None:
        try:
            while True:
                data = os.read(self.stdin_fd, 32 * 1024)
                if not data:
                    break
                if self.escape is not None:
                    data, detached = self.escape.feed(data)
                    if data:
                        self.sock.send(data)
                    if detached:
                        self.detached = True
                        self._shutdown(SHUT_RDWR)
                        return
                    continue
                self.sock.send(data)
            self.sock.close_write()
        except OSError:
            pass

    def _shutdown(self, how: int) -> None:
        raw = getattr(self.sock, "sock", self.sock)
        try:
            raw.shutdown(how)
        except OSError:
            pass

    def run(self) -> bool:
        if self.stdin:
            start_new_thread(self._pump, ())  # a daemon thread: it may block on stdin
        demuxer = None if self.tty else Demuxer()
        try:
            while True:
                try:
                    data = self.sock.recv(64 * 1024)
                except OSError:
                    break
                if not data:
                    break
                if demuxer is None:
                    write_fd(self.stdout_fd, data)
                    continue
                for stream, payload in demuxer.feed(data):
                    write_fd(self.stderr_fd if stream == STDERR else self.stdout_fd, payload)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
        return self.detached


def stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (ValueError, OSError, AttributeError):
        return False
