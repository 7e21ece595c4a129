"""The container's durable record under ``<root>/<id>/`` and its status.

The status is never trusted from disk alone: it is derived from whether the recorded
init process is still the same process (pid *and* its start time, so a recycled pid is
not mistaken for our container), whether ``exec.fifo`` still exists (created, not yet
started) and whether the cgroup is frozen (paused). Records are plain slotted classes
rather than dataclasses: importing ``dataclasses`` pulls in ``inspect`` and costs
milliseconds on every container start. It uses ``posix`` rather than ``os`` (~1.5 ms to
import, with _collections_abc and posixpath): ``state``, ``start`` and ``delete`` load
records without ever importing ``os`` (see ``conch.runtime.fastpath``).
"""

from conch.oci import fastjson as json  # no json module (re) on the hot path
import posix

from conch.errors import AlreadyExists, InvalidArgument, NotFound

OCI_VERSION = "1.2.0"
DEFAULT_ROOT = "/run/conch-runtime"

# "hooks": the kinds of hook config.json had at create (None in records written before
# the field existed), so that start and delete read config.json only when it has theirs
_FIELDS = ("id", "bundle", "pid", "pid_start", "created", "status", "annotations",
           "cgroup", "creator_pid", "rootfs", "config_path", "owner", "hooks")


def valid_id(cid: str) -> str:
    # runc's rule: letters, digits, and _ + - . ; not "." or ".." (it names a directory)
    ok = cid and cid not in (".", "..") and all(
        c.isascii() and (c.isalnum() or c in "_+-.") for c in cid)
    if not ok:
        raise InvalidArgument(f"invalid container id {cid!r}: use letters, digits, '_', '+', '-', '.'")
    return cid


class State:
    __slots__ = _FIELDS + ("dir",)

    def __init__(self, *, dir: str, id: str, bundle: str, pid: int = 0, pid_start: int = 0,
                 created: str = "", status: str = "creating", annotations=None, cgroup=None,
                 creator_pid: int = 0, rootfs: str = "", config_path: str = "", owner: str = "",
                 hooks: list | None = None):
        self.dir = dir
        self.id = id
        self.bundle = bundle
        self.pid = pid
        self.pid_start = pid_start
        self.created = created
        self.status = status
        self.annotations = annotations or {}
        self.cgroup = cgroup
        self.creator_pid = creator_pid
        self.rootfs = rootfs
        self.config_path = config_path
        self.owner = owner
        self.hooks = hooks

    @property
    def fifo(self) -> str:
        return f"{self.dir}/exec.fifo"

    def may_have_hooks(self, kind: str) -> bool:
        """Whether config.json may hold ``kind`` hooks (it is read only if so)."""
        return self.hooks is None or kind in self.hooks

    # -- persistence ---------------------------------------------------------------
    @classmethod
    def new(cls, root: str, cid: str, **kw) -> "State":
        import os

        valid_id(cid)
        os.makedirs(root, mode=0o711, exist_ok=True)
        d = os.path.join(root, cid)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id {cid!r} already exists") from None
        return cls(dir=d, id=cid, **kw)

    @classmethod
    def load(cls, root: str, cid: str) -> "State":
        valid_id(cid)
        d = _join(root, cid)
        try:
            with open(f"{d}/state.json", "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            if _is_dir(d):
                # killed before the first write: a bare directory that delete can remove
                return cls(dir=d, id=cid, bundle="", status="creating")
            raise NotFound(f"container {cid!r} does not exist") from None
        except ValueError as exc:
            raise InvalidArgument(f"state of container {cid!r} is corrupt: {exc}") from exc
        return cls(dir=d, **{k: data[k] for k in _FIELDS if k in data})

    def save(self) -> None:
        data = {k: getattr(self, k) for k in _FIELDS}
        path = f"{self.dir}/state.json"
        tmp = path + ".tmp"
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
        try:
            posix.write(fd, json.dumps(data).encode())
        finally:
            posix.close(fd)
        # Atomic against a killed runtime (rename), and not fsynced, as runc's: the record
        # describes processes, which a power loss ends anyway, and it normally lives on
        # tmpfs (/run). On a disk-backed --root, three fsyncs cost ~4 ms per create.
        posix.replace(tmp, path)
        if self.status == "created":
            self._save_front()

    def _save_front(self) -> None:
        """``state.front``, for the C front (shim/conch-runtime.c) to answer ``state``
        without starting Python, and ``start`` when config.json has no poststart hooks:
        line 1 "PID PID_START START" (START: 1 when the front may start the container
        itself, else 0), line 2 where the cgroup says it is frozen (see
        :func:`freezer_file`: "v1 PATH", "v2 PATH" or "none"), then what ``state`` prints
        for each status of :data:`FRONT_STATUSES`, each ended by a NUL.
        Written once, when create records "created": nothing it holds changes later, and
        the status itself the front derives as :meth:`current_status` does. Without the
        file (a record still "creating", an unknown cgroup record) the front runs Python."""
        freezer = freezer_file(self.cgroup)
        if freezer is None or self.pid <= 0:
            return
        start = int(not self.may_have_hooks("poststart"))
        parts = [f"{self.pid} {self.pid_start} {start}\n{' '.join(freezer) or 'none'}\n".encode()]
        parts += [json.dumps_pretty(self.oci(status)).encode() + b"\n\0" for status in FRONT_STATUSES]
        path = f"{self.dir}/state.front"
        fd = posix.open(path + ".tmp", posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
        try:
            posix.write(fd, b"".join(parts))
        finally:
            posix.close(fd)
        posix.replace(path + ".tmp", path)

    # -- liveness ------------------------------------------------------------------
    def alive(self) -> bool:
        return self.pid > 0 and process_start(self.pid) == self.pid_start

    def current_status(self, cgroup_frozen=None) -> str:
        if self.status == "creating" or self.pid <= 0:
            if self.creator_pid and process_start(self.creator_pid) is not None:
                return "creating"
            return "stopped"
        if not self.alive():
            return "stopped"
        if _exists(self.fifo):
            return "created"
        if cgroup_frozen is not None and cgroup_frozen():
            return "paused"
        return "running"

    def oci(self, status: str) -> dict:
        """The state object of runtime-spec's "state" operation."""
        out = {"ociVersion": OCI_VERSION, "id": self.id, "status": status,
               "bundle": self.bundle}
        if status in ("created", "running", "paused"):
            out["pid"] = self.pid
        else:
            out["pid"] = 0
        if self.annotations:
            out["annotations"] = self.annotations
        return out


# the order of the renderings in state.front (shim/conch-runtime.c reads them so)
FRONT_STATUSES = ("created", "running", "paused", "stopped")


def freezer_file(saved) -> tuple[str, ...] | None:
    """Where a saved cgroup record (conch.cgroups' ``Manager.save()``) says whether the
    cgroup is frozen, read without the managers: ("v1", freezer.state's path), ("v2",
    cgroup.events' path), () when there is no freezer (never paused), None for a record
    of a kind not known here."""
    if not saved:
        return ()
    if saved.get("version") == 1 and isinstance(saved.get("dirs"), dict):
        for options, d in saved["dirs"].items():
            if "freezer" in options.split(","):
                return ("v1", f"{d}/freezer.state")
        return ()
    if saved.get("version") == 2 and isinstance(saved.get("dir"), str):
        return ("v2", f"{saved['dir']}/cgroup.events")
    return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None
    when there is no such live process (zombies count as dead: they will never run)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def list_ids(root: str) -> list[str]:
    try:
        return sorted(e for e in posix.listdir(root) if _is_dir(_join(root, e)))
    except FileNotFoundError:
        return []


def remove_state_dir(path: str) -> None:
    """The state dir holds only plain files; shutil would import zlib, bz2 and lzma."""
    try:
        names = posix.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            posix.unlink(f"{path}/{name}")
        except FileNotFoundError:
            pass
    try:
        posix.rmdir(path)
    except FileNotFoundError:
        pass


# os.path's few pieces used here, on posix

def _join(root: str, name: str) -> str:
    return root + name if not root or root.endswith("/") else f"{root}/{name}"


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _is_dir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & 0o170000 == 0o040000
    except (OSError, ValueError):
        return False
