"""Hostile layer tars, built at test time (no binary tars in the repository).

Each :class:`Case` builds a layer given the absolute path of a *canary* directory that sits
next to the destination, and says what must happen: ``"reject"`` (apply_layer raises a
ConchError) or ``"contain"`` (it succeeds, and whatever it wrote is inside dest). Either
way the canary must be untouched; ``check`` adds case-specific assertions on dest.

The canary holds ``file`` (b"canary") and ``sub/inner``.
"""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    build: Callable[[Path], bytes]
    expect: str  # "reject" | "contain"
    check: Callable[[Path, Path], None] | None = None  # (dest, canary)
    needs_root: bool = False


# -- builders -------------------------------------------------------------------------


class _Tar:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def file(self, name, data=b"pwned", **kw):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = kw.pop("mode", 0o644)
        for k, v in kw.items():
            setattr(info, k, v)
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def node(self, name, type_, linkname="", **kw):
        info = tarfile.TarInfo(name)
        info.type = type_
        info.linkname = linkname
        info.mode = kw.pop("mode", 0o755)
        for k, v in kw.items():
            setattr(info, k, v)
        self.tar.addfile(info)
        return self

    def dir(self, name, **kw):
        return self.node(name, tarfile.DIRTYPE, **kw)

    def sym(self, name, target):
        return self.node(name, tarfile.SYMTYPE, target)

    def link(self, name, target):
        return self.node(name, tarfile.LNKTYPE, target)

    def raw(self, data: bytes):
        """Append raw bytes (must be whole 512-byte blocks) mid-archive."""
        self.tar.fileobj.write(data)
        self.tar.offset += len(data)
        return self

    def bytes(self, close=True) -> bytes:
        if close:
            self.tar.close()
        return self.buf.getvalue()


def raw_header(name: bytes, typeflag: bytes, size: int = 0, linkname: bytes = b"",
               good_checksum: bool = True, size_field: bytes | None = None) -> bytes:
    """A ustar header block written by hand, for what tarfile refuses to write."""
    def octal(n, width):
        return (b"%0*o" % (width - 1, n)) + b"\0"

    fields = [
        name.ljust(100, b"\0")[:100], octal(0o644, 8), octal(0, 8), octal(0, 8),
        size_field if size_field is not None else octal(size, 12), octal(0, 12),
        b" " * 8, typeflag, linkname.ljust(100, b"\0")[:100], b"ustar\x00", b"00",
        b"\0" * 32, b"\0" * 32, octal(0, 8), octal(0, 8), b"\0" * 155, b"\0" * 12,
    ]
    block = bytearray(b"".join(fields))
    assert len(block) == 512
    chk = sum(block)
    if not good_checksum:
        chk += 1
    block[148:156] = b"%06o\0 " % chk
    return bytes(block)


def pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode() + body) != n:
        n += 1
    return str(n).encode() + body


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def _pax_then(records: bytes, header: bytes, data: bytes = b"") -> bytes:
    return (raw_header(b"PaxHeader", b"x", len(records)) + _pad(records) + header + _pad(data)
            + b"\0" * 1024)


def _inside(canary: Path) -> str:
    """The canary's absolute path as a name inside dest."""
    return str(canary).lstrip("/")


# -- checks ---------------------------------------------------------------------------


def _exists(rel_fn):
    def check(dest: Path, canary: Path):
        p = dest / rel_fn(canary)
        assert os.path.lexists(p), f"{p} should exist inside dest"
    return check


def _regular(rel):
    def check(dest: Path, canary: Path):
        st = os.lstat(dest / rel)
        assert stat.S_ISREG(st.st_mode)
    return check


def _no_bad_xattrs(dest: Path, canary: Path):
    keys = os.listxattr(dest / "f", follow_symlinks=False)
    assert "trusted.overlay.redirect" not in keys
    assert "security.selinux" not in keys
    assert "user.ok" in keys


def _no_setuid_dir(dest: Path, canary: Path):
    assert not os.lstat(dest / "d").st_mode & stat.S_ISUID
    assert os.lstat(dest / "f").st_mode & stat.S_ISUID


def _devices(dest: Path, canary: Path):
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.lstat(dest / "dev/mem").st_mode)
        assert stat.S_ISBLK(os.lstat(dest / "dev/sda").st_mode)
    assert stat.S_ISFIFO(os.lstat(dest / "dev/fifo").st_mode)


def _hardlink_inside(dest: Path, canary: Path):
    assert os.lstat(dest / "h").st_ino == os.lstat(dest / "canary/file").st_ino


# -- the corpus -----------------------------------------------------------------------


def _garbage(_: Path) -> bytes:
    return random.Random(1234).randbytes(8192)


CASES: list[Case] = [
    Case(name="dotdot-file", expect="reject",
         build=lambda c: _Tar().file("../canary/pwned").bytes()),
    Case(name="dotdot-deep", expect="reject",
         build=lambda c: _Tar().file("a/../../canary/pwned").bytes()),
    Case(name="dotdot-dir", expect="reject",
         build=lambda c: _Tar().dir("../canary/newdir").bytes()),
    Case(name="absolute-name", expect="contain",
         build=lambda c: _Tar().file(str(c / "pwned")).bytes(),
         check=_exists(lambda c: _inside(c) + "/pwned")),
    Case(name="symlink-absolute-then-file", expect="contain",
         build=lambda c: _Tar().sym("a", str(c)).file("a/pwned").bytes(),
         check=_exists(lambda c: _inside(c) + "/pwned")),
    Case(name="symlink-etc-then-passwd", expect="contain",
         build=lambda c: _Tar().sym("a", "/etc").file("a/passwd").bytes(),
         check=_exists(lambda c: "etc/passwd")),
    Case(name="symlink-dotdot-then-file", expect="contain",
         build=lambda c: _Tar().sym("a", "../../../../../../..").file("a/x").bytes(),
         check=_exists(lambda c: "x")),
    Case(name="symlink-sibling-canary", expect="contain",
         build=lambda c: _Tar().sym("a", "../canary").file("a/pwned").bytes(),
         check=_exists(lambda c: "canary/pwned")),
    Case(name="symlink-chain", expect="contain",
         build=lambda c: _Tar().sym("a", "b").sym("b", str(c.parent)).file("a/canary/pwned").bytes(),
         check=_exists(lambda c: _inside(c) + "/pwned")),
    Case(name="symlink-root-then-dirs", expect="contain",
         build=lambda c: _Tar().sym("a", "/").dir("a/etc").file("a/etc/shadow").bytes(),
         check=_exists(lambda c: "etc/shadow")),
    Case(name="symlink-then-regular-replaces", expect="contain",
         build=lambda c: _Tar().sym("f", str(c / "file")).file("f", b"new").bytes(),
         check=_regular("f")),
    Case(name="symlink-then-dir-replaces", expect="contain",
         build=lambda c: _Tar().sym("d", str(c)).dir("d").file("d/pwned").bytes(),
         check=_exists(lambda c: "d/pwned")),
    Case(name="symlink-loop", expect="reject",
         build=lambda c: _Tar().sym("a", "b").sym("b", "a").file("a/x").bytes()),
    Case(name="symlink-is-root", expect="reject",
         build=lambda c: _Tar().sym(".", "/").bytes()),
    Case(name="file-is-root", expect="reject",
         build=lambda c: _Tar().file("./").bytes()),
    Case(name="hardlink-dotdot", expect="reject",
         build=lambda c: _Tar().link("h", "../canary/file").bytes()),
    Case(name="hardlink-absolute", expect="reject",
         build=lambda c: _Tar().link("h", str(c / "file")).bytes()),
    Case(name="hardlink-through-symlink", expect="reject",
         build=lambda c: _Tar().sym("s", str(c)).link("h", "s/file").bytes()),
    Case(name="hardlink-through-relative-symlink", expect="reject",
         build=lambda c: _Tar().sym("s", "../canary").link("h", "s/file").bytes()),
    Case(name="hardlink-through-symlink-written", expect="contain",
         build=lambda c: _Tar().sym("s", "../canary").file("s/file").link("h", "s/file").bytes(),
         check=_hardlink_inside),
    Case(name="hardlink-to-dir", expect="reject",
         build=lambda c: _Tar().dir("d").link("h", "d").bytes()),
    Case(name="file-then-file-under-it", expect="reject",
         build=lambda c: _Tar().file("a").file("a/b").bytes()),
    Case(name="unknown-type", expect="reject",
         build=lambda c: raw_header(b"v", b"V", 0) + b"\0" * 1024),
    Case(name="hardlink-into-what-it-replaces", expect="reject",
         build=lambda c: _Tar().file("a/b").link("a", "a/b").bytes()),
    Case(name="name-too-long", expect="reject",
         build=lambda c: _Tar().file("d/" + "é" * 128).bytes()),
    Case(name="symlink-target-too-long", expect="reject",
         build=lambda c: _Tar().sym("s", "t" * 4096).bytes()),
    Case(name="devices", expect="contain",
         build=lambda c: _Tar().dir("dev")
         .node("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1)
         .node("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
         .node("dev/fifo", tarfile.FIFOTYPE).bytes(),
         check=_devices),
    Case(name="device-dotdot", expect="reject",
         build=lambda c: _Tar().node("../canary/mem", tarfile.CHRTYPE, devmajor=1, devminor=1).bytes()),
    Case(name="device-through-symlink", expect="contain",
         build=lambda c: _Tar().sym("d", str(c)).node("d/mem", tarfile.CHRTYPE, devmajor=1, devminor=1).bytes(),
         check=_exists(lambda c: _inside(c) + "/mem"), needs_root=True),
    Case(name="garbage", expect="reject", build=_garbage),
    Case(name="empty-stream", expect="reject", build=lambda c: b""),
    Case(name="bad-checksum-after-member", expect="reject",
         build=lambda c: _Tar().file("ok").raw(raw_header(b"evil", b"0", 0, good_checksum=False)).bytes()),
    Case(name="truncated-data", expect="reject",
         build=lambda c: raw_header(b"big", b"0", 10000) + b"x" * 512),
    Case(name="truncated-header", expect="reject",
         build=lambda c: _Tar().file("ok").bytes(close=False) + raw_header(b"half", b"0")[:200]),
    Case(name="huge-size-no-data", expect="reject",
         build=lambda c: raw_header(b"big", b"0", size_field=b"77777777777\0") + b"\0" * 1024),
    Case(name="pax-huge-size", expect="reject",
         build=lambda c: raw_header(b"PaxHeader", b"x", size_field=b"77777777777\0") + b"\0" * 4096),
    Case(name="gnu-longname-huge", expect="reject",
         build=lambda c: raw_header(b"././@LongLink", b"L", size_field=b"77777777777\0") + b"\0" * 4096),
    Case(name="gnu-longname-dotdot", expect="reject",
         build=lambda c: raw_header(b"././@LongLink", b"L", 17) + _pad(b"../canary/pwned\0\0")
         + raw_header(b"x", b"0", 0) + b"\0" * 1024),
    Case(name="pax-path-nul", expect="reject",
         build=lambda c: _pax_then(pax_record("path", b"a\x00/../../canary/pwned"),
                                   raw_header(b"x", b"0", 5), b"pwned")),
    Case(name="pax-linkpath-nul", expect="reject",
         build=lambda c: _pax_then(pax_record("linkpath", b"/etc\x00x"), raw_header(b"s", b"2"))),
    Case(name="pax-huge-uid", expect="reject",
         build=lambda c: _pax_then(pax_record("uid", b"99999999999999999999999"),
                                   raw_header(b"x", b"0", 5), b"pwned")),
    Case(name="pax-huge-mtime", expect="reject",
         build=lambda c: _pax_then(pax_record("mtime", b"1e300"), raw_header(b"x", b"0", 5), b"pwned")),
    Case(name="ustar-name-nul-truncates", expect="contain",
         build=lambda c: raw_header(b"abc\x00../../canary/pwned", b"0", 0) + b"\0" * 1024,
         check=_exists(lambda c: "abc")),
    Case(name="whiteout-dotdot", expect="reject",
         build=lambda c: _Tar().file("../.wh.canary", b"").bytes()),
    Case(name="whiteout-of-dotdot", expect="reject",
         build=lambda c: _Tar().dir("a").file("a/.wh..", b"").bytes()),
    Case(name="whiteout-through-symlink", expect="contain",
         build=lambda c: _Tar().sym("a", str(c)).file("a/.wh.file", b"").bytes()),
    Case(name="whiteout-through-relative-symlink", expect="contain",
         build=lambda c: _Tar().sym("a", "../canary").file("a/.wh.file", b"").bytes()),
    Case(name="opaque-through-symlink", expect="contain",
         build=lambda c: _Tar().sym("a", str(c)).file("a/.wh..wh..opq", b"").bytes()),
    Case(name="opaque-through-relative-symlink", expect="contain",
         build=lambda c: _Tar().sym("a", "..").file("a/.wh..wh..opq", b"").bytes()),
    Case(name="xattr-smuggling", expect="contain",
         build=lambda c: _Tar().file("f", pax_headers={
             "SCHILY.xattr.trusted.overlay.redirect": "/canary",
             "SCHILY.xattr.security.selinux": "system_u:object_r:etc_t:s0",
             "SCHILY.xattr.user.ok": "1"}).bytes(),
         check=_no_bad_xattrs),
    Case(name="setuid-only-on-files", expect="contain",
         build=lambda c: _Tar().dir("d", mode=0o4755).file("f", mode=0o4755).bytes(),
         check=_no_setuid_dir),
]
