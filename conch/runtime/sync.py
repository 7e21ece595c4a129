"""The parent/child sync protocol: one JSON object per line over a pair of pipes.

Pipes rather than a socketpair keep the ``socket`` module (and its enum imports) off the
hot path. Messages:

    C -> P  {"type": "userns"}                  C unshared a user namespace: write its maps
    P -> C  {"type": "mapped"}
    C -> P  {"type": "pid", "pid": N}           host pid of the container init (G); only
                                                with a user namespace (else P forked G)
    P -> G  {"type": "cgroup-dirs"}             the container's cgroup directories exist
    P -> G  {"type": "cgroup", "pid": N}        G is in its cgroup (resources applied)
    P -> C  {"type": "go"}                      (exec) C is in the cgroup: join and fork
    G -> P  {"type": "hooks"}                   G paused before pivot_root for prestart /
    P -> G  {"type": "hooks-done"}              createRuntime hooks run by P
    G -> P  {"type": "ready"}                   every step done; G now waits on exec.fifo
    any     {"type": "error", "step": S, "message": M, "errno": E}
"""

from conch.oci import fastjson as json  # no json module (re) on the hot path
import os

from conch.errors import ConchError, SystemCallError


class ChildFailed(ConchError):
    """A setup step in the container's process failed; carries the step's name."""

    def __init__(self, step: str, message: str, errno: int = 0):
        self.step = step
        self.errno = errno
        super().__init__(f"{step}: {message}" if step else message)


class Channel:
    """One end: a read fd and a write fd."""

    def __init__(self, rfd: int, wfd: int):
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a_r, b_w = os.pipe()
        b_r, a_w = os.pipe()
        return cls(a_r, a_w), cls(b_r, b_w)

    def send(self, **msg) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]

    def recv(self) -> dict:
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise ChildFailed("sync", "the other side exited before finishing setup")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def expect(self, kind: str) -> dict:
        """Receive one message; an error message from the other side is raised."""
        msg = self.recv()
        if msg.get("type") == "error":
            raise ChildFailed(msg.get("step", ""), msg.get("message", ""), msg.get("errno", 0))
        if msg.get("type") != kind:
            raise ChildFailed("sync", f"expected {kind!r}, got {msg.get('type')!r}")
        return msg

    def send_error(self, step: str, exc: BaseException) -> None:
        errno = exc.errno if isinstance(exc, (SystemCallError, OSError)) and exc.errno else 0
        if isinstance(exc, OSError) and not isinstance(exc, SystemCallError):
            message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        else:
            message = str(exc)
        try:
            self.send(type="error", step=step, message=message, errno=errno)
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
