"""Pre-arming cgroup v1 migrations while the interpreter is still importing.

Moving a process into a cgroup takes the kernel's ``cgroup_threadgroup_rwsem`` for
writing; when no writer held it recently, that waits for a full RCU grace period
(measured 10-30 ms on this kind of VM) — longer than everything else a container start
does. Once a writer has passed, further writers are fast until one grace period after the
last one leaves. So, for ``create``/``run``, a background thread re-writes our own pid
into the cgroup we are already in (a no-op move) every few milliseconds, from the first
instant until the real move is done: the grace period elapses while we import and parse,
instead of after. ``_thread`` (not ``threading``) keeps this to a builtin import; the
thread only ever sits in write(2) or sleep, holding no lock a forked child could need.
Best effort: any error just ends the thread.
"""

import os

_state = {"stop": False}


def start() -> None:
    path = _own_procs_file()
    if path is None:
        return
    import _thread

    _thread.start_new_thread(_loop, (path,))


def stop() -> None:
    _state["stop"] = True


def _loop(path: str) -> None:
    import time

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    pid = str(os.getpid()).encode()
    try:
        for _ in range(100):  # at most ~0.3 s
            if _state["stop"]:
                break
            os.write(fd, pid)
            time.sleep(0.003)
    except OSError:
        pass
    finally:
        os.close(fd)


def _own_procs_file() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _num, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            if name in ("pids", "freezer", "cpu", "memory", "devices", "blkio"):
                candidate = f"/sys/fs/cgroup/{name}{path.rstrip('/')}/cgroup.procs"
                if os.path.exists(candidate):
                    return candidate
        if controllers == "":  # cgroup v2 unified line "0::/path"
            candidate = f"/sys/fs/cgroup{path.rstrip('/')}/cgroup.procs"
            if os.path.exists(candidate) and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                return candidate
    return None


class Armer:
    """The same pre-arming for a long-lived, multi-threaded process (conchd): ``arm(s)``
    keeps no-op migrations of this process going for the next ``s`` seconds (re-armable;
    one thread at a time), so that the grace period a container start would wait for in
    the runtime elapses while the engine is still handling the request (docker run's
    create, attach and wait come before its start). Between bursts nothing runs."""

    def __init__(self):
        import _thread

        self._path = _own_procs_file()
        self._lock = _thread.allocate_lock()
        self._deadline = 0.0
        self._running = False

    def arm(self, seconds: float) -> None:
        import _thread
        import time

        if self._path is None:
            return
        with self._lock:
            self._deadline = max(self._deadline, time.monotonic() + seconds)
            if self._running:
                return
            self._running = True
        _thread.start_new_thread(self._loop, ())

    def _loop(self) -> None:
        import time

        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            with self._lock:
                self._running = False
            return
        pid = str(os.getpid()).encode()
        try:
            while True:
                with self._lock:
                    if time.monotonic() >= self._deadline:
                        self._running = False
                        return
                try:
                    os.write(fd, pid)
                except OSError:
                    with self._lock:
                        self._running = False
                    return
                time.sleep(0.003)
        finally:
            os.close(fd)
