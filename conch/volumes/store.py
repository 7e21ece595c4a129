"""``VolumeStore``: Docker's ``local`` volume driver over a directory (layout and
contract in ``conch.volumes``)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from conch.errors import Conflict, InvalidArgument, NotFound
from conch.volumes import localopts

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
#: moby's volume name rule (``names.RestrictedNamePattern``)
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

InUse = Callable[[str], list[str]]


def _nobody(_name: str) -> list[str]:
    return []


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str
    driver: str
    mountpoint: str
    created_at: str
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    scope: str = "local"

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    deleted: tuple[str, ...] = ()
    space_reclaimed: int = 0


def validate_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local '
                              'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you '
                              "intended to pass a host directory, use absolute path")
    return name


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class VolumeStore:
    def __init__(self, root) -> None:
        self.root = str(root)
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self._lock = threading.RLock()

    # -- paths ----------------------------------------------------------------------
    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _meta(self, name: str) -> str:
        return os.path.join(self._dir(name), "meta.json")

    def data_dir(self, name: str) -> str:
        return os.path.join(self._dir(name), "_data")

    # -- records --------------------------------------------------------------------
    def _read(self, name: str) -> Volume | None:
        try:
            with open(self._meta(name)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        return Volume(name=name, driver=meta.get("driver", "local"), mountpoint=self.data_dir(name),
                      created_at=meta.get("created_at", ""), labels=dict(meta.get("labels") or {}),
                      options=dict(meta.get("options") or {}))

    def _write(self, v: Volume) -> None:
        path = self._meta(v.name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"name": v.name, "driver": v.driver, "created_at": v.created_at,
                       "labels": v.labels, "options": v.options}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(self._dir(v.name), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- API ------------------------------------------------------------------------
    def create(self, name: str | None = None, driver: str = "local", labels: dict | None = None,
               options: dict | None = None) -> Volume:
        return self.ensure(name, driver=driver, labels=labels, options=options)[0]

    def ensure(self, name: str | None = None, *, driver: str = "local", labels: dict | None = None,
               options: dict | None = None) -> tuple[Volume, bool]:
        """``create``, also saying whether the volume is new (copy-up fills only new ones)."""
        driver = driver or "local"
        if driver != "local":
            raise InvalidArgument(f"create {name or ''}: error looking up volume plugin {driver}: "
                                  "plugin not found")
        if not name:
            # a volume made without a name is anonymous, whoever asks (moby
            # volume/service.Create): the default prune removes it
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        name = validate_name(name) if name else secrets.token_hex(32)
        options = localopts.validate(name, options)
        with self._lock:
            existing = self._read(name)
            if existing is not None:
                return existing, False
            os.makedirs(self.data_dir(name), mode=0o755, exist_ok=True)
            os.chmod(self._dir(name), 0o701)
            v = Volume(name=name, driver=driver, mountpoint=self.data_dir(name),
                       created_at=_now_rfc3339(), labels=dict(labels or {}), options=options)
            self._write(v)
            return v, True

    def mount(self, name: str) -> None:
        """Before a container using ``name`` starts: a volume made with driver options
        gets its device mounted on ``_data`` (idempotent); a plain one: nothing."""
        v = self.get(name)
        if v.options:
            localopts.mount(v.options, v.mountpoint)

    def unmount(self, name: str) -> None:
        """After its last running user stopped (idempotent; unknown: no-op)."""
        with self._lock:
            v = self._read(name)
        if v is not None and v.options:
            localopts.unmount(v.mountpoint)

    def get(self, name: str) -> Volume:
        v = self._read(name) if name and "/" not in name and name not in (".", "..") else None
        if v is None:
            raise NotFound(f"get {name}: no such volume")
        return v

    def list(self) -> list[Volume]:
        out = []
        for name in sorted(os.listdir(self.root)):
            v = self._read(name)
            if v is not None:
                out.append(v)
        return out

    def size(self, name: str) -> int:
        """Bytes in the volume as dockerd counts them (moby pkg/directory ``Size``): the
        apparent size of everything but directories, each hardlinked inode once."""
        total = 0
        seen: set[int] = set()
        for dirpath, dirnames, filenames in os.walk(self.data_dir(name)):
            # a symlink to a directory is listed (not followed) among dirnames; Go's Walk
            # sees it as the link it is, and counts it
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for n in filenames + links:
                try:
                    st = os.lstat(os.path.join(dirpath, n))
                except OSError:
                    continue
                if st.st_size and st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
        return total

    def remove(self, name: str, *, force: bool = False, in_use: InUse = _nobody) -> None:
        with self._lock:
            try:
                v = self.get(name)
            except NotFound:
                if force:
                    return
                raise
            users = in_use(v.name)
            if users:
                raise Conflict(f"remove {v.name}: volume is in use - [{', '.join(users)}]")
            self._delete(v.name)

    def _delete(self, name: str) -> None:
        v = self._read(name)
        if v is not None and v.options:
            # never delete through a mount: a bind volume's device is the user's data
            localopts.unmount(self.data_dir(name))
            if localopts.is_mounted(self.data_dir(name)):
                raise Conflict(f"remove {name}: its device is still mounted")
        # the record goes first: a crash half-way leaves a directory that is not a volume
        try:
            os.unlink(self._meta(name))
        except FileNotFoundError:
            pass
        if v is not None and v.options:
            # what is left is the empty mountpoint; anything else stays (never rmtree here)
            for path in (self.data_dir(name), self._dir(name)):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            return
        shutil.rmtree(self._dir(name), ignore_errors=True)

    def prune(self, *, all: bool = False, labels: Iterable[str] = (),
              in_use: InUse = _nobody) -> PruneResult:
        deleted, space = [], 0
        with self._lock:
            for v in self.list():
                if not all and not v.anonymous:
                    continue
                if not match_labels(v.labels, labels) or in_use(v.name):
                    continue
                space += self.size(v.name)
                self._delete(v.name)
                deleted.append(v.name)
        return PruneResult(deleted=tuple(deleted), space_reclaimed=space)


def match_labels(labels: dict, filters: Iterable[str]) -> bool:
    """Docker's ``label=k``, ``label=k=v`` (all must match) and ``label!=k[=v]`` (written
    here as ``!k[=v]``: none may match)."""
    for f in filters:
        negate = f.startswith("!")
        key, sep, value = f.lstrip("!").partition("=")
        hit = key in labels and (not sep or labels[key] == value)
        if hit == negate:
            return False
    return True
