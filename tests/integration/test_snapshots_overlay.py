"""The overlay snapshotter end to end on the real kernel: unpack a 3-layer stack, mount
it, write to it, diff it. Every test unmounts in ``finally`` and checks that no mount is
left under its tmp dir."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest

from conch.archive import ChangeKind, apply_layer, changes, write_diff
from conch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from conch.snapshots import Kind, Mount, lower_dirs, mount_all, unmount, writable_dir
from conch.snapshots.overlay import MAX_LOWERS, OverlaySnapshotter


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
def tmp(tmp_path):
    yield tmp_path
    assert mounts_under(tmp_path) == [], "a test leaked a mount"


def layer(*entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


LAYERS = [
    layer(("etc", None), ("etc/passwd", b"root\n"), ("etc/motd", b"hello\n"),
          ("opt", None), ("opt/old", b"1"), ("opt/sub", None), ("opt/sub/deep", b"2")),
    layer(("etc", None), ("etc/.wh.motd", b""), ("etc/group", b"root\n")),
    layer(("opt", None), ("opt/.wh..wh..opq", b""), ("opt/fresh", b"3")),
]


def unpack(sn: OverlaySnapshotter) -> str:
    parent = None
    for i, raw in enumerate(LAYERS):
        key = f"extract-{i}"
        mounts = sn.prepare(key, parent)
        apply_layer(io.BytesIO(raw), writable_dir(mounts), whiteout_format="overlay")
        sn.commit(f"layer-{i}", key)
        parent = f"layer-{i}"
    return parent


def test_three_layer_stack_mounts_and_diffs(tmp):
    sn = OverlaySnapshotter(tmp / "root")
    top = unpack(sn)
    mounts = sn.prepare("ctr", top)
    assert mounts[0].type == "overlay"
    merged = tmp / "merged"
    merged.mkdir()
    mount_all(mounts, merged)
    try:
        assert (merged / "etc/passwd").read_bytes() == b"root\n"
        assert (merged / "etc/group").exists()
        assert not (merged / "etc/motd").exists()  # whited out by layer 1
        assert sorted(os.listdir(merged / "opt")) == ["fresh"]  # opaque in layer 2
        (merged / "etc/passwd").write_text("root\nuser\n")
        (merged / "etc/group").unlink()
        (merged / "srv").mkdir()
        (merged / "srv/data").write_text("new")
    finally:
        unmount(merged)
    upper, lowers = writable_dir(mounts), lower_dirs(mounts)
    assert len(lowers) == 3
    out = io.BytesIO()
    diff_id = write_diff(lowers, upper, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        entries = {m.name: m for m in tar}
        assert tar.extractfile(entries["etc/passwd"]).read() == b"root\nuser\n"
    assert set(entries) == {"etc", "etc/.wh.group", "etc/passwd", "srv", "srv/data"}
    assert diff_id.startswith("sha256:")
    assert {(c.kind, c.path) for c in changes(lowers, upper)} == {
        (ChangeKind.CHANGED, "/etc"), (ChangeKind.CHANGED, "/etc/passwd"),
        (ChangeKind.DELETED, "/etc/group"), (ChangeKind.ADDED, "/srv"),
        (ChangeKind.ADDED, "/srv/data"),
    }
    # the diff applied on top of the stack reproduces the container's view
    sn.commit("ctr-image", "ctr")
    view = sn.view("check", "ctr-image")
    mount_all(view, merged)
    try:
        assert (merged / "etc/passwd").read_text() == "root\nuser\n"
        assert not (merged / "etc/group").exists()
        assert (merged / "srv/data").read_text() == "new"
        with pytest.raises(OSError):
            (merged / "x").write_text("read-only")
    finally:
        unmount(merged)


def test_diff_reapplied_to_a_fresh_snapshot_matches(tmp):
    sn = OverlaySnapshotter(tmp / "root")
    top = unpack(sn)
    mounts = sn.prepare("ctr", top)
    upper = writable_dir(mounts)
    (upper / "etc").mkdir()
    os.mknod(upper / "etc/passwd", 0o020000, 0)  # a whiteout, as overlayfs makes it
    out = io.BytesIO()
    diff_id = write_diff(lower_dirs(mounts), upper, out)
    again = sn.prepare("reapply", top)
    result = apply_layer(io.BytesIO(out.getvalue()), writable_dir(again))
    assert result.diff_id == diff_id
    st = os.lstat(writable_dir(again) / "etc/passwd")
    assert st.st_rdev == 0 and (st.st_mode & 0o170000) == 0o020000


def test_parentless_snapshots_are_bind_mounts(tmp):
    sn = OverlaySnapshotter(tmp / "root")
    mounts = sn.prepare("base", None)
    assert mounts == [Mount(type="bind", source=str(writable_dir(mounts)), options=("rbind", "rw"))]
    target = tmp / "t"
    target.mkdir()
    mount_all(mounts, target)
    try:
        (target / "hello").write_text("hi")
    finally:
        unmount(target)
    assert (writable_dir(mounts) / "hello").read_text() == "hi"
    sn.commit("base-c", "base")
    view = sn.view("v", "base-c")
    assert view[0].type == "bind" and "ro" in view[0].options
    mount_all(view, target)
    try:
        assert (target / "hello").read_text() == "hi"
        with pytest.raises(OSError):
            (target / "nope").write_text("x")
    finally:
        unmount(target)


def test_metadata_lifecycle(tmp):
    sn = OverlaySnapshotter(tmp / "root")
    sn.prepare("a", None, labels={"x": "1"})
    with pytest.raises(AlreadyExists):
        sn.prepare("a", None)
    with pytest.raises(FailedPrecondition):
        sn.prepare("b", "a")  # parent must be committed
    with pytest.raises(NotFound):
        sn.prepare("b", "missing")
    (tmp / "root" / "snapshots" / str(1) / "fs" / "f").write_bytes(b"12345")
    assert sn.usage("a").size == 5
    sn.commit("A", "a", labels={"y": "2"})
    info = sn.stat("A")
    assert info.kind is Kind.COMMITTED and info.labels == {"x": "1", "y": "2"}
    with pytest.raises(NotFound):
        sn.stat("a")
    sn.prepare("b", "A")
    assert [i.key for i in sn.walk()] == ["A", "b"]
    with pytest.raises(FailedPrecondition, match="children"):
        sn.remove("A")
    sn.remove("b")
    sn.remove("A")
    assert list(sn.walk()) == []
    assert os.listdir(tmp / "root" / "snapshots") == []
    # reopening finds the same state; ids keep growing (never reused)
    sn.close()
    sn2 = OverlaySnapshotter(tmp / "root")
    sn2.prepare("c", None)
    assert os.listdir(tmp / "root" / "snapshots") == ["3"]


def test_cleanup_removes_orphan_dirs(tmp):
    sn = OverlaySnapshotter(tmp / "root")
    sn.prepare("a", None)
    (tmp / "root" / "snapshots" / "new-deadbeef" / "fs").mkdir(parents=True)
    sn.cleanup()
    assert os.listdir(tmp / "root" / "snapshots") == ["1"]


def test_too_many_layers_is_a_clear_error(tmp):
    """Mount options must fit in one page: the snapshotter says so at prepare time, not
    the kernel at mount time."""
    sn = OverlaySnapshotter(tmp / "root")
    parent = None
    for i in range(MAX_LOWERS + 1):
        try:
            sn.prepare(f"k{i}", parent)
        except FailedPrecondition as exc:
            assert "over one page" in str(exc) or "overlayfs allows" in str(exc)
            break
        sn.commit(f"n{i}", f"k{i}")
        parent = f"n{i}"
    else:
        pytest.fail("no limit was reported")
    assert i >= 40, "even a long tmp root should hold a typical image's layers"
    # the failed prepare left no directory behind
    assert len(os.listdir(tmp / "root" / "snapshots")) == i


def test_scratch_directories_commit_as_layers_in_any_order(tmp):
    """Layers extracted in parallel into scratch directories, then stacked in order:
    the result mounts like a stack made with prepare/commit."""
    sn = OverlaySnapshotter(tmp / "root")
    scratches = []
    for raw in reversed(LAYERS):  # filled top layer first: order must not matter
        fs = sn.scratch()
        apply_layer(io.BytesIO(raw), fs, whiteout_format="overlay")
        scratches.insert(0, fs)
    with pytest.raises(NotFound):
        sn.commit_scratch("layer-1", "layer-0", scratches[1])  # parent not there yet
    assert scratches[1].is_dir(), "a refused commit leaves the directory to the caller"
    parent = None
    for i, fs in enumerate(scratches):
        sn.commit_scratch(f"layer-{i}", parent, fs, labels={"n": str(i)})
        parent = f"layer-{i}"
    info = sn.stat("layer-2")
    assert (info.kind, info.parent, info.labels) == (Kind.COMMITTED, "layer-1", {"n": "2"})
    again = sn.scratch()
    with pytest.raises(AlreadyExists):
        sn.commit_scratch("layer-2", "layer-1", again)
    with pytest.raises(InvalidArgument, match="not a scratch directory"):
        sn.commit_scratch("other", None, tmp)
    sn.cleanup()  # the unused scratch directory goes
    assert sorted(os.listdir(tmp / "root" / "snapshots")) == ["1", "2", "3"]
    target = tmp / "mnt"
    target.mkdir()
    mount_all(sn.view("v", "layer-2"), target)
    try:
        assert sorted(os.listdir(target / "etc")) == ["group", "passwd"]
        assert sorted(os.listdir(target / "opt")) == ["fresh"]
    finally:
        unmount(target)


class _FullAtCommit:
    """The snapshotter's connection, whose next COMMIT fails as on a full disk (SQLite's
    SQLITE_FULL) before it reaches the database: the transaction stays open."""

    def __init__(self, db):
        self._db = db
        self.failures = 1

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_failed_create_leaves_nothing_that_blocks_later_creates(tmp):
    """Issue 15: a create whose COMMIT failed (full disk) had renamed its directory to
    the id SQLite then handed out again: every later create failed ("Directory not
    empty"), and the open transaction made every later BEGIN fail too."""
    sn = OverlaySnapshotter(tmp / "root")
    snaps = tmp / "root" / "snapshots"
    sn.prepare("base", None)
    sn.commit("BASE", "base")
    real = sn._db
    sn._db = _FullAtCommit(real)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        sn.prepare("lost", "BASE")
    assert os.listdir(snaps) == ["1"], "the failed create left a directory"
    assert [i.key for i in sn.walk()] == ["BASE"]
    for key in ("next", "after"):
        sn.prepare(key, "BASE")
    assert sorted(i.key for i in sn.walk()) == ["BASE", "after", "next"]
    assert sorted(os.listdir(snaps)) == ["1", "2", "3"]

    # a scratch layer whose COMMIT failed goes back to the caller, and commits later
    fs = sn.scratch()
    (fs / "f").write_text("layer")
    sn._db = _FullAtCommit(real)
    with pytest.raises(sqlite3.OperationalError):
        sn.commit_scratch("LAYER", "BASE", fs)
    assert (fs / "f").read_text() == "layer"
    sn.commit_scratch("LAYER", "BASE", fs)
    assert sn.stat("LAYER").kind is Kind.COMMITTED
    assert not fs.exists()


def test_stale_directory_at_a_reissued_id_is_replaced(tmp):
    """What the old code (or a crash between rename and COMMIT) left: a directory at the
    id the next create gets. The create takes the id over instead of failing."""
    sn = OverlaySnapshotter(tmp / "root")
    sn.prepare("a", None)
    stale = tmp / "root" / "snapshots" / "2" / "fs"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("x")
    sn.prepare("b", None)
    assert sn.usage("b").size == 0 and not (stale / "junk").exists()
