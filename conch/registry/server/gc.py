"""``conch registry gc``: mark reachable blobs, sweep the rest and stale uploads.

Mark: the roots are every manifest revision of every repository (a revision goes away
only through DELETE /manifests/<digest>); from each, its config, layers and, for an
index, its child manifests (recursively). Referrers (manifests with a ``subject``) are
revisions themselves, so an artifact attached to an image is kept with it.

Sweep: a blob not marked is deleted, unless it is younger than the grace period.

Online safety (gc may run while the server takes pushes). The rule: **a blob whose mtime
is within the grace period (default 1 h) is never deleted, and every step of a push that
can make a blob reachable refreshes that mtime first**:

- a finished upload creates or touches the blob (storage.link_blob / uploads._commit);
- a cross-repo mount touches it (link_blob);
- HEAD/GET of a blob touches it (a client that finds a blob present skips uploading it);
- a manifest PUT touches every blob it references while checking they exist.

The grace period is counted back from the moment the mark began, so a blob touched
after that (by a manifest PUT the mark could not see) is always kept, whatever the grace.
Those writers hold ``gc.lock`` shared; gc takes it exclusive around each "re-stat, then
unlink", so no writer can touch-and-rely-on a blob between gc's last look and the unlink:
a manifest PUT either touched the blob first (gc sees it and keeps it) or finds it gone
and answers MANIFEST_BLOB_UNKNOWN. So an accepted manifest never lacks a blob, even with
``--grace 0``; the grace period is what keeps a push from having to re-upload a blob
that gc took between its upload and its manifest (pushes up to 1 h long by default).

Uploads idle (no write) for longer than ``upload_ttl`` (default 1 h) are removed.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from conch.errors import InvalidArgument
from conch.oci.digest import Digest

from .manifests import references_of
from .storage import Storage

GRACE = 3600.0
UPLOAD_TTL = 3600.0
# File timestamps come from the kernel's coarse clock, which lags time.time() by up to a
# tick: compare with a second of slack so "touched after the mark began" always counts.
_CLOCK_SLACK = 1.0


@dataclass(slots=True)
class Report:
    marked: int = 0
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_young: int = 0
    uploads_removed: int = 0
    links_removed: int = 0


def mark(storage: Storage) -> set[str]:
    """Digests (as strings) of every blob reachable from any repository."""
    marked: set[str] = set()
    for name in storage.repositories():
        pending = [str(d) for d in storage.revisions(name)]
        while pending:
            digest = pending.pop()
            if digest in marked:
                continue
            marked.add(digest)
            try:
                body = storage.blob_path(Digest.parse(digest)).read_bytes()
            except (OSError, InvalidArgument):
                continue  # a dangling revision references nothing we can read
            for ref, is_manifest in references_of(body):
                if is_manifest:
                    pending.append(ref)
                else:
                    marked.add(ref)
    return marked


def _blobs(storage: Storage):
    base = storage.root / "blobs"
    for algo in os.listdir(base):
        for prefix in os.listdir(base / algo):
            for entry in os.scandir(base / algo / prefix):
                yield algo, entry


def sweep(storage: Storage, marked: set[str], *, dry_run: bool = False, grace: float = GRACE,
          now: float | None = None) -> Report:
    report = Report(marked=len(marked))
    for algo, entry in list(_blobs(storage)):
        if entry.name.startswith(".tmp-"):
            # a writer's temp file: only a crash leaves one behind for an hour
            _remove_old_temp(Path(entry.path), max(grace, UPLOAD_TTL), now)
            continue
        digest = f"{algo}:{entry.name}"
        if digest in marked:
            continue
        with storage.gc_lock(exclusive=True):
            # Re-check under the lock: a writer may have touched it since the mark.
            try:
                st = os.stat(entry.path)
            except FileNotFoundError:
                continue
            if st.st_mtime > (time.time() if now is None else now) - grace - _CLOCK_SLACK:
                report.kept_young += 1
                continue
            if not dry_run:
                os.unlink(entry.path)
        report.deleted.append(digest)
        report.deleted_bytes += st.st_size
    if not dry_run:
        report.links_removed = _remove_dangling_links(storage)
    return report


def _remove_old_temp(path: Path, grace: float, now: float | None) -> None:
    try:
        if path.stat().st_mtime < (time.time() if now is None else now) - grace:
            path.unlink()
    except FileNotFoundError:
        pass


def _remove_dangling_links(storage: Storage) -> int:
    """Drop ``_layers`` links whose blob is gone (under the lock: an upload may be
    re-creating that very blob and its link)."""
    removed = 0
    for name in storage.repositories():
        base = storage.repo_dir(name) / "_layers"
        for algo in _ls(base):
            for encoded in _ls(base / algo):
                try:
                    digest = Digest(algorithm=algo, encoded=encoded)
                except InvalidArgument:
                    continue
                if storage.blob_path(digest).exists():
                    continue
                with storage.gc_lock(exclusive=True):
                    if not storage.blob_path(digest).exists():
                        (base / algo / encoded).unlink(missing_ok=True)
                        removed += 1
    return removed


def _ls(path: Path) -> list[str]:
    try:
        return [n for n in os.listdir(path) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def sweep_uploads(storage: Storage, *, dry_run: bool = False, ttl: float = UPLOAD_TTL,
                  now: float | None = None) -> int:
    """Remove upload sessions with no write for ``ttl`` seconds; returns how many."""
    now = time.time() if now is None else now
    removed = 0
    base = storage.root / "uploads"
    for entry in os.scandir(base):
        last = now
        try:
            last = os.stat(entry.path).st_mtime
            last = max(last, os.stat(os.path.join(entry.path, "data")).st_mtime)
        except FileNotFoundError:
            pass  # finished or cancelled meanwhile, or a crash before "data" existed
        if not os.path.exists(entry.path):
            continue
        if last < now - ttl:
            removed += 1
            if not dry_run:
                shutil.rmtree(entry.path, ignore_errors=True)
    return removed


def collect(storage: Storage, *, dry_run: bool = False, grace: float = GRACE,
            upload_ttl: float = UPLOAD_TTL) -> Report:
    """One whole gc run: mark, sweep blobs, sweep stale uploads."""
    # The grace clock starts when the mark starts, not at each unlink: a blob touched
    # after the mark began (by a manifest PUT the mark could not see) is always kept.
    started = time.time()
    report = sweep(storage, mark(storage), dry_run=dry_run, grace=grace, now=started)
    report.uploads_removed = sweep_uploads(storage, dry_run=dry_run, ttl=upload_ttl)
    return report
