"""Pre-arming cgroup v1 migrations while the interpreter is still importing.

Moving a process into a cgroup takes the kernel's ``cgroup_threadgroup_rwsem`` for
writing; when no writer held it recently, that waits for a full RCU grace period
(measured 10-30 ms on this kind of VM) — longer than everything else a container start
does — and it waits holding ``cgroup_mutex``, so every cgroup mkdir on the host waits
too. Once a writer has passed, further writers are fast until one grace period after the
last one leaves. So, for ``create``/``run``, a background thread re-writes our own pid
into the cgroup we are already in (a no-op move) every few milliseconds, from the first
instant until the real move is done: the grace period elapses while we import and parse,
instead of after. It is started as the runtime's very first step (``main.run``, before
even ``os`` is imported: this module needs only ``posix``), and :func:`start` returns
only once the thread holds the file open and is about to write, so the grace period's
clock starts then rather than whenever the thread first gets the GIL. ``_thread`` (not
``threading``) keeps this to a builtin import; the thread only ever sits in write(2) or
sleep, holding no lock a forked child could need. Best effort: any error just ends the
thread.
"""

import posix

_state = {"stop": False, "started": False}


def start() -> None:
    """Start the thread (once per process) and wait until its first write is under way."""
    if _state["started"]:
        return
    _state["started"] = True
    path = _own_procs_file()
    if path is None:
        return
    import _thread

    writing = _thread.allocate_lock()
    writing.acquire()
    _thread.start_new_thread(_loop, (path, writing))
    # released by the thread just before its first write(2), which drops the GIL for
    # the grace period: waiting here hands the GIL over at once, instead of letting
    # the imports that follow hold it for up to a switch interval (5 ms)
    writing.acquire(True, 0.05)


def stop() -> None:
    _state["stop"] = True


def _loop(path: str, writing) -> None:
    import time

    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    except OSError:
        writing.release()
        return
    pid = str(posix.getpid()).encode()
    writing.release()
    try:
        for _ in range(100):  # at most ~0.3 s
            if _state["stop"]:
                break
            posix.write(fd, pid)
            time.sleep(0.003)
    except OSError:
        pass
    finally:
        posix.close(fd)


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
        return True
    except OSError:
        return False


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
                if _exists(candidate):
                    return candidate
        if controllers == "":  # cgroup v2 unified line "0::/path"
            candidate = f"/sys/fs/cgroup{path.rstrip('/')}/cgroup.procs"
            if _exists(candidate) and _exists("/sys/fs/cgroup/cgroup.controllers"):
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
            fd = posix.open(self._path, posix.O_WRONLY | posix.O_CLOEXEC)
        except OSError:
            with self._lock:
                self._running = False
            return
        pid = str(posix.getpid()).encode()
        try:
            while True:
                with self._lock:
                    if time.monotonic() >= self._deadline:
                        self._running = False
                        return
                try:
                    posix.write(fd, pid)
                except OSError:
                    with self._lock:
                        self._running = False
                    return
                time.sleep(0.003)
        finally:
            posix.close(fd)
