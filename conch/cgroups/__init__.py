"""One cgroup manager interface over cgroup v1 and v2.

Contract
--------
:func:`open_manager` resolves an OCI ``cgroupsPath`` to one directory per hierarchy and
returns a :class:`Manager`; nothing touches the filesystem until ``create()``. The
runtime is short-lived, so every later verb (``kill --all``, ``pause``, ``ps``, ``exec``,
``delete``) rebuilds the manager with :func:`load_manager` from ``Manager.save()``, which
it keeps in its state file. Errors are conch kinds: InvalidArgument for a request that
is wrong or that conch does not implement, FailedPrecondition for something the host
kernel lacks (a controller, ``memory.memsw.*`` without swap accounting), and
SystemCallError (with errno and path) when the kernel refuses a write.

Which version is decided from ``/proc/self/mountinfo``, never assumed:

* **v2 (unified)**: cgroup2 is mounted *at* ``root``. One directory per container.
* **v1 (legacy or hybrid)**: cgroup v1 hierarchies are mounted *below* ``root``; a cgroup2
  mount below root (hybrid's ``root/unified``) is ignored, because on a hybrid host every
  controller is bound to v1 and the unified tree has none.

On-disk layout
--------------
cgroupfs is the only state; conch keeps nothing of its own here. With the default path
``/conch/<container-id>`` a container lives at::

    v2:  /sys/fs/cgroup/conch/<id>/                 cgroup.procs, cgroup.freeze, memory.max...
    v1:  /sys/fs/cgroup/<hierarchy>/conch/<id>/     one per mounted hierarchy, e.g.
         /sys/fs/cgroup/memory/conch/<id>/memory.limit_in_bytes
         /sys/fs/cgroup/systemd/conch/<id>/         (named hierarchy "name=systemd")

``Manager.save()`` records those directories and which of them (or their parents) this
manager created, so ``destroy()`` removes exactly what conch made and never a shared
parent it found already there.

cgroupsPath semantics follow runc's cgroupfs driver: an absolute path is relative to each
hierarchy's root, a relative path is relative to the calling process's own cgroup in that
hierarchy, empty means ``/conch/<container_id>``; systemd's ``slice:prefix:name`` becomes
``/<expanded slice>/<prefix>-<name>.scope`` (runc's cgroupfs fallback).

Kept stdlib-only and import-light: ``conch-runtime create`` imports this on every start;
``v1``/``v2`` are imported only when a manager of that version is built.
"""

# Import cost is part of the contract here. ``conch-runtime`` imports this package and one
# manager on every container start, and a whole start has a ~25 ms budget, so importing
# ``conch.cgroups`` + ``v1`` + ``v2`` + ``resources`` must stay under ~3 ms (bytecode
# cached) and pull in nothing beyond os/errno/time/posixpath.
# tests/unit/test_cgroups_import_cost.py guards the module list. Hence, deliberately
# unlike DESIGN.md's frozen-dataclass habit:
#   * records are plain ``__slots__`` classes on :class:`_Record`, not dataclasses
#     (``dataclasses`` imports ``inspect``, ~8 ms, and builds classes with exec at import);
#   * the :class:`Manager` Protocol lives in ``protocol.py`` (``typing`` ~2-3 ms) and is
#     served lazily by ``__getattr__`` below, so ``from conch.cgroups import Manager`` works;
#   * ``logging`` (~4-8 ms) and ``signal`` (pulls in ``enum``) are imported only on the
#     rare paths that need them.

from __future__ import annotations

import errno
import os
import posixpath
import time

from conch.errors import FailedPrecondition, InvalidArgument, SystemCallError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from conch.cgroups.protocol import Manager

DEFAULT_ROOT = "/sys/fs/cgroup"

# mountinfo super options that are hierarchy settings, not controller names.
_V1_NON_CONTROLLER_OPTIONS = {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"}


def __getattr__(name: str):
    # PEP 562: ``Manager`` is only for annotations and isinstance checks; load it on demand.
    if name == "Manager":
        from conch.cgroups.protocol import Manager

        globals()["Manager"] = Manager
        return Manager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Record:
    """An immutable value with keyword-only fields: what ``@dataclass(frozen=True,
    slots=True, kw_only=True)`` gave, without importing dataclasses.

    A subclass lists its fields in ``__slots__`` and sets them in a keyword-only
    ``__init__`` through :meth:`_set`. Equality, hashing and repr go field by field, in
    ``__slots__`` order.
    """

    __slots__ = ()

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def replace(self, **changes):
        """A copy with ``changes`` applied (``dataclasses.replace``); unknown names are a TypeError."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return type(self)(**fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__, self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self):
        # Pickle/copy through __init__ (slots without __dict__ and a blocking __setattr__).
        return _rebuild, (type(self), {name: getattr(self, name) for name in self.__slots__})


def _rebuild(cls, fields):
    return cls(**fields)


class Mount(_Record):
    """One cgroup filesystem mount from mountinfo."""

    __slots__ = ("mountpoint", "root", "fstype", "options")
    mountpoint: str
    root: str  # the cgroup mounted there, relative to the hierarchy root (often "/")
    fstype: str  # "cgroup" (v1) or "cgroup2"
    options: tuple[str, ...]  # v1: controllers and "name=..." in mount order

    def __init__(self, *, mountpoint: str, root: str, fstype: str, options: tuple[str, ...] = ()) -> None:
        self._set(mountpoint=mountpoint, root=root, fstype=fstype, options=options)


class Layout(_Record):
    __slots__ = ("version", "hybrid", "mounts", "unified")
    version: int  # 1 or 2
    hybrid: bool  # v1 controllers plus a cgroup2 mount below root
    mounts: tuple[Mount, ...]  # v2: the one mount at root; v1: the v1 hierarchies
    unified: Mount | None  # hybrid: the cgroup2 mount below root (e.g. .../unified)

    def __init__(self, *, version: int, hybrid: bool, mounts: tuple[Mount, ...],
                 unified: Mount | None = None) -> None:
        self._set(version=version, hybrid=hybrid, mounts=mounts, unified=unified)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in a /proc/PID/mountinfo text (proc(5) format)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if sep < 6 or len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        options: tuple[str, ...] = ()
        if fstype == "cgroup":
            options = tuple(
                opt
                for opt in fields[sep + 3].split(",")
                if opt not in _V1_NON_CONTROLLER_OPTIONS and not opt.startswith("release_agent=")
            )
        mounts.append(
            Mount(mountpoint=_unescape(fields[4]), root=_unescape(fields[3]), fstype=fstype, options=options)
        )
    return mounts


def detect(root: str = DEFAULT_ROOT, *, mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Which cgroup version manages ``root``, from the mount table (see module docstring)."""
    root = posixpath.normpath(root)
    try:
        with open(mountinfo) as f:
            mounts = parse_mountinfo(f.read())
    except OSError as exc:
        raise FailedPrecondition(f"cannot read {mountinfo}: {exc.strerror}") from exc
    # A later mount over the same point hides the earlier one: keep the last.
    at_root = [m for m in mounts if m.mountpoint == root]
    if at_root and at_root[-1].fstype == "cgroup2":
        return Layout(version=2, hybrid=False, mounts=(at_root[-1],))
    below = [m for m in mounts if m.mountpoint.startswith(root.rstrip("/") + "/")]
    v1: dict[frozenset[str], Mount] = {}
    for mount in below:
        if mount.fstype == "cgroup" and mount.options:
            v1.setdefault(frozenset(mount.options), mount)  # same hierarchy mounted twice
    if not v1:
        raise FailedPrecondition(f"no cgroup v1 or v2 hierarchy is mounted at {root}")
    unified = [m for m in below if m.fstype == "cgroup2"]
    return Layout(version=1, hybrid=bool(unified), mounts=tuple(v1.values()),
                  unified=unified[-1] if unified else None)


def own_cgroups(path: str = "/proc/self/cgroup") -> dict[frozenset[str], str]:
    """The calling process's cgroup per hierarchy: controller set → path (v2: frozenset())."""
    own: dict[frozenset[str], str] = {}
    with open(path) as f:
        for line in f:
            _id, controllers, cgroup = line.rstrip("\n").split(":", 2)
            own[frozenset(controllers.split(",")) if controllers else frozenset()] = cgroup
    return own


def _expand_slice(slice_: str) -> str:
    # systemd nests "a-b-c.slice" as /a.slice/a-b.slice/a-b-c.slice (runc ExpandSlice).
    if not slice_.endswith(".slice") or "/" in slice_:
        raise InvalidArgument(f"cgroupsPath: {slice_!r} is not a systemd slice name")
    name = slice_[: -len(".slice")]
    if name == "-":
        return "/"
    if name.startswith("-") or name.endswith("-") or "--" in name or not name:
        raise InvalidArgument(f"cgroupsPath: invalid slice name {slice_!r}")
    path, prefix = "", ""
    for part in name.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


def cgroup_subpath(cgroups_path: str | None, container_id: str) -> str:
    """Normalise an OCI cgroupsPath; absolute results are hierarchy-relative."""
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f"container id {container_id!r} cannot name a cgroup")
        return f"/conch/{container_id}"
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise InvalidArgument(f"cgroupsPath {cgroups_path!r}: expected 'slice:prefix:name'")
        slice_, prefix, name = parts
        if not name or "/" in name or "/" in prefix:
            raise InvalidArgument(f"cgroupsPath {cgroups_path!r}: bad prefix or name")
        unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix else f"{name}.scope")
        return posixpath.join(_expand_slice(slice_ or "system.slice"), unit)
    if ".." in cgroups_path.split("/"):
        raise InvalidArgument(f"cgroupsPath {cgroups_path!r} must not contain '..'")
    normal = posixpath.normpath(cgroups_path)
    if normal in ("/", "."):
        raise InvalidArgument(f"cgroupsPath {cgroups_path!r} names the hierarchy root, not a container")
    return normal


def _container_dir(mount: Mount, subpath: str, own: dict[frozenset[str], str]) -> str:
    base = "/"
    if not subpath.startswith("/"):
        key = frozenset(mount.options)
        if key not in own:
            raise FailedPrecondition(f"this process has no cgroup in hierarchy {','.join(mount.options) or 'cgroup2'}")
        base = own[key]
        # Inside a bind mount of a sub-cgroup, paths are relative to what is mounted.
        if mount.root != "/" and (base == mount.root or base.startswith(mount.root + "/")):
            base = base[len(mount.root) :] or "/"
    return posixpath.normpath(mount.mountpoint + "/" + posixpath.join(base, subpath).lstrip("/"))


def open_manager(cgroups_path: str | None, *, container_id: str, root: str = DEFAULT_ROOT) -> Manager:
    """A manager for the container's cgroup (not yet created; call ``create()``)."""
    subpath = cgroup_subpath(cgroups_path, container_id)
    layout = detect(root)
    own = own_cgroups() if not subpath.startswith("/") else {}
    if layout.version == 2:
        from conch.cgroups.v2 import V2Manager

        mount = layout.mounts[0]
        return V2Manager(_container_dir(mount, subpath, own), mountpoint=mount.mountpoint)
    from conch.cgroups.v1 import V1Manager

    dirs = {",".join(m.options): _container_dir(m, subpath, own) for m in layout.mounts}
    if layout.unified is not None:
        # Hybrid hosts: runc also places the container in the (controller-less) cgroup2
        # hierarchy, so /proc/self/cgroup's "0::" line names the container there too.
        # Keyed "" — no controller — so it is created, joined and removed with the rest.
        dirs[""] = _container_dir(layout.unified, subpath, own)
    return V1Manager(dirs)


def load_manager(saved: dict) -> Manager:
    """Rebuild a manager from ``Manager.save()`` (e.g. in a later runtime process)."""
    version = saved.get("version") if isinstance(saved, dict) else None
    if version == 2:
        from conch.cgroups.v2 import V2Manager

        return V2Manager.load(saved)
    if version == 1:
        from conch.cgroups.v1 import V1Manager

        return V1Manager.load(saved)
    raise InvalidArgument(f"saved cgroup manager has unknown version {version!r}")


# ---- cgroupfs file access shared by v1 and v2 ------------------------------------------


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


def remove_empty(subpath: str, *, root: str = DEFAULT_ROOT) -> None:
    """rmdir the cgroup ``subpath`` (e.g. "/conch") in every hierarchy if it is empty.

    For a parent shared by many containers, which no single container's manager owns:
    its owner (conchd, at shutdown) removes it once nothing lives there. A cgroup still
    in use (ENOTEMPTY/EBUSY) stays; a concurrent create under it remakes it (make_dirs).
    """
    try:
        layout = detect(root)
    except FailedPrecondition:
        return
    mounts = list(layout.mounts) + ([layout.unified] if layout.unified is not None else [])
    for mount in mounts:
        path = posixpath.normpath(mount.mountpoint + "/" + subpath.lstrip("/"))
        if path == mount.mountpoint:
            continue
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EBUSY):
                raise SystemCallError("rmdir", exc.errno or errno.EIO, path) from exc


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
    if not os.path.isdir(path):
        return
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
