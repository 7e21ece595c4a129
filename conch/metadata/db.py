"""The metadata database: image references and container records, in SQLite.

On disk: ``<data-root>/metadata.db`` (plus SQLite's ``-wal`` and ``-shm`` files), in WAL
mode with ``synchronous=NORMAL``: a commit survives a crash of conchd; a power cut may
lose the last few commits but never leaves the file inconsistent. Foreign keys are on.

Schema (``PRAGMA user_version = 1``; migrations below are applied in order at open)::

    images(name              TEXT PRIMARY KEY,  -- full normalised reference:
                                                --   docker.io/library/busybox:latest,
                                                --   docker.io/library/busybox@sha256:…,
                                                --   or "conch-dangling@<manifest digest>"
                                                --   for an image that has no name
           target_digest     TEXT NOT NULL,     -- the manifest (or index) descriptor
           target_media_type TEXT NOT NULL,
           target_size       INTEGER NOT NULL,
           config_digest     TEXT NOT NULL,     -- = the image ID
           created_at        TEXT NOT NULL,     -- ISO 8601 UTC
           updated_at        TEXT NOT NULL,     -- last (re)tag: Docker's LastTagTime
           labels            TEXT NOT NULL DEFAULT '{}')          -- JSON object
      INDEX images_config(config_digest)

    containers(id         TEXT PRIMARY KEY,        -- 64 hex
               name       TEXT UNIQUE NOT NULL,    -- without Docker's leading '/'
               image_id   TEXT,                    -- sha256:… (config digest)
               record     TEXT NOT NULL,           -- JSON object, owned by engine/
               created_at TEXT NOT NULL)
      INDEX containers_image(image_id)

A dangling name cannot clash with a real one: every normalised reference has a domain
and a ``/``; ``conch-dangling@…`` has neither.

Threads: a :class:`Database` may be shared by any number of threads; each thread gets its
own connection (``threading.local``), opened on first use. The engine calls in through
``asyncio.to_thread``, whose worker threads differ from call to call, so a transaction
must begin and end inside one such call. Writers serialise on SQLite's lock
(``BEGIN IMMEDIATE`` + a busy timeout), readers never block in WAL mode.

Transactions: :meth:`Database.transaction` is ``BEGIN IMMEDIATE`` … ``COMMIT``, or
``ROLLBACK`` when the block raises; nested use becomes a ``SAVEPOINT``. Every write method
runs in one (joining the caller's if there is one), so a group of writes commits together.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from conch.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest

DANGLING_PREFIX = "conch-dangling@"
BUSY_TIMEOUT_MS = 10_000

_MIGRATIONS: tuple[str, ...] = (
    # 1: images and containers
    """
    CREATE TABLE images (
        name              TEXT PRIMARY KEY,
        target_digest     TEXT NOT NULL,
        target_media_type TEXT NOT NULL,
        target_size       INTEGER NOT NULL,
        config_digest     TEXT NOT NULL,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL,
        labels            TEXT NOT NULL DEFAULT '{}'
    ) WITHOUT ROWID;
    CREATE INDEX images_config ON images(config_digest);
    CREATE TABLE containers (
        id         TEXT PRIMARY KEY,
        name       TEXT UNIQUE NOT NULL,
        image_id   TEXT,
        record     TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX containers_image ON containers(image_id);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

# Docker's validContainerNamePattern (daemon/names): the leading '/' is optional.
_CONTAINER_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    """One name of an image: ``name`` -> manifest ``target``, image ID ``config_digest``."""

    name: str
    target: Descriptor
    config_digest: Digest
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def dangling(self) -> bool:
        return self.name.startswith(DANGLING_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRecord:
    id: str
    name: str  # without the leading '/'
    image_id: str
    record: Mapping[str, Any] = field(hash=False)
    created_at: datetime


def dangling_name(manifest_digest: Digest | str) -> str:
    """The key under which an image without a name is kept."""
    return f"{DANGLING_PREFIX}{manifest_digest}"


def now() -> datetime:
    return datetime.now(timezone.utc)


# Room kept for the database on the data root (see Database.keep_reserve): hundreds of
# container record updates' WAL frames.
RESERVE_BYTES = 4 << 20


class Database:
    """``<data-root>/metadata.db``; see the module docstring for schema and threading."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._migrate()
        self.reserve = self.path.with_name(self.path.name + ".reserve")
        self.keep_reserve()

    # --- room to record what happens on a full data root --------------------------------

    def keep_reserve(self) -> bool:
        """Hold RESERVE_BYTES of the data root in ``metadata.db.reserve`` (made when there
        is room: at open, and after a removal frees space). A container that fills the
        data root must not stop conchd from recording its stop, its exit or its removal:
        SQLite needs free pages for its WAL, and a WAL that never grew that far has none.
        Best effort: False when the disk has no room for it now."""
        if self.reserve.exists():
            return True
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
            return True
        except OSError:  # ENOSPC (or no fallocate on this filesystem): no reserve now
            os.unlink(self.reserve)
            return False
        finally:
            os.close(fd)

    def release_reserve(self) -> bool:
        """Give the reserve back to the filesystem (a write failed for want of space);
        True if there was one to give, so that the write is worth retrying."""
        try:
            os.unlink(self.reserve)
            return True
        except FileNotFoundError:
            return False

    # --- connections and transactions ---------------------------------------------------

    def close(self) -> None:
        """Close every thread's connection; call once no thread uses the database."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot open metadata database {self.path}: {exc}") from exc
            self._local.conn, self._local.depth = conn, 0
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error); nests as a savepoint."""
        conn = self._conn()
        depth = self._local.depth
        begin, commit, rollback = (
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") if depth == 0 else
            (f"SAVEPOINT sp{depth}", f"RELEASE sp{depth}", f"ROLLBACK TO sp{depth}")
        )  # fmt: skip
        _execute(conn, begin)
        self._local.depth = depth + 1
        try:
            yield self
        except BaseException:
            self._local.depth = depth
            _execute(conn, rollback)
            if depth:
                _execute(conn, commit)  # a savepoint stays open after ROLLBACK TO
            raise
        self._local.depth = depth
        try:
            _execute(conn, commit)
        except BaseException:
            if depth == 0 and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return _execute(self._conn(), sql, params).fetchall()

    def _migrate(self) -> None:
        with self.transaction():
            conn = self._conn()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise FailedPrecondition(
                    f"metadata database {self.path} has schema version {version}; this conch "
                    f"knows up to {SCHEMA_VERSION}: it was written by a newer conch"
                )
            for number in range(version, SCHEMA_VERSION):
                # executescript() would COMMIT first; run statement by statement instead.
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        _execute(conn, statement)
                _execute(conn, f"PRAGMA user_version = {number + 1}")

    # --- images -------------------------------------------------------------------------

    def put_image(self, record: ImageRecord) -> None:
        """Create or move the name ``record.name``; a move keeps its ``created_at``."""
        with self.transaction():
            self._query(
                """INSERT INTO images (name, target_digest, target_media_type, target_size,
                                       config_digest, created_at, updated_at, labels)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET
                       target_digest = excluded.target_digest,
                       target_media_type = excluded.target_media_type,
                       target_size = excluded.target_size,
                       config_digest = excluded.config_digest,
                       updated_at = excluded.updated_at,
                       labels = excluded.labels""",
                (record.name, str(record.target.digest), record.target.media_type,
                 record.target.size, str(record.config_digest), _time(record.created_at),
                 _time(record.updated_at), json.dumps(dict(record.labels), sort_keys=True)),
            )

    def get_image(self, name: str) -> ImageRecord:
        rows = self._query("SELECT * FROM images WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"image name {name!r}")
        return _image(rows[0])

    def list_images(self) -> list[ImageRecord]:
        return [_image(r) for r in self._query("SELECT * FROM images ORDER BY name")]

    def images_by_config(self, config_digest: Digest | str) -> list[ImageRecord]:
        rows = self._query("SELECT * FROM images WHERE config_digest = ? ORDER BY name",
                           (str(config_digest),))
        return [_image(r) for r in rows]

    def config_digests(self, prefix: str = "") -> list[str]:
        """Distinct image IDs (config digests) starting with ``prefix``."""
        rows = self._query(
            "SELECT DISTINCT config_digest FROM images WHERE substr(config_digest, 1, ?) = ?"
            " ORDER BY config_digest", (len(prefix), prefix),
        )
        return [r[0] for r in rows]

    def delete_image(self, name: str) -> None:
        with self.transaction():
            if _execute(self._conn(), "DELETE FROM images WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"image name {name!r}")

    # --- containers ---------------------------------------------------------------------

    def put_container(self, id: str, name: str, image_id: str, record: Mapping[str, Any]) -> None:
        """Create the container ``id`` or replace its record (``created_at`` is kept).

        Raises :class:`Conflict` when ``name`` belongs to another container.
        """
        name = _container_name(name)
        if not id:
            raise InvalidArgument("container id must not be empty")
        with self.transaction():
            self._check_name_free(name, id)
            self._query(
                """INSERT INTO containers (id, name, image_id, record, created_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET name = excluded.name,
                       image_id = excluded.image_id, record = excluded.record""",
                (id, name, image_id, json.dumps(record), _time(now())),
            )

    def get_container(self, id: str) -> ContainerRecord:
        rows = self._query("SELECT * FROM containers WHERE id = ?", (id,))
        if not rows:
            raise NotFound(f"No such container: {id}")
        return _container(rows[0])

    def find_container(self, id_or_name: str) -> ContainerRecord:
        """Docker's ``GetContainer``: exact ID, then exact name (with or without the
        leading '/'), then a unique ID prefix. An ambiguous prefix is InvalidArgument."""
        if not id_or_name:
            raise InvalidArgument("container name or ID must not be empty")
        rows = self._query("SELECT * FROM containers WHERE id = ?", (id_or_name,))
        if not rows:
            rows = self._query("SELECT * FROM containers WHERE name = ?",
                               (id_or_name.removeprefix("/"),))
        if not rows:
            rows = self._query(
                "SELECT * FROM containers WHERE substr(id, 1, ?) = ? LIMIT 2",
                (len(id_or_name), id_or_name),
            )
            if len(rows) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {id_or_name}")
        if not rows:
            raise NotFound(f"No such container: {id_or_name}")
        return _container(rows[0])

    def list_containers(self) -> list[ContainerRecord]:
        return [_container(r) for r in self._query("SELECT * FROM containers ORDER BY created_at, id")]

    def containers_by_image(self, image_id: str) -> list[ContainerRecord]:
        rows = self._query("SELECT * FROM containers WHERE image_id = ? ORDER BY created_at, id",
                           (image_id,))
        return [_container(r) for r in rows]

    def rename_container(self, id: str, new_name: str,
                         record: Mapping[str, Any] | None = None) -> None:
        """Give container ``id`` the name ``new_name`` (and, if given, its updated record)."""
        new_name = _container_name(new_name)
        with self.transaction():
            self.get_container(id)
            self._check_name_free(new_name, id)
            self._query("UPDATE containers SET name = ? WHERE id = ?", (new_name, id))
            if record is not None:
                self._query("UPDATE containers SET record = ? WHERE id = ?",
                            (json.dumps(record), id))

    def delete_container(self, id: str) -> None:
        with self.transaction():
            if _execute(self._conn(), "DELETE FROM containers WHERE id = ?", (id,)).rowcount == 0:
                raise NotFound(f"No such container: {id}")

    def container_with_name(self, name: str) -> str | None:
        """The id of the container named exactly ``name`` (no id-prefix matching)."""
        rows = self._query("SELECT id FROM containers WHERE name = ?", (_container_name(name),))
        return rows[0][0] if rows else None

    def _check_name_free(self, name: str, id: str) -> None:
        rows = self._query("SELECT id FROM containers WHERE name = ?", (name,))
        if rows and rows[0][0] != id:
            raise Conflict(
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{rows[0][0]}". You have to remove (or rename) that container to be able '
                "to reuse that name."
            )


# --- row codecs and the sqlite boundary -------------------------------------------------


def _execute(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> sqlite3.Cursor:
    """The one place sqlite3 errors become conch errors."""
    try:
        return conn.execute(sql, params)
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"metadata constraint failed: {exc}") from exc
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise Unavailable(f"metadata database is busy: {exc}") from exc
        raise
    except sqlite3.Error as exc:
        raise Unavailable(f"metadata database error: {exc}") from exc


def _container_name(name: str) -> str:
    if not isinstance(name, str) or _CONTAINER_NAME.fullmatch(name) is None:
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.removeprefix("/")


def _time(t: datetime) -> str:
    if t.tzinfo is None:
        raise InvalidArgument("metadata timestamps must be timezone-aware")
    return t.astimezone(timezone.utc).isoformat()


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        name=row["name"],
        target=Descriptor(media_type=row["target_media_type"],
                          digest=Digest.parse(row["target_digest"]), size=row["target_size"]),
        config_digest=Digest.parse(row["config_digest"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        labels=json.loads(row["labels"]),
    )


def _container(row: sqlite3.Row) -> ContainerRecord:
    return ContainerRecord(
        id=row["id"], name=row["name"], image_id=row["image_id"] or "",
        record=json.loads(row["record"]), created_at=datetime.fromisoformat(row["created_at"]),
    )
