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

import errno
import os
import posixpath

# The shared pieces live below the package (v1, v2 and resources import them, never the
# package), and are re-exported here, where callers have always found them.
from conch.cgroups.fs import (  # noqa: F401 - re-exports
    Write,
    make_dirs,
    read_keyed,
    read_value,
    remove_created_parents,
    remove_dir,
    run_plan,
    tree_procs,
    wait_until,
    write_value,
)
from conch.cgroups.record import _Record
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
    if normal.startswith("//"):  # normpath keeps a leading "//" (POSIX leaves it open)
        normal = "/" + normal.lstrip("/")
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


def open_manager(cgroups_path: str | None, *, container_id: str, root: str = DEFAULT_ROOT) -> "Manager":
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


def load_manager(saved: dict) -> "Manager":
    """Rebuild a manager from ``Manager.save()`` (e.g. in a later runtime process)."""
    version = saved.get("version") if isinstance(saved, dict) else None
    if version == 2:
        from conch.cgroups.v2 import V2Manager

        return V2Manager.load(saved)
    if version == 1:
        from conch.cgroups.v1 import V1Manager

        return V1Manager.load(saved)
    raise InvalidArgument(f"saved cgroup manager has unknown version {version!r}")


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
