"""``state``, ``start`` and ``delete`` for the common case, on ``posix`` alone.

A shim (or containerd, or podman) starts four runtime processes per container: create,
start, state and delete, and each pays the interpreter's start-up (~10 ms) plus what it
imports. The general verbs (``commands``) import ``os`` (~1.5 ms with
_collections_abc and posixpath), the cgroup managers (~1 ms) and more. Here the common
case runs on the state record (``state``, itself on ``posix``) and a few cgroup control
files read directly:

* ``state``: a container whose record is complete;
* ``start``: a created container whose config.json had no poststart hooks;
* ``delete``: a stopped container without poststop hooks, whose cgroup has no process,
  no child cgroup and no parent that this container made.

(The C front, shim/conch-runtime.c, does ``state`` and this ``start`` itself from the
``state.front`` file create leaves; these run when it cannot, or without the front.)

Anything else, and any failure before the first change to the host, returns None, and
``main`` runs the general verb from the beginning, which then reports the error in its
own words. Past the first change: ``start`` raises what the general verb would (the
fifo is shared, :func:`release_init`); ``delete`` hands a half-done removal to the
general verb, which finishes what is left (a missing cgroup is no error there).
"""

import posix

from conch.runtime.state import State, freezer_file

VERBS = ("state", "start", "delete")


def run(o) -> int | None:
    """Run verb ``o.command`` if this is the common case; None when it is not."""
    try:
        state = State.load(o.root, o.id)
    except Exception:  # noqa: BLE001 - missing, corrupt or a bad id: the general verb says
        return None
    if state.status == "creating" or state.pid <= 0:
        return None
    frozen = _frozen_probe(state.cgroup)
    if frozen is None:
        return None
    status = state.current_status(frozen)
    if o.command == "state":
        from conch.oci import fastjson

        print(fastjson.dumps_pretty(state.oci(status)))
        return 0
    if o.command == "start":
        if status != "created" or state.may_have_hooks("poststart"):
            return None
        posix.close(release_init(state))
        return 0
    if o.command == "delete":
        return _delete_stopped(state) if status == "stopped" else None
    return None


def release_init(state: State) -> int:
    """Let the created container's init go on to exec: open exec.fifo (the init, blocked
    opening its write end, writes one byte once a reader exists), read the byte, remove
    the fifo and record "running". Returns the fifo's fd: the init holds the write end
    open until its execve, so EOF on it says the user process runs."""
    import select

    fd = posix.open(state.fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    try:
        # poll, so that an init that died meanwhile does not hang us forever
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and posix.read(fd, 1):
                break
            if not state.alive():
                from conch.errors import FailedPrecondition

                raise FailedPrecondition(f"container {state.id!r} init process exited before start")
        posix.unlink(state.fifo)
        state.status = "running"
        state.save()
    except BaseException:
        posix.close(fd)
        raise
    return fd


def _delete_stopped(state: State) -> int | None:
    from conch.runtime.state import remove_state_dir

    if state.may_have_hooks("poststop"):
        return None
    dirs = _cgroup_dirs(state.cgroup)
    if dirs is None:
        return None
    if dirs:
        created = (state.cgroup or {}).get("created") or ()
        if any(d.startswith(c.rstrip("/") + "/") for c in created for d in dirs):
            return None  # a parent of ours to remove if empty: the general verb does it
        if _busy(_procs_dir(state.cgroup)):
            return None  # left-over processes to kill, or child cgroups: the general verb
    for d in dirs:
        try:
            posix.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            return None  # EBUSY/ENOTEMPTY: the general verb waits, walks and retries
    remove_state_dir(state.dir)
    return 0


# -- the saved cgroup record (conch.cgroups' Manager.save()), read without the managers

def _cgroup_dirs(saved) -> list[str] | None:
    if not saved:
        return []
    if saved.get("version") == 1 and isinstance(saved.get("dirs"), dict):
        return list(saved["dirs"].values())
    if saved.get("version") == 2 and isinstance(saved.get("dir"), str):
        return [saved["dir"]]
    return None


def _controller_dir(saved: dict, controller: str) -> str | None:
    for options, d in saved["dirs"].items():
        if controller in options.split(","):
            return d
    return None


def _procs_dir(saved: dict) -> str:
    """The directory whose processes the managers' ``pids()`` lists."""
    if saved["version"] == 2:
        return saved["dir"]
    for controller in ("pids", "freezer", "memory", "cpu", "devices"):
        d = _controller_dir(saved, controller)
        if d is not None:
            return d
    return next(iter(saved["dirs"].values()))


def _busy(d: str) -> bool:
    try:
        with open(f"{d}/cgroup.procs", "rb") as f:
            if f.read().strip():
                return True
        with posix.scandir(d) as entries:
            return any(e.is_dir(follow_symlinks=False) for e in entries)
    except FileNotFoundError:
        return False  # already removed
    except OSError:
        return True  # unreadable: let the general verb look


def _frozen_probe(saved):
    """A function telling whether the cgroup is frozen (paused), as the managers'
    ``frozen()``; None for a record this module does not know."""
    where = freezer_file(saved)
    if where is None:
        return None
    if not where:
        return lambda: False
    kind, path = where
    if kind == "v1":
        return lambda: _read(path) == b"FROZEN"
    return lambda: b"frozen 1" in _read(path).split(b"\n")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError:
        return b""  # no freezer file: never paused (as commands' probe)
