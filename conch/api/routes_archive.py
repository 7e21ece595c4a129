"""A container's filesystem: /containers/{id}/archive (HEAD stat, GET tar, PUT extract),
/containers/{id}/export, /containers/{id}/changes and /commit.

Each handler parses, calls one method of ``conch.engine.containers.filesystem.ContainerFilesystem``
and serialises. Tars out are written by the engine to an anonymous temp file first, then
streamed: the container's root is unmounted (and its lock released) before a slow client
has read the body. The stat of a path travels as dockerd sends it: the header
``X-Docker-Container-Path-Stat``, base64 of the JSON ``{"name", "size", "mode" (Go
os.FileMode bits), "mtime" (RFC 3339), "linkTarget"}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from typing import TYPE_CHECKING, BinaryIO, Iterable

from aiohttp import web

from conch.api.params import engine_of, json_response, parse_bool
from conch.api.body import COMMIT_CONFIG, check, parse_json
from conch.api.streams import stream_bytes
from conch.engine.containers.filesystem import ContainerFilesystem
from conch.errors import InvalidArgument, NotFound
from conch.oci.image import ExecutionConfig

if TYPE_CHECKING:
    from conch.engine.containers.rootfs_tar import PathStat

STAT_HEADER = "X-Docker-Container-Path-Stat"
_CHUNK = 1 << 20
# FilesystemChange.Kind: 0 modified, 1 added, 2 deleted (by conch.archive.diff.ChangeKind's
# names: that module, tarfile with it, loads at the first diff, not at conchd's start-up)
_KIND = {"CHANGED": 0, "ADDED": 1, "DELETED": 2}


def register(add) -> None:
    add("HEAD", "/containers/{id}/archive", stat_path)
    add("GET", "/containers/{id}/archive", get_archive)
    add("PUT", "/containers/{id}/archive", put_archive)
    add("GET", "/containers/{id}/export", export)
    add("GET", "/containers/{id}/changes", changes)
    add("POST", "/commit", commit)


def _fs(request: web.Request) -> ContainerFilesystem:
    engine = engine_of(request)
    fs = getattr(engine, "filesystem", None)
    return fs if fs is not None else ContainerFilesystem(engine.containers)


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")  # dockerd's wording
    return path


def stat_header(st: PathStat) -> str:
    body = {"name": st.name, "size": st.size, "mode": st.mode, "mtime": st.mtime,
            "linkTarget": st.link_target}
    return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def _file_chunks(f: BinaryIO) -> Iterable[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


async def stat_path(request: web.Request) -> web.StreamResponse:
    st = await _fs(request).stat(request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: stat_header(st)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    path = _path(request)
    with tempfile.TemporaryFile(prefix="conch-archive-") as out:
        st = await _fs(request).archive(request.match_info["id"], path, out)
        out.seek(0)
        return await stream_bytes(request, _file_chunks(out), content_type="application/x-tar",
                                  headers={STAT_HEADER: stat_header(st)})


@contextlib.asynccontextmanager
async def _spooled_body(request: web.Request):
    with tempfile.TemporaryFile(prefix="conch-upload-") as spool:
        async for chunk in request.content.iter_chunked(_CHUNK):
            spool.write(chunk)
        spool.seek(0)
        yield spool


async def put_archive(request: web.Request) -> web.StreamResponse:
    path = _path(request)
    q = request.query
    async with _spooled_body(request) as body:
        await _fs(request).extract(request.match_info["id"], path, body,
                                   no_overwrite_dir_non_dir=parse_bool(q, "noOverwriteDirNonDir"),
                                   copy_uid_gid=parse_bool(q, "copyUIDGID"))
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    with tempfile.TemporaryFile(prefix="conch-export-") as out:
        await _fs(request).export(request.match_info["id"], out)
        out.seek(0)
        return await stream_bytes(request, _file_chunks(out), content_type="application/x-tar")


async def changes(request: web.Request) -> web.StreamResponse:
    found = await _fs(request).changes(request.match_info["id"])
    # dockerd encodes an empty (nil) slice as null
    return json_response([{"Path": c.path, "Kind": _KIND[c.kind.name]} for c in found] or None)


async def commit(request: web.Request) -> web.StreamResponse:
    q = request.query
    container = q.get("container", "")
    if not container:
        raise NotFound("No such container: ")  # dockerd looks "" up, and fails so
    raw = await request.read()
    config = None
    if raw.strip():
        body = parse_json(raw)
        if body is not None:
            if not isinstance(body, dict):
                raise InvalidArgument("invalid JSON: json: cannot unmarshal "
                                      f"{type(body).__name__} into Go value of type container.Config")
            check(body, COMMIT_CONFIG, "Config")
            config = ExecutionConfig.from_dict(body)
            config = ExecutionConfig(**{f: getattr(config, f) for f in _EXEC_ATTRS})  # drop legacy keys
    repo, tag = q.get("repo", ""), q.get("tag", "")
    ref = (f"{repo}:{tag}" if tag else repo) or None  # no repo: dangling, the tag ignored
    image_id = await _fs(request).commit(
        container, ref, message=q.get("comment", ""), author=q.get("author", ""),
        changes=list(q.getall("changes", [])), config=config,
        pause=parse_bool(q, "pause", default=True))
    return json_response({"Id": image_id}, status=201)


_EXEC_ATTRS = ("user", "exposed_ports", "env", "entrypoint", "cmd", "volumes", "working_dir",
               "labels", "stop_signal", "args_escaped", "healthcheck", "on_build", "shell")
