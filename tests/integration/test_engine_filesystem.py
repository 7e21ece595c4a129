"""conch.engine.containers.filesystem on real trees: ``docker cp`` (stat, archive, extract) against
a plain directory (hostile tars included), then on real overlay mounts: which root
``rootfs_of`` gives a stopped and a running container, ``diff`` hiding the runtime's
mount points, and ``commit`` making an image whose new container sees the changes.
Every overlay test checks that it leaked no mount."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from conch.api.routes_archive import stat_header
from conch.archive import write_tar
from conch.content.store import ContentStore
from conch.engine.containers import changes, rootfs_tar
from conch.engine.containers import filesystem as fs
from conch.engine.containers.service import Paths
from conch.engine.events import EventBus
from conch.engine.model import Container, CreateSpec
from conch.errors import InvalidArgument
from conch.images.importer import import_image
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.oci.image import ExecutionConfig
from conch.snapshots import mount_all, unmount, writable_dir
from conch.snapshots.overlay import OverlaySnapshotter
from conch.testing.rootfs import find_busybox


def mounts_under(path: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(path) or mp.startswith(str(path) + "/"):
            found.append(mp)
    return found


def tar_of(*entries) -> io.BytesIO:
    """entries: (name, kind, data-or-linkname) with kind in file/dir/sym/link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}[kind]
            info.linkname = data or ""
            tar.addfile(info)
    buf.seek(0)
    return buf


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


@pytest.fixture
def tree(tmp_path):
    """A container-like root next to a "host" directory it must never reach."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("box\n")
    (root / "d/sub").mkdir(parents=True)
    (root / "d/a").write_text("a")
    (root / "d/sub/b").write_text("bb")
    os.link(root / "d/a", root / "d/a-hard")
    (root / "abs").symlink_to("/etc")  # absolute: /etc of the container
    (root / "up").symlink_to("../../../../..")  # climbs: stops at the container root
    (root / "dlink").symlink_to("d")
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host")
    return root, host


# -- stat ------------------------------------------------------------------------------

@pytest.mark.parametrize("given,expected", [
    ("x", "/x"), ("/x/", "/x/"), ("/x/.", "/x/."), ("x/./", "/x/"), ("/", "/"),
    ("//a//b", "/a/b"), ("/a/../..", "/"), (".", "/."), ("a/..", "/"),
])
def test_abs_path_keeps_trailing_dot_or_slash(given, expected):
    assert rootfs_tar._abs_path(given) == expected


def test_go_mode_bits():
    import stat as st

    assert rootfs_tar.go_mode(st.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert rootfs_tar.go_mode(st.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert rootfs_tar.go_mode(st.S_IFCHR | 0o600) == (1 << 26) | (1 << 21) | 0o600
    assert rootfs_tar.go_mode(st.S_IFREG | st.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert rootfs_tar.go_mode(st.S_IFDIR | st.S_ISVTX | 0o777) == (1 << 31) | (1 << 20) | 0o777


def test_stat_file_dir_and_symlinks(tree):
    root, _ = tree
    os.chmod(root / "d/a", 0o640)
    f = rootfs_tar.stat_path(root, "/d/a")
    assert (f.name, f.size, f.mode, f.link_target) == ("a", 1, 0o640, "")
    assert f.mtime.endswith("Z") and f.mtime[:4].isdigit()
    d = rootfs_tar.stat_path(root, "/d/")
    assert d.name == "d" and d.mode & (1 << 31)
    link = rootfs_tar.stat_path(root, "/abs")
    assert link.mode & (1 << 27) and link.link_target == "/etc"
    assert rootfs_tar.stat_path(root, "/up").link_target == "/"
    assert rootfs_tar.stat_path(root, "/dlink/").mode & (1 << 31)  # a trailing slash follows it
    assert rootfs_tar.stat_path(root, "/").name == "/"
    with pytest.raises(FileNotFoundError):
        rootfs_tar.stat_path(root, "/nope")
    with pytest.raises(FileNotFoundError):
        rootfs_tar.stat_path(root, "/d/a/below-a-file")


def test_stat_header_is_dockers_base64_json(tree):
    root, _ = tree
    body = json.loads(base64.b64decode(stat_header(rootfs_tar.stat_path(root, "/abs"))))
    assert set(body) == {"name", "size", "mode", "mtime", "linkTarget"}
    assert body["name"] == "abs" and body["linkTarget"] == "/etc"


# -- archive (cp out) --------------------------------------------------------------------

def test_archive_of_a_file_and_of_a_directory(tree):
    root, _ = tree
    out = io.BytesIO()
    rootfs_tar.get_archive(root, "/etc/hostname", out)
    assert names(out.getvalue()) == ["hostname"]
    out = io.BytesIO()
    rootfs_tar.get_archive(root, "/d", out)
    assert names(out.getvalue()) == ["d", "d/a", "d/a-hard", "d/sub", "d/sub/b"]
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getmember("d/a-hard").islnk() and tar.getmember("d/a-hard").linkname == "d/a"
        assert tar.getmember("d").isdir() and tar.extractfile("d/sub/b").read() == b"bb"


def test_archive_contents_only_and_symlink_rebase(tree):
    root, _ = tree
    out = io.BytesIO()
    rootfs_tar.get_archive(root, "/d/.", out)
    assert names(out.getvalue())[:2] == [".", "./a"]
    out = io.BytesIO()
    rootfs_tar.get_archive(root, "/dlink/", out)  # followed, but named as asked
    assert names(out.getvalue())[:2] == ["dlink", "dlink/a"]
    out = io.BytesIO()
    rootfs_tar.get_archive(root, "/dlink", out)  # not followed: the link itself
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        [m] = tar.getmembers()
        assert m.issym() and m.linkname == "d"


def test_archive_never_leaves_the_root(tree):
    root, host = tree
    out = io.BytesIO()
    rootfs_tar.get_archive(root, "/up/etc/hostname", out)  # ../../.. stops at the container root
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.extractfile("hostname").read() == b"box\n"
    (root / "hostlink").symlink_to(str(host))
    with pytest.raises(FileNotFoundError):
        rootfs_tar.get_archive(root, "/hostlink/secret", io.BytesIO())


# -- extract (cp in) ---------------------------------------------------------------------

def test_extract_into_a_directory_and_through_a_symlink(tree):
    root, _ = tree
    rootfs_tar.put_archive(root, "/d", tar_of(("new", "dir", None), ("new/f", "file", b"x")))
    assert (root / "d/new/f").read_bytes() == b"x"
    rootfs_tar.put_archive(root, "/abs", tar_of(("passwd", "file", b"root")))  # /abs -> /etc
    assert (root / "etc/passwd").read_text() == "root"
    rootfs_tar.put_archive(root, "/", tar_of(("./", "dir", None), ("top", "file", b"t")))
    assert (root / "top").read_bytes() == b"t"


def test_extract_errors_as_docker(tree):
    root, _ = tree
    with pytest.raises(FileNotFoundError):
        rootfs_tar.put_archive(root, "/missing", tar_of(("f", "file", b"")))
    with pytest.raises(InvalidArgument, match="not a directory"):
        rootfs_tar.put_archive(root, "/d/a", tar_of(("f", "file", b"")))
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        rootfs_tar.put_archive(root, "/", tar_of(("d", "file", b"")), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
        rootfs_tar.put_archive(root, "/d", tar_of(("a", "dir", None)), no_overwrite_dir_non_dir=True)
    assert (root / "d/sub/b").exists() and (root / "d/a").is_file()
    rootfs_tar.put_archive(root, "/d", tar_of(("a", "dir", None)))  # allowed without the flag
    assert (root / "d/a").is_dir()


def test_extract_hostile_tars_stay_inside(tree, tmp_path):
    root, host = tree
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InvalidArgument):
        rootfs_tar.put_archive(root, "/d", tar_of(("../../host/pwned", "file", b"x")))
    with pytest.raises(InvalidArgument):
        rootfs_tar.put_archive(root, "/d", tar_of(("a.txt", "file", b""), ("h", "link", "../../../host/secret")))
    # a symlink in the tar, then a file through it: resolved in the container's scope
    rootfs_tar.put_archive(root, "/d", tar_of(("esc", "sym", "/"), ("esc/pwned", "file", b"x")))
    rootfs_tar.put_archive(root, "/d", tar_of(("esc2", "sym", str(host)), ("esc2/pwned", "file", b"x")))
    rootfs_tar.put_archive(root, "/", tar_of(("up/pwned2", "file", b"x")))  # up -> ../../../..
    assert (root / "pwned").read_bytes() == b"x"
    assert (root / str(host).lstrip("/") / "pwned").read_bytes() == b"x"
    assert (root / "pwned2").exists()
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_extract_refuses_whiteout_names_and_sets_owner(tree):
    root, _ = tree
    with pytest.raises(InvalidArgument, match="wh"):
        rootfs_tar.put_archive(root, "/d", tar_of((".wh.a", "file", b"")))
    assert (root / "d/a").exists()
    if os.geteuid() == 0:
        rootfs_tar.put_archive(root, "/d", tar_of(("owned", "file", b"")), owner=(1000, 1001))
        st = os.lstat(root / "d/owned")
        assert (st.st_uid, st.st_gid) == (1000, 1001)


def test_export_is_the_whole_tree(tree):
    root, _ = tree
    out = io.BytesIO()
    rootfs_tar.export(root, out)
    got = names(out.getvalue())
    assert {"etc/hostname", "d/sub/b", "abs", "up"} <= set(got)


def test_merge_config_is_mobys():
    user = ExecutionConfig(env=("A=1",), labels={"x": "1"})
    base = ExecutionConfig(env=("A=0", "PATH=/bin"), cmd=("sh",), entrypoint=("/init",),
                           working_dir="/w", labels={"y": "2"}, user="u")
    m = changes.merge_config(user, base)
    assert m.env == ("A=1", "PATH=/bin") and m.cmd == ("sh",) and m.entrypoint == ("/init",)
    assert m.labels == {"x": "1", "y": "2"} and m.working_dir == "/w" and m.user == "u"
    # an entrypoint of the user's own: the base's cmd is not inherited
    m = changes.merge_config(ExecutionConfig(entrypoint=("/e",)), base)
    assert m.entrypoint == ("/e",) and m.cmd is None


# -- overlay: rootfs_of, diff, commit (root) ----------------------------------------------

def _overlay_available() -> bool:
    return os.geteuid() == 0 and "overlay" in Path("/proc/filesystems").read_text()


overlay = pytest.mark.skipif(not _overlay_available(), reason="needs root and overlayfs")


class _Service:
    """The part of ContainerService that conch.engine.containers.filesystem uses."""

    def __init__(self, tmp: Path, images: ImageService, snapshotter):
        self.paths = Paths(str(tmp / "data"), str(tmp / "exec"))
        self.images = images
        self.snapshotter = snapshotter
        self.events = EventBus()
        self.records: dict[str, Container] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def get(self, ref: str) -> Container:
        return self.records[ref]


@pytest.fixture
def svc(tmp_path):
    try:
        busybox = find_busybox()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    # an image like the e2e one: no /etc, /proc...: the runtime makes those in the upper
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin/busybox")
    for applet in ("sh", "ls", "cat"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    db = Database(tmp_path / "metadata.db")
    sn = OverlaySnapshotter(tmp_path / "snapshots")
    images = ImageService(tmp_path / "images", ContentStore(tmp_path / "content"), sn, db)
    buf = io.BytesIO()
    write_tar(rootfs, buf)
    buf.seek(0)
    image = import_image(images, buf, "bb:fs", changes=['CMD ["sh"]', "ENV A=0 B=2"])
    service = _Service(tmp_path, images, sn)
    cid = "c" * 64
    images.prepare_rootfs(image, cid)
    service.records[cid] = Container(
        id=cid, name="fs", created="", image="bb:fs", image_id=str(image.id),
        spec=CreateSpec(image="bb:fs", cmd=("sleep", "9"), env=("A=1",)), path="sleep", args=("9",))
    os.makedirs(service.paths.rootfs(cid))
    yield service, cid
    sn.close()
    db.close()
    assert mounts_under(tmp_path) == [], "a test leaked a mount"


def _upper(service, cid) -> Path:
    return writable_dir(service.snapshotter.mounts(cid))


def _runtime_leftovers(upper: Path) -> None:
    """What the runtime leaves in a container's upper dir: empty mount points."""
    for d in ("proc", "sys", "dev", "etc"):
        (upper / d).mkdir()
    for f in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
        (upper / f).write_text("")


@overlay
def test_rootfs_of_a_stopped_container_mounts_its_snapshot(svc):
    service, cid = svc

    async def run():
        async with fs.rootfs_of(service, cid) as root:
            assert service._lock(cid).locked()  # no start meanwhile
            assert os.path.ismount(root) and (root / "bin/busybox").is_file()
            await asyncio.to_thread(rootfs_tar.put_archive, root, "/", tar_of(("new", "file", b"n")))
            kept = root
        assert not service._lock(cid).locked()
        assert not kept.exists()

    asyncio.run(run())
    assert (_upper(service, cid) / "new").read_bytes() == b"n"


@overlay
def test_rootfs_of_a_running_container_binds_the_live_mount(svc):
    service, cid = svc
    live = Path(service.paths.rootfs(cid))
    mount_all(service.snapshotter.mounts(cid), live)
    try:
        async def run():
            async with fs.rootfs_of(service, cid) as root:
                assert not service._lock(cid).locked()  # an exit must not wait for a copy
                assert root != live and os.path.ismount(root)
                await asyncio.to_thread(rootfs_tar.put_archive, root, "/bin", tar_of(("hi", "file", b"1")))
                assert (live / "bin/hi").read_bytes() == b"1"  # seen inside at once

        asyncio.run(run())
    finally:
        unmount(live)


@overlay
def test_changes_hide_the_runtime_mount_points(svc):
    service, cid = svc
    upper = _upper(service, cid)
    _runtime_leftovers(upper)
    assert asyncio.run(fs.ContainerFilesystem(service).changes(cid)) == []
    (upper / "x").mkdir()
    (upper / "x/f").write_text("f")
    (upper / "etc/motd").write_text("hi")
    (upper / "bin").mkdir()
    os.mknod(upper / "bin/ls", 0o020000 | 0o600, 0)  # overlay's whiteout: ls deleted
    got = [(c.kind.value, c.path) for c in asyncio.run(fs.ContainerFilesystem(service).changes(cid))]
    assert got == [("C", "/bin"), ("D", "/bin/ls"), ("C", "/etc"), ("A", "/etc/motd"),
                   ("A", "/x"), ("A", "/x/f")]


@overlay
def test_commit_makes_an_image_with_the_changes(svc, tmp_path):
    service, cid = svc
    upper = _upper(service, cid)
    _runtime_leftovers(upper)
    (upper / "hello").write_text("hello\n")
    c = service.get(cid)
    fsys = fs.ContainerFilesystem(service)
    image_id = asyncio.run(fsys.commit(cid, "bb:committed", message="msg", author="me",
                                       changes=["ENV C=3"], pause=False))
    image = service.images.get("bb:committed")
    parent = service.images.get(c.image_id)
    assert str(image.id) == image_id
    assert len(image.manifest.layers) == len(parent.manifest.layers) + 1
    cfg = image.config
    assert cfg.config.env == ("C=3", "A=1", "B=2") and cfg.config.cmd == ("sleep", "9")
    assert cfg.author == "me" and cfg.extra["comment"] == "msg"
    assert cfg.history[-1].created_by == "sleep 9" and not cfg.history[-1].empty_layer
    # a container of the new image sees the file and none of the runtime's mount points
    target = tmp_path / "new"
    target.mkdir()
    mount_all(service.images.prepare_rootfs(image, "d" * 64), target)
    try:
        assert (target / "hello").read_text() == "hello\n"
        assert (target / "bin/busybox").is_file()
        assert not (target / "proc").exists() and not (target / "etc").exists()
    finally:
        unmount(target)
    # nothing changed: an empty-layer history entry and no new layer
    cid2 = "e" * 64
    service.images.prepare_rootfs(parent, cid2)
    service.records[cid2] = Container(id=cid2, name="e", created="", image="bb:fs",
                                      image_id=str(parent.id), spec=CreateSpec(image="bb:fs"),
                                      path="sh", args=())
    empty_id = asyncio.run(fsys.commit(cid2, None, pause=False))
    empty = service.images.get(empty_id)
    assert empty.manifest.layers == parent.manifest.layers
    assert empty.config.history[-1].empty_layer and empty.config.history[-1].created_by == "sh"
