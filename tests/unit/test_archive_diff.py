import io
import os
import stat
import tarfile

import pytest

from conch.archive.apply import apply_layer
from conch.archive.diff import Change, ChangeKind, changes, write_diff, write_tar

ROOT = os.geteuid() == 0


def build_tree(top):
    (top / "etc").mkdir(parents=True)
    (top / "etc/hosts").write_text("127.0.0.1 localhost\n")
    os.link(top / "etc/hosts", top / "etc/hosts.bak")
    os.symlink("hosts", top / "etc/hosts.link")
    (top / "bin").mkdir()
    (top / "bin/sh").write_bytes(b"\x7fELF")
    os.chmod(top / "bin/sh", 0o4755)
    os.setxattr(top / "bin/sh", "user.tag", b"\xff\x00binary")
    os.mkfifo(top / "fifo")
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (1_000_000, 1_000_000), follow_symlinks=False)


def members(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.type, m.linkname, m.mode, m.mtime, dict(m.pax_headers)) for m in tar]


def test_write_tar_is_deterministic_pax_and_sorted(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_tree(a)
    build_tree(b)
    out_a, out_b = io.BytesIO(), io.BytesIO()
    assert write_tar(a, out_a) == write_tar(b, out_b)
    assert out_a.getvalue() == out_b.getvalue()
    names = [m[0] for m in members(out_a.getvalue())]
    assert names == ["bin", "etc", "fifo", "bin/sh", "etc/hosts", "etc/hosts.bak", "etc/hosts.link"]
    with tarfile.open(fileobj=io.BytesIO(out_a.getvalue())) as tar:
        by = {m.name: m for m in tar}
    assert by["etc/hosts.bak"].islnk() and by["etc/hosts.bak"].linkname == "etc/hosts"
    assert by["etc/hosts.link"].issym() and by["etc/hosts.link"].linkname == "hosts"
    assert by["bin/sh"].mode == 0o4755
    assert by["bin/sh"].pax_headers["SCHILY.xattr.user.tag"].encode("utf-8", "surrogateescape") == b"\xff\x00binary"
    assert by["fifo"].isfifo()
    assert by["bin"].uname == ""


def test_tar_round_trip_through_apply(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_tree(src)
    dst.mkdir()
    first = io.BytesIO()
    digest = write_tar(src, first)
    result = apply_layer(io.BytesIO(first.getvalue()), dst, whiteout_format="plain")
    assert result.diff_id == digest
    again = io.BytesIO()
    os.utime(dst, (1_000_000, 1_000_000))
    assert write_tar(dst, again) == digest
    assert os.getxattr(dst / "bin/sh", "user.tag") == b"\xff\x00binary"


def test_write_diff_converts_whiteouts(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/gone").write_text("x")
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc/gone", stat.S_IFCHR, 0)  # overlayfs whiteout
    os.mknod(upper / "etc/never-was", stat.S_IFCHR, 0)
    (upper / "etc/new").write_text("y")
    if ROOT:
        (upper / "opt").mkdir()
        os.setxattr(upper / "opt", "trusted.overlay.opaque", b"y")
    out = io.BytesIO()
    write_diff([lower], upper, out)
    names = [m[0] for m in members(out.getvalue())]
    expected = ["etc"] + (["opt"] if ROOT else []) + ["etc/.wh.gone", "etc/new"]
    if ROOT:
        expected.append("opt/.wh..wh..opq")
    assert names == expected
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        for m in tar:
            assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for k in m.pax_headers)
    # without lowers every whiteout is kept
    out2 = io.BytesIO()
    write_diff(None, upper, out2)
    assert "etc/.wh.never-was" in [m[0] for m in members(out2.getvalue())]


def test_write_diff_refuses_redirects(tmp_path):
    if not ROOT:
        pytest.skip("trusted xattrs need root")
    from conch.errors import FailedPrecondition

    (tmp_path / "moved").mkdir()
    os.setxattr(tmp_path / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(FailedPrecondition, match="redirect"):
        write_diff(None, tmp_path, io.BytesIO())


def test_changes_lists_added_changed_deleted(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/passwd").write_text("old")
    (lower / "etc/motd").write_text("hi")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/passwd").write_text("new")
    os.mknod(upper / "etc/motd", stat.S_IFCHR, 0)
    (upper / "tmp").mkdir()
    (upper / "tmp/file").write_text("z")
    assert changes([lower], upper) == [
        Change(kind=ChangeKind.CHANGED, path="/etc"),
        Change(kind=ChangeKind.DELETED, path="/etc/motd"),
        Change(kind=ChangeKind.CHANGED, path="/etc/passwd"),
        Change(kind=ChangeKind.ADDED, path="/tmp"),
        Change(kind=ChangeKind.ADDED, path="/tmp/file"),
    ]
