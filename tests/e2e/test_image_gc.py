"""Issue 15 item 5: blobs and committed snapshots that no image or container references
are collected at conchd's start and by `image prune` / `system prune`, against a real
private conchd. The leftovers are planted as a crash leaves them (a committed blob file,
committed snapshot rows with their directories, one on top of the other); what images
and containers use stays, and the image still runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conch.snapshots.overlay import OverlaySnapshotter
from conch.testing.daemon import Daemon, clean_after, daemon_fixture

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _blobs(d: Daemon) -> set[str]:
    root = d.data_root / "content" / "blobs" / "sha256"
    return set(os.listdir(root)) if root.is_dir() else set()


def _plant_blob(d: Daemon, text: bytes) -> str:
    hexd = hashlib.sha256(text).hexdigest()
    path = d.data_root / "content" / "blobs" / "sha256" / hexd
    path.write_bytes(text)
    os.utime(path, (1_600_000_000, 1_600_000_000))  # a leftover from before the GC
    return hexd


def _plant_snapshots(d: Daemon, tag: str) -> list[str]:
    """A committed chain of two snapshots no image names, and their directories."""
    sn = OverlaySnapshotter(d.data_root / "snapshots")
    try:
        names, parent = [], None
        for i in range(2):
            name = "sha256:" + hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()
            fs = sn.scratch()
            (fs / "junk").write_bytes(os.urandom(8192))
            sn.commit_scratch(name, parent, fs)
            names.append(name)
            parent = name
        return names
    finally:
        sn.close()


def _snapshots(d: Daemon) -> set[str]:
    sn = OverlaySnapshotter(d.data_root / "snapshots")
    try:
        return {i.key for i in sn.walk()}
    finally:
        sn.close()


def _snapshot_dirs(d: Daemon) -> set[str]:
    return set(os.listdir(d.data_root / "snapshots" / "snapshots"))


def test_unreferenced_blobs_and_snapshots_go_at_start(d):
    cid = d.conch("create", "--name", "gc-keep", "busybox", "true", check=True).stdout.strip()
    blobs, snaps = _blobs(d), _snapshots(d)
    assert len(blobs) >= 3 and len(snaps) >= 2  # busybox's manifest/config/layer; its layer + the container's
    d.stop()
    orphan = _plant_blob(d, b"a blob a crash left unnamed")
    planted = _plant_snapshots(d, "start")
    dirs = _snapshot_dirs(d)
    d.start()
    assert _blobs(d) == blobs, "the GC at start kept the orphan blob or lost a used one"
    assert orphan not in _blobs(d)
    assert _snapshots(d) == snaps
    assert len(_snapshot_dirs(d)) == len(dirs) - 2
    assert d.conch("start", "-a", cid, timeout=60).returncode == 0  # its rootfs is whole
    assert d.conch("run", "--rm", "busybox", "sh", "-c", "test -x /bin/ls", timeout=60).returncode == 0
    d.conch("rm", cid, check=True)
    assert all(p not in _snapshots(d) for p in planted)


@pytest.mark.parametrize("verb", [["image", "prune", "-f"], ["system", "prune", "-f"]])
def test_prune_collects_unreferenced_blobs_and_snapshots(d, verb):
    blobs, snaps = _blobs(d), _snapshots(d)
    orphan = _plant_blob(d, b"an unnamed blob for " + verb[0].encode())
    planted = _plant_snapshots(d, verb[0])
    assert orphan in _blobs(d) and set(planted) <= _snapshots(d)
    out = d.conch(*verb, check=True, timeout=120).stdout
    assert "Total reclaimed space" in out, out
    assert orphan not in _blobs(d)
    assert not set(planted) & _snapshots(d)
    assert _blobs(d) == blobs and _snapshots(d) == snaps
    run = d.conch("run", "--rm", "busybox", "echo", "still here", timeout=60)
    assert (run.returncode, run.stdout) == (0, "still here\n"), run.stderr
