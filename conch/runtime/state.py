"""The container's durable record under ``<root>/<id>/`` and its status.

The status is never trusted from disk alone: it is derived from whether the recorded
init process is still the same process (pid *and* its start time, so a recycled pid is
not mistaken for our container), whether ``exec.fifo`` still exists (created, not yet
started) and whether the cgroup is frozen (paused). Records are plain slotted classes
rather than dataclasses: importing ``dataclasses`` pulls in ``inspect`` and costs
milliseconds on every container start.
"""

from conch.oci import fastjson as json  # no json module (re) on the hot path
import os

from conch.errors import AlreadyExists, InvalidArgument, NotFound

OCI_VERSION = "1.2.0"
DEFAULT_ROOT = "/run/conch-runtime"

_FIELDS = ("id", "bundle", "pid", "pid_start", "created", "status", "annotations",
           "cgroup", "creator_pid", "rootfs", "config_path", "owner")


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
                 creator_pid: int = 0, rootfs: str = "", config_path: str = "", owner: str = ""):
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

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    # -- persistence ---------------------------------------------------------------
    @classmethod
    def new(cls, root: str, cid: str, **kw) -> "State":
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
        d = os.path.join(root, cid)
        try:
            with open(os.path.join(d, "state.json"), "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            if os.path.isdir(d):
                # killed before the first write: a bare directory that delete can remove
                return cls(dir=d, id=cid, bundle="", status="creating")
            raise NotFound(f"container {cid!r} does not exist") from None
        except ValueError as exc:
            raise InvalidArgument(f"state of container {cid!r} is corrupt: {exc}") from exc
        return cls(dir=d, **{k: data[k] for k in _FIELDS if k in data})

    def save(self) -> None:
        data = {k: getattr(self, k) for k in _FIELDS}
        path = os.path.join(self.dir, "state.json")
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(data).encode())
        finally:
            os.close(fd)
        # Atomic against a killed runtime (rename), and not fsynced, as runc's: the record
        # describes processes, which a power loss ends anyway, and it normally lives on
        # tmpfs (/run). On a disk-backed --root, three fsyncs cost ~4 ms per create.
        os.replace(tmp, path)

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
        if os.path.exists(self.fifo):
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
        return sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    except FileNotFoundError:
        return []


def remove_state_dir(path: str) -> None:
    """The state dir holds only plain files; shutil would import zlib, bz2 and lzma."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
