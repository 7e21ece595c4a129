"""cgroupfs file access shared by the v1 and v2 managers: planned writes, reading and
writing control files, making and removing cgroup directories, polling.

Errors are conch kinds (FailedPrecondition for a file the host lacks, SystemCallError
with errno and path when the kernel refuses). Stdlib-only and import-light, as the rest
of the package.
"""

import errno
import os
import time

from conch.cgroups.record import _Record
from conch.errors import FailedPrecondition, SystemCallError


class Write(_Record):
    """One planned write; ``apply`` checks every file exists before writing any."""

    __slots__ = ("dir", "name", "value", "tolerate")
    dir: str
    name: str
    value: str
    tolerate: int  # an errno to ignore (a write that is retried later in the plan)

    def __init__(self, *, dir: str, name: str, value: str, tolerate: int = 0) -> None:
        self._set(dir=dir, name=name, value=value, tolerate=tolerate)


def read_value(dir: str, name: str) -> str:
    path = os.path.join(dir, name)
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError as exc:
        raise FailedPrecondition(f"cgroup file {path} is missing (controller not available?)") from exc
    except OSError as exc:
        raise SystemCallError("read", exc.errno or errno.EIO, path) from exc


def read_keyed(dir: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line: memory.stat, cpu.stat, *.events)."""
    values = {}
    for line in read_value(dir, name).splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def write_value(dir: str, name: str, value: str) -> None:
    path = os.path.join(dir, name)
    try:
        # No O_CREAT: cgroupfs files exist or the feature is absent.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise FailedPrecondition(f"cgroup file {path} is missing (controller not available?)") from exc
    except OSError as exc:
        raise SystemCallError("open", exc.errno or errno.EIO, path) from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise SystemCallError("write", exc.errno or errno.EIO, path, detail=f"value {value!r}") from exc
    finally:
        os.close(fd)


def run_plan(plan: list[Write]) -> None:
    """Write a plan in order, after checking every file exists (no half-applied limits)."""
    missing = sorted({os.path.join(w.dir, w.name) for w in plan if not os.path.exists(os.path.join(w.dir, w.name))})
    if missing:
        raise FailedPrecondition("this host's cgroups lack " + ", ".join(missing))
    for write in plan:
        try:
            write_value(write.dir, write.name, write.value)
        except SystemCallError as exc:
            if not write.tolerate or exc.errno != write.tolerate:
                raise


def make_dirs(dir: str) -> list[str]:
    """mkdir -p; returns the directories created here, top-down."""
    missing = []
    probe = dir
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    created = []
    for path in reversed(missing):
        for attempt in range(5):
            try:
                os.mkdir(path, 0o755)
                created.append(path)
                break
            except FileExistsError:
                break  # a concurrent create made it; it is not ours to remove
            except FileNotFoundError:
                # a shared parent was removed meanwhile as empty (remove_empty): remake it
                if attempt == 4:
                    raise SystemCallError("mkdir", errno.ENOENT, path) from None
                created.extend(make_dirs(os.path.dirname(path)))
            except OSError as exc:
                raise SystemCallError("mkdir", exc.errno or errno.EIO, path) from exc
    return created


def tree_procs(dir: str) -> list[int]:
    """Every pid in cgroup.procs of ``dir`` and its descendants."""
    pids: list[int] = []
    for current, _subdirs, _files in os.walk(dir):
        try:
            with open(os.path.join(current, "cgroup.procs")) as f:
                pids.extend(int(line) for line in f if line.strip())
        except FileNotFoundError:
            continue  # removed while walking
    return pids


def remove_dir(path: str, *, timeout: float = 2.0) -> None:
    """rmdir a cgroup and its descendants, deepest first, retrying EBUSY while tasks exit."""
    try:
        os.rmdir(path)  # the common case, tried first: no child cgroups, no tasks left
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise SystemCallError("rmdir", exc.errno or errno.EIO, path) from exc
    # children to remove first, or tasks still exiting: walk (scandir of every control
    # file in every directory: ~25 us a directory, 12 hierarchies on v1) and retry
    for current, subdirs, _files in os.walk(path, topdown=False):
        for sub in subdirs:
            _rmdir_retry(os.path.join(current, sub), timeout)
    _rmdir_retry(path, timeout)


def _rmdir_retry(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise SystemCallError("rmdir", exc.errno or errno.EIO, path, detail="processes still in the cgroup?") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def remove_created_parents(created: list[str], leaf: str) -> None:
    """rmdir the parents of ``leaf`` that we created, bottom-up; stop at one in use."""
    ancestors = (p for p in created if leaf.startswith(p.rstrip("/") + "/"))
    for path in sorted(ancestors, key=len, reverse=True):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            # EBUSY/ENOTEMPTY: another container's cgroup lives here too; it stays.
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return
            raise SystemCallError("rmdir", exc.errno or errno.EIO, path) from exc


def wait_until(predicate, *, timeout: float) -> bool:
    """Poll ``predicate`` with backoff; True when it held before ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
