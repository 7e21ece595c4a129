"""The overlayfs snapshotter: containerd's model, on disk under one root.

Layout::

    root/
      metadata.db            SQLite (WAL): the snapshots table below
      snapshots/<id>/fs      the snapshot's own files (the overlay upperdir when active)
      snapshots/<id>/work    overlay workdir (active snapshots only)
      snapshots/new-<rand>/  being prepared: renamed to <id> once its row is inserted
                             (also a ``scratch()`` directory an unpacker fills)
      snapshots/rm-<id>/     being removed: its row is already gone

Schema (``PRAGMA user_version = 1``)::

    snapshots(id      INTEGER PRIMARY KEY AUTOINCREMENT,   -- small: keeps lowerdir short
              key     TEXT NOT NULL UNIQUE,                -- active/view key or committed name
              kind    TEXT NOT NULL,                       -- active | view | committed
              parent  TEXT REFERENCES snapshots(key),      -- a committed name, or NULL
              labels  TEXT NOT NULL DEFAULT '{}',          -- JSON object
              created REAL NOT NULL, updated REAL NOT NULL)

Mounts: a parentless active snapshot is a read-write bind mount of its ``fs``; with
parents it is an overlay (``lowerdir`` = parents' ``fs``, nearest first; ``upperdir`` =
own ``fs``; ``workdir``). A view is a read-only bind of its single parent's ``fs`` (of its
own empty ``fs`` without a parent), or a lowerdir-only overlay for a longer chain.
``commit`` turns an active snapshot into a committed one in place (same id, same
directory; ``work`` is deleted): committed snapshots are never written again.
``scratch`` + ``commit_scratch`` make a committed snapshot from a directory filled
without a parent in place, so that layers can be unpacked in parallel and stacked in
order afterwards (a layer's files never depend on what lies below them).

Crash safety: a directory is made under a temporary name before its row exists and
renamed afterwards; a removal deletes the row first. :meth:`OverlaySnapshotter.cleanup`
deletes directories without a row. Overlay allows at most 500 lower layers and one page
of mount options: both limits are checked in ``prepare``/``view`` with a clear error.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

from conch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from conch.snapshots import Info, Kind, Mount, Usage, tree_usage

MAX_LOWERS = 500  # overlayfs' OVL_MAX_STACK

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT NOT NULL UNIQUE,
    kind    TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    parent  TEXT REFERENCES snapshots(key),
    labels  TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
PRAGMA user_version = 1;
"""


class OverlaySnapshotter:
    def __init__(self, root: Path):
        self.root = Path(root)
        if any(c in str(self.root) for c in ",:"):
            raise InvalidArgument(f"snapshot root {self.root} must not contain ',' or ':' (overlay options)")
        (self.root / "snapshots").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "metadata.db", isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        # as conch.metadata: a commit survives a crash of conchd (the WAL is in the OS's
        # hands); a power cut may lose the last ones, never corrupt. One fsync less per
        # container create and remove (~1-3 ms here).
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        # only when missing: `PRAGMA user_version = 1` writes the header even when it is
        # already 1, and on a full data root that write would keep conchd from starting
        if self._db.execute("PRAGMA user_version").fetchone()[0] != 1:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- lifecycle -------------------------------------------------------------------

    def prepare(self, key: str, parent: str | None, *, labels: dict[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None, *, labels: dict[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, *, labels: dict[str, str] | None = None) -> None:
        with self._tx() as db:
            row = self._row(db, key)
            if row["kind"] != Kind.ACTIVE.value:
                raise FailedPrecondition(f"snapshot {key!r} is {row['kind']}, only active ones commit")
            if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                raise AlreadyExists(f"snapshot {name!r}")
            merged = {**json.loads(row["labels"]), **(labels or {})}
            db.execute(
                "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, updated = ? WHERE id = ?",
                (name, json.dumps(merged, sort_keys=True), time.time(), row["id"]),
            )
        shutil.rmtree(self._dir(row["id"]) / "work", ignore_errors=True)

    def scratch(self) -> Path:
        """A new empty directory on the snapshots' filesystem, for
        :meth:`commit_scratch`; gone at the next :meth:`cleanup` if never committed."""
        staging = self.root / "snapshots" / f"new-{secrets.token_hex(8)}"
        (staging / "fs").mkdir(parents=True, mode=0o755)
        return staging / "fs"

    def commit_scratch(self, name: str, parent: str | None, fs: Path, *,
                       labels: dict[str, str] | None = None) -> None:
        """The committed snapshot ``name`` on ``parent`` (committed), holding the files
        of the :meth:`scratch` directory ``fs``, which it takes over. AlreadyExists when
        ``name`` exists (``fs`` is then left to the caller)."""
        staging = Path(fs).parent
        if staging.parent != self.root / "snapshots" or not staging.name.startswith("new-"):
            raise InvalidArgument(f"{fs} is not a scratch directory of this snapshotter")
        renamed = None
        try:
            with self._tx() as db:
                if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                    raise AlreadyExists(f"snapshot {name!r}")
                self._chain(db, parent)  # the parent must exist and be committed
                now = time.time()
                cur = db.execute(
                    "INSERT INTO snapshots (key, kind, parent, labels, created, updated)"
                    " VALUES (?, 'committed', ?, ?, ?, ?)",
                    (name, parent, json.dumps(labels or {}, sort_keys=True), now, now),
                )
                final = self._dir(cur.lastrowid)
                _clear_stale(final)
                os.rename(staging, final)  # inside the transaction: a failed rename rolls
                # the row back; a failed COMMIT (a full disk) moves the files back below
                renamed = final
        except BaseException:
            if renamed is not None:  # the caller keeps its scratch directory
                os.rename(renamed, staging)
            raise

    def remove(self, key: str) -> None:
        with self._tx() as db:
            row = self._row(db, key)
            child = db.execute("SELECT key FROM snapshots WHERE parent = ? LIMIT 1", (key,)).fetchone()
            if child:
                raise FailedPrecondition(f"snapshot {key!r} has children (e.g. {child[0]!r})")
            db.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
        doomed = self.root / "snapshots" / f"rm-{row['id']}"
        os.rename(self._dir(row["id"]), doomed)
        shutil.rmtree(doomed)

    def cleanup(self) -> None:
        """Delete snapshot directories that no row refers to (left by a crash)."""
        with self._lock:
            ids = {str(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}
        for entry in os.listdir(self.root / "snapshots"):
            if entry not in ids:
                shutil.rmtree(self.root / "snapshots" / entry, ignore_errors=True)

    # -- queries ---------------------------------------------------------------------

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            row = self._row(self._db, key)
            chain = self._chain(self._db, row["parent"])
        if row["kind"] == Kind.COMMITTED.value:
            raise FailedPrecondition(f"snapshot {key!r} is committed: make a view of it to mount it")
        return self._mounts(row["id"], Kind(row["kind"]), chain)

    def stat(self, key: str) -> Info:
        with self._lock:
            return _info(self._row(self._db, key))

    def walk(self) -> Iterator[Info]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM snapshots ORDER BY key").fetchall()
        for row in rows:
            yield _info(row)

    def layer_dirs(self, key: str) -> tuple[Path, list[Path]]:
        """The snapshot's own directory (its ``fs`` and ``work`` live there) and its
        parents' ``fs`` directories, nearest first, whatever its kind: what Docker's
        overlay2 GraphDriver.Data names (LowerDir, UpperDir, WorkDir)."""
        with self._lock:
            row = self._row(self._db, key)
            chain = self._chain(self._db, row["parent"])
        return self._dir(row["id"]), [self._dir(i) / "fs" for i in chain]

    def usage(self, key: str) -> Usage:
        with self._lock:
            row = self._row(self._db, key)
        return tree_usage(self._dir(row["id"]) / "fs")

    # -- internals -------------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str | None, labels) -> list[Mount]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        staging = self.root / "snapshots" / f"new-{secrets.token_hex(8)}"
        renamed = None
        try:
            (staging / "fs").mkdir(parents=True, mode=0o755)
            if kind is Kind.ACTIVE and parent is not None:
                (staging / "work").mkdir(mode=0o700)
            with self._tx() as db:
                if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                    raise AlreadyExists(f"snapshot {key!r}")
                chain = self._chain(db, parent)
                if len(chain) > MAX_LOWERS:
                    raise FailedPrecondition(
                        f"snapshot {key!r} would stack {len(chain)} layers; overlayfs allows {MAX_LOWERS}"
                    )
                now = time.time()
                cur = db.execute(
                    "INSERT INTO snapshots (key, kind, parent, labels, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key, kind.value, parent, json.dumps(labels or {}, sort_keys=True), now, now),
                )
                snap_id = cur.lastrowid
                mounts = self._mounts(snap_id, kind, chain)  # checks the option length
                final = self._dir(snap_id)
                _clear_stale(final)
                os.rename(staging, final)
                renamed = final
        except BaseException:
            # a failed COMMIT (a full disk) rolls the row back after the rename: the
            # directory goes too, or the id sqlite hands out again would find it taken
            shutil.rmtree(renamed or staging, ignore_errors=True)
            raise
        return mounts

    def _chain(self, db, parent: str | None) -> list[int]:
        """Ids of ``parent`` and its ancestors, nearest first; parent must be committed."""
        if parent is None:
            return []
        row = db.execute("SELECT id, kind FROM snapshots WHERE key = ?", (parent,)).fetchone()
        if row is None:
            raise NotFound(f"parent snapshot {parent!r}")
        if row["kind"] != Kind.COMMITTED.value:
            raise FailedPrecondition(f"parent snapshot {parent!r} is {row['kind']}, not committed")
        rows = db.execute(
            """WITH RECURSIVE chain(id, parent, depth) AS (
                   SELECT id, parent, 0 FROM snapshots WHERE key = ?
                   UNION ALL
                   SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.key = c.parent)
               SELECT id FROM chain ORDER BY depth""",
            (parent,),
        ).fetchall()
        return [r[0] for r in rows]

    def _dir(self, snap_id: int) -> Path:
        return self.root / "snapshots" / str(snap_id)

    def _mounts(self, snap_id: int, kind: Kind, chain: list[int]) -> list[Mount]:
        own = self._dir(snap_id)
        lowers = [str(self._dir(i) / "fs") for i in chain]
        if kind is Kind.ACTIVE:
            if not lowers:
                return [Mount(type="bind", source=str(own / "fs"), options=("rbind", "rw"))]
            options = (
                "index=off",
                f"lowerdir={':'.join(lowers)}",
                f"upperdir={own / 'fs'}",
                f"workdir={own / 'work'}",
            )
        else:
            if len(lowers) <= 1:
                source = lowers[0] if lowers else str(own / "fs")
                return [Mount(type="bind", source=source, options=("rbind", "ro"))]
            options = ("ro", "index=off", f"lowerdir={':'.join(lowers)}")
        data = ",".join(o for o in options if o != "ro")
        if len(data.encode()) >= os.sysconf("SC_PAGESIZE"):
            raise FailedPrecondition(
                f"overlay options for {len(lowers)} layers are {len(data)} bytes, over one page:"
                f" move the snapshot root {self.root} to a shorter path"
            )
        return [Mount(type="overlay", source="overlay", options=options)]

    def _row(self, db, key: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r}")
        return row

    def _tx(self):
        return _Transaction(self._db, self._lock)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the snapshotter's lock; ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLITE_FULL/IOERR at COMMIT may leave the transaction open: end it,
                    # or every later BEGIN fails ("within a transaction")
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            else:
                self._db.execute("ROLLBACK")
        finally:
            self._lock.release()


def _clear_stale(path: Path) -> None:
    """Delete a directory at an id sqlite has just handed out: no row refers to it (a
    create whose row was rolled back after its rename, e.g. a crash), and left in place
    it would fail every create given that id again ("Directory not empty")."""
    if os.path.lexists(path):
        shutil.rmtree(path)


def _info(row: sqlite3.Row) -> Info:
    return Info(
        key=row["key"], kind=Kind(row["kind"]), parent=row["parent"],
        created=row["created"], updated=row["updated"], labels=json.loads(row["labels"]),
    )
