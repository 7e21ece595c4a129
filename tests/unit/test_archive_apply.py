import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest
import zstandard
from hypothesis import given, strategies as st

from conch.archive.apply import apply_layer, clean_name
from conch.errors import InvalidArgument

ROOT = os.geteuid() == 0


def layer(*entries) -> bytes:
    """entries: (name, type, extra dict) built into a PAX tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            data = extra.pop("data", None)
            info.type = kind
            info.mode = extra.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            info.mtime = extra.pop("mtime", 1_600_000_000)
            for k, v in extra.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def f(name, data=b"x", **kw):
    return (name, tarfile.REGTYPE, {"data": data, **kw})


def d(name, **kw):
    return (name, tarfile.DIRTYPE, kw)


def sym(name, target, **kw):
    return (name, tarfile.SYMTYPE, {"linkname": target, **kw})


def hard(name, target):
    return (name, tarfile.LNKTYPE, {"linkname": target})


def test_apply_writes_tree_and_reports_diff_id(tmp_path):
    raw = layer(
        d("etc", mtime=1000, mode=0o750),
        f("etc/passwd", b"root:x:0:0\n", mtime=2000, mode=0o4755,
          pax_headers={"SCHILY.xattr.user.note": "hi"}),
        hard("etc/passwd-", "etc/passwd"),
        sym("etc/alias", "/etc/passwd", mtime=3000),
        f("usr/bin/tool", b"#!/bin/sh\n"),  # implicit parents
    )
    result = apply_layer(io.BytesIO(raw), tmp_path, whiteout_format="plain")
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(raw)
    passwd = tmp_path / "etc/passwd"
    assert passwd.read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o4755
    assert passwd.stat().st_mtime == 2000
    assert os.getxattr(passwd, "user.note") == b"hi"
    assert (tmp_path / "etc/passwd-").stat().st_ino == passwd.stat().st_ino
    assert os.readlink(tmp_path / "etc/alias") == "/etc/passwd"
    assert os.lstat(tmp_path / "etc/alias").st_mtime == 3000
    # directory times are set after their children were written
    assert (tmp_path / "etc").stat().st_mtime == 1000
    assert stat.S_IMODE((tmp_path / "etc").stat().st_mode) == 0o750
    assert (tmp_path / "usr/bin/tool").exists()


@pytest.mark.parametrize("pack", [lambda b: b, gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)])
def test_diff_id_is_of_the_uncompressed_tar(tmp_path, pack):
    raw = layer(f("a", b"hello"))
    result = apply_layer(io.BytesIO(pack(raw)), tmp_path)
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_trailing_padding_counts_in_diff_id(tmp_path):
    raw = layer(f("a")) + b"\0" * 4096
    assert apply_layer(io.BytesIO(raw), tmp_path).size == len(raw)


@pytest.mark.skipif(not ROOT, reason="ownership needs root")
def test_ownership_is_applied(tmp_path):
    raw = layer(f("a", uid=1234, gid=5678), sym("s", "a", uid=42, gid=43))
    apply_layer(io.BytesIO(raw), tmp_path)
    st = (tmp_path / "a").stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    lst = os.lstat(tmp_path / "s")
    assert (lst.st_uid, lst.st_gid) == (42, 43)


def test_setuid_only_on_regular_files(tmp_path):
    apply_layer(io.BytesIO(layer(d("dir", mode=0o6755), f("file", mode=0o6755))), tmp_path)
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o2755
    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o6755


def test_security_xattrs_are_dropped_except_capability(tmp_path):
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12  # cap_net_bind_service
    raw = layer(f("bin", pax_headers={
        "SCHILY.xattr.security.selinux": "x",
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.keep": "1",
        **({"SCHILY.xattr.security.capability": cap} if ROOT else {}),
    }))
    apply_layer(io.BytesIO(raw), tmp_path)
    keys = set(os.listxattr(tmp_path / "bin"))
    assert "user.keep" in keys
    assert "security.selinux" not in keys and "trusted.overlay.opaque" not in keys
    if ROOT:
        assert os.getxattr(tmp_path / "bin", "security.capability") == cap.encode("latin-1")


def test_later_entries_replace_earlier_ones(tmp_path):
    raw = layer(
        d("x"), f("x/child"),
        d("x", mode=0o700),  # dir over dir: children stay, metadata changes
        f("y"), d("y"),  # dir over file
        d("z"), f("z/c"), f("z", b"file now"),  # file over dir
        sym("w", "/nowhere"), f("w", b"plain"),  # file over symlink: the link is not followed
    )
    apply_layer(io.BytesIO(raw), tmp_path, whiteout_format="plain")
    assert (tmp_path / "x/child").exists()
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700
    assert (tmp_path / "y").is_dir()
    assert (tmp_path / "z").read_bytes() == b"file now"
    assert not os.path.islink(tmp_path / "w")


def test_plain_whiteouts_delete_lower_paths(tmp_path):
    apply_layer(io.BytesIO(layer(d("etc"), f("etc/old"), f("etc/keep"), d("var/cache"),
                                 f("var/cache/a"), f("var/cache/b"))), tmp_path, whiteout_format="plain")
    apply_layer(io.BytesIO(layer(
        f("etc/.wh.old", b""),
        f("etc/.wh.missing", b""),  # hides nothing: fine
        d("var/cache"),
        f("var/cache/.wh..wh..opq", b""),
        f("var/cache/new"),
        f(".wh..wh.plnk", b""),  # aufs bookkeeping: ignored
    )), tmp_path, whiteout_format="plain")
    assert not (tmp_path / "etc/old").exists()
    assert (tmp_path / "etc/keep").exists()
    assert sorted(os.listdir(tmp_path / "var/cache")) == ["new"]
    assert not (tmp_path / ".wh..wh.plnk").exists()
    assert not any(n.startswith(".wh.") for _, _, names in os.walk(tmp_path) for n in names)


def test_opaque_after_this_layers_children_keeps_them(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/lower").write_text("old")
    raw = layer(d("dir"), f("dir/mine"), f("dir/.wh..wh..opq", b""))
    apply_layer(io.BytesIO(raw), tmp_path, whiteout_format="plain")
    assert os.listdir(tmp_path / "dir") == ["mine"]


@pytest.mark.skipif(not ROOT, reason="trusted.overlay.* xattrs need root")
def test_overlay_whiteouts_become_char_devices_and_xattrs(tmp_path):
    raw = layer(d("etc"), f("etc/.wh.passwd", b""), d("opt"), f("opt/.wh..wh..opq", b""))
    apply_layer(io.BytesIO(raw), tmp_path, whiteout_format="overlay")
    st = os.lstat(tmp_path / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "opt", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "opt/.wh..wh..opq").exists()


def test_devices_skipped_without_root_fifos_always(tmp_path, caplog):
    raw = layer(("dev/null", tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}),
                ("dev/pipe", tarfile.FIFOTYPE, {}))
    apply_layer(io.BytesIO(raw), tmp_path)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "dev/pipe").st_mode)
    if ROOT:
        assert os.lstat(tmp_path / "dev/null").st_rdev == os.makedev(1, 3)
    else:
        assert not (tmp_path / "dev/null").exists()
        assert "needs root" in caplog.text


def test_hardlink_must_target_this_layer(tmp_path):
    (tmp_path / "lower").write_text("x")
    with pytest.raises(InvalidArgument, match="did not write"):
        apply_layer(io.BytesIO(layer(hard("h", "lower"))), tmp_path, whiteout_format="plain")


def test_bad_whiteout_format(tmp_path):
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(layer()), tmp_path, whiteout_format="aufs")


@pytest.mark.parametrize("name, parts", [
    ("a/b", ("a", "b")),
    ("/a//b/", ("a", "b")),
    ("./a/./b", ("a", "b")),
    ("a/../b", ("b",)),
    ("", ()),
    ("/", ()),
])
def test_clean_name_table(name, parts):
    assert clean_name(name) == parts


@pytest.mark.parametrize("name", ["..", "../a", "a/../../b", "/../a", "a\x00b"])
def test_clean_name_rejects(name):
    with pytest.raises(InvalidArgument):
        clean_name(name)


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c.d", ".wh.x"]), max_size=8))
def test_clean_name_never_escapes(components):
    name = "/".join(components)
    try:
        parts = clean_name(name)
    except InvalidArgument:
        return
    assert all(p not in ("", ".", "..") and "/" not in p for p in parts)
    assert os.path.normpath(os.path.join("/root", *parts)).startswith("/root")
