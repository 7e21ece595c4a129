"""Container verbs over its filesystem: cp (the archive API), export and commit.

GET  /containers/{id}/archive?path=P -> a tar of P (entries named after basename(P)) and
the header X-Docker-Container-Path-Stat (base64 JSON: name, size, mode, mtime,
linkTarget); HEAD gives the header alone; PUT extracts a tar into directory P.
docker/cli's rules (cp.go, archive.CopyInfo): to an existing directory the source keeps
its name; to a new path it is renamed to the target's base name; "SRC/." copies the
contents of SRC.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context
from conch.cli.verb_common import quote_path


# -- cp ----------------------------------------------------------------------------------------------


def _split_cp_arg(arg: str) -> tuple[str | None, str]:
    """``container:path`` or a local path (a path with '/' before ':' is local, as docker)."""
    if os.path.isabs(arg) or arg.startswith("."):
        return None, arg
    name, colon, path = arg.partition(":")
    if not colon:
        return None, arg
    return name, path


def cmd_cp(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       conch cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                   "Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output during copy")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DEST")
    ns = p.parse(argv)
    s_name, s_path = _split_cp_arg(ns.src)
    d_name, d_path = _split_cp_arg(ns.dst)
    if s_name and d_name:
        raise CommandError("copying between containers is not supported")
    if not s_name and not d_name:
        raise CommandError("must specify at least one container source")
    if s_name:
        n = copy_from_container(ctx, s_name, s_path, d_path, ns.archive)
        where = d_path
    else:
        n = copy_to_container(ctx, s_path, d_name, d_path, ns.follow_link, ns.archive)
        where = f"{d_name}:{d_path}"
    if not ns.quiet and d_path != "-" and s_path != "-":
        ctx.err(f"Successfully copied {fmt.human_size(n)} to {where}")
    return 0


# -- export / commit / update / prune ---------------------------------------------------------------


def cmd_export(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    from conch.cli.images import write_stream

    write_stream(ctx, ctx.client.stream_raw("GET", f"/containers/{quote_path(ns.container)}/export"), ns.output)
    return 0


def cmd_commit(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes")
    p.add_argument("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", action="store_true", default=True, help="Pause container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    ns = p.parse(argv)
    params: dict[str, Any] = {"container": ns.container, "pause": int(ns.pause)}
    if ns.reference:
        from conch.cli.images import split_repo_tag

        params["repo"], params["tag"] = split_repo_tag(ns.reference)
    if ns.message:
        params["comment"] = ns.message
    if ns.author:
        params["author"] = ns.author
    if ns.change:
        params["changes"] = ns.change
    ctx.out(ctx.client.post("/commit", **params)["Id"])
    return 0


# -- cp: the archive API ------------------------------------------------------------------------------
#
# GET  /containers/{id}/archive?path=P -> a tar of P (entries named after basename(P)) and
#      the header X-Docker-Container-Path-Stat (base64 JSON: name, size, mode, mtime,
#      linkTarget); HEAD gives the header alone; PUT extracts a tar into directory P.
# docker/cli's rules (cp.go, archive.CopyInfo): to an existing directory the source keeps
# its name; to a new path it is renamed to the target's base name; "SRC/." copies the
# contents of SRC.

_GO_MODE_DIR = 1 << 31


class _ChunkReader:
    """A read()-able file over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self.total += len(chunk)
            self._buf += chunk
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


def path_stat(ctx: Context, name: str, path: str) -> dict[str, Any] | None:
    """The container path's stat, or None when it does not exist."""
    import base64
    import json

    try:
        resp = ctx.client.request("HEAD", f"/containers/{quote_path(name)}/archive", params={"path": path})
    except errors.NotFound as exc:
        if "container" in str(exc).lower() and "no such container" in str(exc).lower():
            raise
        return None
    resp.close()
    raw = resp.headers.get("x-docker-container-path-stat", "")
    return json.loads(base64.b64decode(raw)) if raw else {}


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return "" if name in (".", "./") else name.rstrip("/")


def _rebase(member, old: str, new: str) -> bool:
    """Rename the root entry ``old`` to ``new``; ``new`` "" drops the root (contents only).

    Returns False for an entry to skip (the root directory itself, when only its
    contents are copied)."""
    name = _norm(member.name)
    if old:
        head, _, tail = name.partition("/")
        if head != old:
            return True
    else:
        tail = name
    if not new and not tail:
        return False
    member.name = "/".join(x for x in (new, tail) if x)
    if member.islnk() and member.linkname:
        link = _norm(member.linkname)
        lhead, _, ltail = link.partition("/")
        if not old or lhead == old:
            rest = link if not old else ltail
            member.linkname = "/".join(x for x in (new, rest) if x)
    return True


def copy_from_container(ctx: Context, name: str, src: str, dst: str, archive: bool) -> int:
    import tarfile

    resp = ctx.client.request("GET", f"/containers/{quote_path(name)}/archive", params={"path": src})
    if dst == "-":
        total = 0
        for chunk in resp.iter_chunks():
            ctx.out_bytes(chunk)
            total += len(chunk)
        return total
    contents_only = src.endswith("/.")
    if os.path.isdir(dst):
        target_dir, new = dst, None  # keep the source's name ...
        if contents_only:
            new = ""  # ... or copy only what is inside it
    else:
        if dst.endswith("/"):
            raise CommandError(f'Error: destination directory "{dst}" must exist')
        target_dir = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(target_dir):
            raise CommandError(f'Error: invalid output path: directory "{target_dir}" does not exist')
        new = os.path.basename(dst)
    reader = _ChunkReader(resp.iter_chunks())
    uid, gid = os.getuid(), os.getgid()
    old = None
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if old is None:
                old = _norm(member.name).partition("/")[0]
                if member.isdir() and new and os.path.isfile(dst):
                    raise CommandError("Error: cannot copy a directory to a file")
            if new is not None and not _rebase(member, old, new):
                continue
            if not archive:
                member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
            _extract(tar, member, target_dir)
    return reader.total


def _extract(tar, member, target_dir: str) -> None:
    """tarfile's "tar" extraction filter where this Python has it (3.11.4+; Debian 12
    ships 3.11.2), else the same checks by hand: no absolute names, nothing that leaves
    target_dir, links that stay inside it."""
    import tarfile

    if hasattr(tarfile, "tar_filter"):
        tar.extract(member, target_dir, filter="tar")
        return
    root = os.path.realpath(target_dir)

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    name = member.name.lstrip("/")
    if not inside(os.path.join(root, name)):
        raise CommandError(f"Error: refusing to extract {member.name!r} outside {target_dir}")
    if member.islnk() and not inside(os.path.join(root, member.linkname.lstrip("/"))):
        raise CommandError(f"Error: refusing hard link {member.name!r} -> {member.linkname!r}")
    if member.issym():
        link = member.linkname if not member.linkname.startswith("/") else None
        if link is None or not inside(os.path.join(root, os.path.dirname(name), link)):
            raise CommandError(f"Error: refusing symlink {member.name!r} -> {member.linkname!r}")
    if member.isdev():
        raise CommandError(f"Error: refusing device file {member.name!r}")
    member.mode &= 0o777 if not member.isdir() else 0o7777
    member.name = name
    tar.extract(member, target_dir)


def copy_to_container(ctx: Context, src: str, name: str, dst: str, follow: bool,
                      archive: bool) -> int:
    import tarfile
    import tempfile

    if src == "-":
        stdin = getattr(ctx.stdin, "buffer", ctx.stdin)
        ctx.client.send_file("PUT", f"/containers/{quote_path(name)}/archive", stdin,
                             params={"path": dst}, headers={"Content-Type": "application/x-tar"}).read()
        return 0
    contents_only = src.endswith("/.")
    src_path = src[:-2] if contents_only else src.rstrip("/") or "/"
    try:
        st = os.stat(src_path) if follow else os.lstat(src_path)
    except OSError as exc:
        raise CommandError(f"Error: lstat {os.path.abspath(src_path)}: "
                           f"{(exc.strerror or '').lower()}") from exc
    import stat as statmod

    src_is_dir = statmod.S_ISDIR(st.st_mode)
    info = path_stat(ctx, name, dst)
    if info is not None and int(info.get("mode", 0)) & _GO_MODE_DIR:
        put_dir, arcname = dst, ("" if contents_only else os.path.basename(src_path))
    else:
        if info is not None and src_is_dir:
            raise CommandError("Error: cannot copy a directory to a file")
        if info is None and dst.endswith("/"):
            raise CommandError(f'Error: destination directory "{dst}" must exist')
        put_dir, arcname = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))

    def owner(ti):
        if not archive:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
        return ti

    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                          dereference=follow) as tar:
            if arcname:
                tar.add(src_path, arcname=arcname, filter=owner)
            else:
                for entry in sorted(os.listdir(src_path)):
                    tar.add(os.path.join(src_path, entry), arcname=entry, filter=owner)
        size = buf.tell()
        buf.seek(0)
        params: dict[str, Any] = {"path": put_dir, "noOverwriteDirNonDir": True}
        if archive:
            params["copyUIDGID"] = True
        ctx.client.send_file("PUT", f"/containers/{quote_path(name)}/archive", buf, params=params,
                             headers={"Content-Type": "application/x-tar"}).read()
    return size
