"""An imported busybox image on the real kernel: prepare_rootfs, mount the overlay,
see the busybox userland, share the unpacked layer between two containers. Every
mount is undone in ``finally`` and the tmp dir is checked for leaked mounts."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from conch.archive import write_tar
from conch.content.store import ContentStore
from conch.images.importer import import_image
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.snapshots import Kind, mount_all, unmount
from conch.snapshots.overlay import OverlaySnapshotter
from conch.testing.rootfs import busybox_rootfs


def _overlay_available() -> bool:
    return os.geteuid() == 0 and "overlay" in Path("/proc/filesystems").read_text()


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not _overlay_available(), reason="needs root and overlayfs"),
]


def mounts_under(path: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(path) or mp.startswith(str(path) + "/"):
            found.append(mp)
    return found


@pytest.fixture
def svc(tmp_path):
    try:
        rootfs = busybox_rootfs(tmp_path / "rootfs")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    db = Database(tmp_path / "metadata.db")
    sn = OverlaySnapshotter(tmp_path / "snapshots")
    service = ImageService(tmp_path / "images", ContentStore(tmp_path / "content"), sn, db)
    buf = io.BytesIO()
    write_tar(rootfs, buf)
    buf.seek(0)
    import_image(service, buf, "busybox", changes=["CMD [\"sh\"]"])
    yield service
    sn.close()
    db.close()
    assert mounts_under(tmp_path) == [], "a test leaked a mount"


def test_prepare_rootfs_mounts_busybox_and_shares_the_layer(svc, tmp_path):
    image = svc.get("busybox")
    targets = [tmp_path / "ct1", tmp_path / "ct2"]
    mounted: list[Path] = []
    try:
        for i, target in enumerate(targets):
            target.mkdir()
            mounts = svc.prepare_rootfs(image, f"container-{i}")
            assert [m.type for m in mounts] == ["overlay"]
            mount_all(mounts, target)
            mounted.append(target)
            assert (target / "bin/busybox").is_file()
            assert os.readlink(target / "bin/sh") == "busybox"
            assert (target / "etc/passwd").read_text().startswith("root:x:0:0")
        # the containers write independently on top of one shared, read-only layer
        (targets[0] / "etc/hostname").write_text("one\n")
        assert (targets[1] / "etc/hostname").read_text() == "conch\n"
        out = subprocess.run(["chroot", str(targets[1]), "/bin/sh", "-c", "echo hi from $0"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "hi from /bin/sh"
    finally:
        for target in mounted:
            unmount(target)

    committed = [i for i in svc.snapshotter.walk() if i.kind is Kind.COMMITTED]
    assert [i.key for i in committed] == [str(image.chain_ids()[0])]
    active = sorted(i.key for i in svc.snapshotter.walk() if i.kind is Kind.ACTIVE)
    assert active == ["container-0", "container-1"]  # no extraction snapshot left over
    assert svc.get("busybox").size > 1_000_000  # the unpacked size now
    for key in active:
        svc.snapshotter.remove(key)
