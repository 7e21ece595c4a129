"""The registry's filesystem store: blobs, repository links, tags, referrers.

Layout (see the package docstring for the whole tree): blobs are global and
content-addressed; a repository sees a blob only through its own link (``_layers`` for
blobs, ``_manifests/revisions`` for manifests), so a blob pushed to repo A is not readable
through repo B until B mounts or uploads it.

Every small file (links, tags, referrer entries) is written to a temp file in the same
directory, fsynced and ``os.replace``\\ d, so no reader ever sees half a link. Blob data
arrives through ``uploads.py`` and is renamed into place only once verified.

Synchronous code: the HTTP layer calls it from the event loop for the small operations
(stat, link, small reads) and through ``asyncio.to_thread`` for the slow ones (fsync of
big files, re-hashing).

gc lock: writers that make a blob reachable (link, manifest put) hold ``gc.lock`` shared
while they check-and-touch; ``gc`` holds it exclusive only around each re-check-and-unlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import Iterator

from conch.errors import InvalidArgument
from conch.oci.digest import Digest

from .errors import RegistryError


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    """One registry root. Safe to share between the server and a concurrent ``gc``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for sub in ("blobs", "uploads", "repositories"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "gc.lock"
        self._lock_path.touch(exist_ok=True)

    # -- paths ------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.encoded[:2] / digest.encoded

    def repo_dir(self, name: str) -> Path:
        return self.root / "repositories" / name

    def _link(self, name: str, kind: str, digest: Digest) -> Path:
        base = self.repo_dir(name)
        if kind == "layer":
            return base / "_layers" / digest.algorithm / digest.encoded
        return base / "_manifests" / "revisions" / digest.algorithm / digest.encoded

    def _tag(self, name: str, tag: str) -> Path:
        return self.repo_dir(name) / "_manifests" / "tags" / tag

    # -- the gc lock --------------------------------------------------------------------

    @contextlib.contextmanager
    def gc_lock(self, exclusive: bool = False) -> Iterator[None]:
        """flock(2) on ``gc.lock``: shared for writers, exclusive for gc's unlink."""
        fd = os.open(self._lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing the only fd releases the lock

    # -- blobs ------------------------------------------------------------------------

    def blob_size(self, digest: Digest) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def touch_blob(self, digest: Digest) -> bool:
        """Refresh the blob's mtime (gc's grace clock); False when it does not exist."""
        try:
            os.utime(self.blob_path(digest))
            return True
        except FileNotFoundError:
            return False

    def link_blob(self, name: str, digest: Digest) -> None:
        """Make an existing blob visible in ``name`` (upload done, or cross-repo mount)."""
        with self.gc_lock():
            self._link_locked(name, digest)

    def _link_locked(self, name: str, digest: Digest) -> None:
        if not self.touch_blob(digest):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
        link = self._link(name, "layer", digest)
        if not link.exists():
            write_atomic(link, str(digest).encode())

    def commit_blob(self, name: str, data: Path, digest: Digest) -> None:
        """Move verified, fsynced ``data`` into place (or drop it if the blob exists) and
        link it into ``name``, all under one hold of the shared gc lock: a gc between
        the rename and the link could otherwise take the blob (it is not linked yet)."""
        target = self.blob_path(digest)
        with self.gc_lock():
            if not self.touch_blob(digest):
                os.chmod(data, 0o444)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(data, target)
                fsync_dir(target.parent)
            self._link_locked(name, digest)

    def readable_blob(self, name: str, digest: Digest) -> Path | None:
        """The blob's path if ``name`` links it (as a layer or a manifest) and it exists."""
        if not (self._link(name, "layer", digest).exists()
                or self._link(name, "manifest", digest).exists()):
            return None
        path = self.blob_path(digest)
        return path if path.exists() else None

    def unlink_blob(self, name: str, digest: Digest) -> None:
        """DELETE /blobs: drop the repository's link; the data goes at the next gc."""
        try:
            self._link(name, "layer", digest).unlink()
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None

    # -- manifests -----------------------------------------------------------------------

    def put_manifest(self, name: str, digest: Digest, body: bytes, media_type: str,
                     tag: str | None, layer_refs: list[tuple[Digest, int]],
                     manifest_refs: list[Digest], subject: tuple[Digest, dict] | None) -> None:
        """Check every reference exists in ``name``, then store blob, revision, tag, referrer.

        Runs under the shared gc lock, touching each referenced blob first, so a gc that
        has already decided a blob is garbage either deletes it before we look (and we
        answer MANIFEST_BLOB_UNKNOWN) or sees it freshly touched and keeps it.
        """
        with self.gc_lock():
            for ref, size in layer_refs:
                self._check_ref(name, "layer", ref, size)
            for ref in manifest_refs:
                self._check_ref(name, "manifest", ref, None)
            path = self.blob_path(digest)
            if not self.touch_blob(digest):
                write_atomic(path, body, 0o444)
                fsync_dir(path.parent)
            write_atomic(self._link(name, "manifest", digest), media_type.encode())
            if tag is not None:
                write_atomic(self._tag(name, tag), str(digest).encode())
            if subject is not None:
                subj, desc = subject
                entry = self._referrers_dir(name, subj) / f"{digest.algorithm}-{digest.encoded}"
                write_atomic(entry, json.dumps(desc).encode())

    def _check_ref(self, name: str, kind: str, ref: Digest, size: int | None) -> None:
        linked = self._link(name, kind, ref).exists() or (
            kind == "layer" and self._link(name, "manifest", ref).exists())
        if not linked or not self.touch_blob(ref):
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": str(ref)})
        if size is not None and self.blob_size(ref) != size:
            raise RegistryError("MANIFEST_INVALID",
                                detail=f"descriptor size {size} of {ref} does not match the blob")

    def resolve(self, name: str, digest: Digest | None, tag: str | None) -> tuple[Digest, str]:
        """``(digest, media type)`` of a manifest by digest or tag, or MANIFEST_UNKNOWN."""
        if tag is not None:
            try:
                digest = Digest.parse(self._tag(name, tag).read_text())
            except FileNotFoundError:
                raise self._unknown(name, tag) from None
        assert digest is not None
        try:
            media_type = self._link(name, "manifest", digest).read_text()
        except FileNotFoundError:
            raise self._unknown(name, str(digest)) from None
        if not self.blob_path(digest).exists():
            raise self._unknown(name, str(digest))
        return digest, media_type

    def _unknown(self, name: str, ref: str) -> RegistryError:
        if not self.repo_exists(name):
            return RegistryError("NAME_UNKNOWN", detail={"name": name})
        return RegistryError("MANIFEST_UNKNOWN", detail={"reference": ref})

    def delete_tag(self, name: str, tag: str) -> None:
        try:
            self._tag(name, tag).unlink()
        except FileNotFoundError:
            raise self._unknown(name, tag) from None

    def delete_manifest(self, name: str, digest: Digest) -> None:
        """Drop the revision, every tag pointing at it and its referrer entry."""
        link = self._link(name, "manifest", digest)
        try:
            body = self.blob_path(digest).read_bytes()
            link.unlink()
        except FileNotFoundError:
            raise self._unknown(name, str(digest)) from None
        for tag in self.tags(name):
            try:
                if self._tag(name, tag).read_text() == str(digest):
                    self._tag(name, tag).unlink()
            except FileNotFoundError:
                pass
        subject = _subject_of(body)
        if subject is not None:
            entry = self._referrers_dir(name, subject) / f"{digest.algorithm}-{digest.encoded}"
            entry.unlink(missing_ok=True)

    # -- listing ------------------------------------------------------------------------

    def repo_exists(self, name: str) -> bool:
        return (self.repo_dir(name) / "_manifests").is_dir() or (
            self.repo_dir(name) / "_layers").is_dir()

    def tags(self, name: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.repo_dir(name) / "_manifests" / "tags")
                    if not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def revisions(self, name: str) -> list[Digest]:
        base = self.repo_dir(name) / "_manifests" / "revisions"
        out = []
        for algo in _listdir(base):
            for encoded in _listdir(base / algo):
                try:
                    out.append(Digest(algorithm=algo, encoded=encoded))
                except InvalidArgument:
                    continue  # not ours (a stray file): ignore rather than fail gc
        return out

    def repositories(self) -> list[str]:
        """Every repository name (a directory holding ``_manifests`` or ``_layers``)."""
        base = self.root / "repositories"
        out = []
        for dirpath, dirnames, _ in os.walk(base):
            if "_manifests" in dirnames or "_layers" in dirnames:
                out.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)

    def _referrers_dir(self, name: str, subject: Digest) -> Path:
        return self.repo_dir(name) / "_referrers" / subject.algorithm / subject.encoded

    def referrers(self, name: str, subject: Digest) -> list[dict]:
        base = self._referrers_dir(name, subject)
        out = []
        for entry in sorted(_listdir(base)):
            try:
                out.append(json.loads((base / entry).read_bytes()))
            except (FileNotFoundError, ValueError):
                continue
        return out


def _listdir(path: Path) -> list[str]:
    try:
        return [n for n in os.listdir(path) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def _subject_of(body: bytes) -> Digest | None:
    try:
        subject = json.loads(body).get("subject")
        return Digest.parse(subject["digest"]) if subject else None
    except Exception:  # stored manifests were validated; anything odd has no subject
        return None

