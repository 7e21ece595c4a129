"""A real image store in a temporary directory, and tiny layer tars, for unit tests of
``conch.images`` (no root, no daemon): the same content store, overlay snapshotter and
SQLite metadata conchd composes."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from conch.content.store import ContentStore
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.snapshots.overlay import OverlaySnapshotter


def tar_of(files: dict[str, bytes]) -> bytes:
    """A PAX tar of regular files (mode 0644, a fixed mtime: the same bytes every time)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_service(root: Path) -> Iterator[ImageService]:
    """For a fixture's ``yield from``: an ImageService under ``root``, closed after."""
    db = Database(root / "metadata.db")
    sn = OverlaySnapshotter(root / "snapshots")
    try:
        yield ImageService(root / "images", ContentStore(root / "content"), sn, db)
    finally:
        sn.close()
        db.close()
