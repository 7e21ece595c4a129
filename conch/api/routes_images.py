"""Image routes: list, inspect, history, tag, remove, import (create), load, save, prune.

Engine calls: ``engine.images`` is :class:`conch.images.records.ImageService` or a facade
with the same methods (the engine adds container users for remove/prune); see
``conch.api`` for the list. Records are ``conch.images.records.Image`` /
``HistoryEntry`` / ``PruneResult``; ``remove`` and ``prune`` return Docker's
``[{"Untagged": …}, {"Deleted": …}]`` items, passed through unchanged.

``GET /images/json`` filters (``dangling``, ``reference``, ``label``, ``before``,
``since``) are applied here by :func:`select_images` over the one ``list()`` call:
they are the list endpoint's query language, and ``before``/``since`` name images of that
same list.

Image names contain ``/`` and ``:`` (``localhost:5000/a/b:tag``), so the name routes use
``{name:.+}`` patterns and are registered after the fixed ``/images/json``,
``/images/create``, ``/images/load``, ``/images/get``, ``/images/prune`` paths.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from aiohttp import web

from conch.api.params import (api_version, call_engine, engine_of, field, json_response,
                              parse_bool, parse_filters)
from conch.api.streams import progress_error, stream_bytes, stream_json_lines
from conch.errors import ConchError, InvalidArgument, NotFound
from conch.oci.reference import Reference

LIST_FILTERS = {"dangling", "reference", "label", "before", "since", "until"}
PRUNE_FILTERS = {"dangling"}
ZERO_TIME = "0001-01-01T00:00:00Z"
_SPOOL_CHUNK = 1 << 20


def register(add) -> None:
    add("GET", "/images/json", list_images)
    add("POST", "/images/create", create_image)
    add("POST", "/images/load", load_images)
    add("GET", "/images/get", save_images)
    add("POST", "/images/prune", prune_images)
    add("GET", "/images/{name:.+}/json", inspect_image)
    add("GET", "/images/{name:.+}/history", image_history)
    add("GET", "/images/{name:.+}/get", save_image)
    add("POST", "/images/{name:.+}/tag", tag_image)
    add("DELETE", "/images/{name:.+}", remove_image)


# --- serialisation --------------------------------------------------------------------


def _unix(created: str | int) -> int:
    """RFC 3339 (as in image configs) -> unix seconds; unknown -> 0, as Docker shows it."""
    if isinstance(created, int):
        return created
    if not created:
        return 0
    try:
        return int(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _exec_config(image: Any) -> Any:
    return field(field(image, "config"), "config")


def _labels(image: Any) -> dict[str, str]:
    return dict(field(_exec_config(image), "labels", {}) or {})


def image_summary(image: Any) -> dict[str, Any]:
    """Docker's ImageSummary (``docker images``)."""
    return {
        "Containers": -1,
        "Created": _unix(field(image, "created", "")),
        "Id": str(field(image, "id", "")),
        "Labels": _labels(image) or None,
        "ParentId": "",
        "RepoDigests": list(field(image, "repo_digests", ())),
        "RepoTags": list(field(image, "repo_tags", ())),
        "SharedSize": -1,
        "Size": int(field(image, "size", 0)),
    }


def image_inspect(image: Any) -> dict[str, Any]:
    """Docker's ImageInspect from an image record."""
    from conch.images.presentation import container_config  # the image's config in Docker's shape

    cfg = field(image, "config")
    exec_config = field(cfg, "config")
    extra = field(cfg, "extra", {}) or {}
    last_tag = field(image, "last_tag_time")
    out: dict[str, Any] = {
        "Id": str(field(image, "id", "")),
        "RepoTags": list(field(image, "repo_tags", ())),
        "RepoDigests": list(field(image, "repo_digests", ())),
        "Parent": "",
        "Comment": extra.get("comment", "") if isinstance(extra.get("comment"), str) else "",
        "Created": field(cfg, "created", "") or ZERO_TIME,
        "DockerVersion": "",
        "Author": field(cfg, "author", ""),
        "Config": None if exec_config is None else container_config(exec_config),
        "Architecture": field(cfg, "architecture", ""),
        "Os": field(cfg, "os", ""),
        "Size": int(field(image, "size", 0)),
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": field(field(cfg, "rootfs"), "type", "layers"),
                   "Layers": [str(d) for d in field(field(cfg, "rootfs"), "diff_ids", ())]},
        "Metadata": {"LastTagTime": ZERO_TIME if last_tag is None else
                     last_tag.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")},
    }
    if field(cfg, "variant"):
        out["Variant"] = field(cfg, "variant")
    return out


def history_json(entry: Any) -> dict[str, Any]:
    return {
        "Id": field(entry, "id", "<missing>"),
        "Created": _unix(field(entry, "created", 0)),
        "CreatedBy": field(entry, "created_by", ""),
        "Tags": list(field(entry, "tags", ())) or None,
        "Size": int(field(entry, "size", 0)),
        "Comment": field(entry, "comment", ""),
    }


# --- list filters (Docker's daemon/images/images.go Images) ---------------------------


def _ref_match(pattern: str, ref: str) -> bool:
    """reference.FamiliarMatch: the pattern against "name:tag" (or "name@digest") and
    against "name"."""
    name = ref.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return fnmatch.fnmatchcase(ref, pattern) or fnmatch.fnmatchcase(name, pattern)


def _familiar_patterns_match(pattern: str, image: Any) -> bool:
    return any(_ref_match(pattern, tag) for tag in field(image, "repo_tags", ()))


def _only_matching_names(summary: dict[str, Any], patterns: list[str]) -> dict[str, Any]:
    """dockerd lists, under a reference filter, only the names that match it: ``docker
    images busybox`` shows no other tag of the busybox image."""
    for key in ("RepoTags", "RepoDigests"):
        summary[key] = [r for r in summary[key] if any(_ref_match(p, r) for p in patterns)]
    return summary


def _label_match(wanted: str, labels: dict[str, str]) -> bool:
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def _find(images: Sequence[Any], name: str) -> Any:
    """An image of ``images`` by name or ID (prefix), for before/since."""
    try:
        familiar = Reference.parse(name).familiar()
    except InvalidArgument:
        familiar = name
    for image in images:
        image_id = str(field(image, "id", ""))
        if familiar in field(image, "repo_tags", ()) or image_id in (name, f"sha256:{name}") \
                or (len(name) >= 4 and image_id.removeprefix("sha256:").startswith(name)):
            return image
    raise NotFound(f"No such image: {name}")


def select_images(images: Sequence[Any], filters: dict[str, list[str]]) -> list[Any]:
    """The images ``filters`` keeps, in order (dangling, reference, label, before,
    since, until as ``docker images --filter`` documents them)."""
    out = list(images)
    if "dangling" in filters:
        values = {v.lower() for v in filters["dangling"]}
        if not values <= {"true", "false", "1", "0"} or len(values) > 1:
            raise InvalidArgument(f"invalid filter 'dangling={'/'.join(sorted(values))}'")
        want = values <= {"true", "1"}
        out = [i for i in out if (not field(i, "repo_tags", ())) == want]
    if filters.get("reference"):
        out = [i for i in out if any(_familiar_patterns_match(p, i) for p in filters["reference"])]
    if filters.get("label"):
        out = [i for i in out if all(_label_match(w, _labels(i)) for w in filters["label"])]
    for key, keep in (("before", lambda c, ref: c < ref), ("since", lambda c, ref: c > ref)):
        for name in filters.get(key, ()):
            ref_created = _instant(field(_find(images, name), "created", ""))
            out = [i for i in out if keep(_instant(field(i, "created", "")), ref_created)]
    return out


def _instant(created: str | int) -> float:
    """Sub-second creation time for before/since: dockerd compares full timestamps, and
    images made within one second (an import, a tag, an import) must still order."""
    if isinstance(created, str) and created:
        try:
            return dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return float(_unix(created))


# --- handlers -------------------------------------------------------------------------


def _images(request: web.Request) -> Any:
    return engine_of(request).images


async def list_images(request: web.Request) -> web.StreamResponse:
    # ``all`` shows the intermediate images of builds; ``digests`` changes nothing
    # (RepoDigests are always filled).
    filters = parse_filters(request.query, allowed=LIST_FILTERS)
    images = await call_engine(_images(request).list)
    if not parse_bool(request.query, "all"):
        hidden = await call_engine(_images(request).intermediate_ids, images)
        images = [i for i in images if i.id not in hidden]
    out = [image_summary(i) for i in select_images(images, filters)]
    if filters.get("reference"):
        out = [_only_matching_names(s, filters["reference"]) for s in out]
    if api_version(request) < (1, 43):
        # moby getImagesJSON: before 1.43 an untagged image shows "<none>" placeholders
        for s in out:
            if not s["RepoTags"] and not s["RepoDigests"]:
                s["RepoTags"], s["RepoDigests"] = ["<none>:<none>"], ["<none>@<none>"]
    return json_response(out)


async def inspect_image(request: web.Request) -> web.StreamResponse:
    images = _images(request)
    image = await call_engine(images.get, request.match_info["name"])
    out = image_inspect(image)
    if hasattr(images, "graph_driver_data"):
        out["GraphDriver"]["Data"] = await call_engine(images.graph_driver_data, image)
    return json_response(inspect_for_version(out, image, api_version(request)))


#: Docker's zero ``container.Config`` (omitempty fields left out), what dockerd shows as
#: ``ContainerConfig`` for an image whose config carries none.
EMPTY_CONTAINER_CONFIG: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}


def inspect_for_version(out: dict[str, Any], image: Any, version: tuple[int, int]) -> dict[str, Any]:
    """moby's version gates on image inspect (router/image getImagesByName): below 1.44
    ``VirtualSize`` (= Size); below 1.45 ``Container`` and ``ContainerConfig`` (the
    config's legacy ``container``/``container_config``, else empty: docker-compose 1.29
    reads ``ContainerConfig["Volumes"]`` when it recreates a container); from 1.52 the
    empty legacy fields are omitted (we speak 1.50, so they stay)."""
    if version < (1, 44):
        out["VirtualSize"] = out.get("Size", 0)
    if version < (1, 45):
        extra = field(field(image, "config"), "extra", {}) or {}
        legacy = extra.get("container_config")
        container = extra.get("container")
        out["Container"] = container if isinstance(container, str) else ""
        out["ContainerConfig"] = ({**EMPTY_CONTAINER_CONFIG, **legacy} if isinstance(legacy, dict)
                                  else dict(EMPTY_CONTAINER_CONFIG))
    return out


async def image_history(request: web.Request) -> web.StreamResponse:
    entries = await call_engine(_images(request).history, request.match_info["name"])
    return json_response([history_json(e) for e in entries])


async def tag_image(request: web.Request) -> web.StreamResponse:
    repo = request.query.get("repo", "")
    tag = request.query.get("tag", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag}" if tag else repo
    await call_engine(_images(request).tag, request.match_info["name"], target)
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.StreamResponse:
    items = await call_engine(_images(request).remove, request.match_info["name"],
                              force=parse_bool(request.query, "force"),
                              prune_parents=not parse_bool(request.query, "noprune"))
    return json_response(list(items))


async def prune_images(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query, allowed=PRUNE_FILTERS)
    dangling = [v.lower() for v in filters.get("dangling", ["true"])]
    result = await call_engine(_images(request).prune,
                               dangling_only=dangling[-1] in ("true", "1"))
    return json_response({"ImagesDeleted": list(field(result, "deleted", ())) or None,
                          "SpaceReclaimed": int(field(result, "space_reclaimed", 0))})


@contextlib.asynccontextmanager
async def _spooled_body(request: web.Request):
    """The request body in an anonymous temp file (seekable, read by sync store code in a
    worker thread), rewound."""
    with tempfile.TemporaryFile(prefix="conch-upload-") as spool:
        async for chunk in request.content.iter_chunked(_SPOOL_CHUNK):
            spool.write(chunk)
        spool.seek(0)
        yield spool


async def create_image(request: web.Request) -> web.StreamResponse:
    """``docker import`` (``fromSrc=-``: the body is the tarball) or ``docker pull``
    (``fromImage``: ``routes_distribution.pull``)."""
    q = request.query
    if q.get("fromImage"):
        from conch.api.routes_distribution import pull

        return await pull(request)
    source = q.get("fromSrc", "")
    if source != "-":
        raise InvalidArgument("only fromSrc=- (the tarball in the request body) is supported"
                              if source else "fromImage or fromSrc is required")
    repo, tag = q.get("repo", ""), q.get("tag", "")
    ref = (f"{repo}:{tag}" if tag else repo) or None
    changes = list(q.getall("changes", []))
    async with _spooled_body(request) as body:
        image = await call_engine(_images(request).import_image, body, ref,
                                  changes=changes, message=q.get("message", ""),
                                  platform=q.get("platform") or None)
    # dockerd streams one progress line with the new ID; the CLI prints it.
    return await stream_json_lines(request, [{"status": str(field(image, "id", ""))}],
                                   progress=True)


async def load_images(request: web.Request) -> web.StreamResponse:
    """``docker load``: one ``{"stream": "Loaded image: <name>\\n"}`` line per name."""
    quiet = parse_bool(request.query, "quiet")
    async with _spooled_body(request) as body:
        try:
            loaded = await call_engine(_images(request).load, body)
        except ConchError as exc:
            # moby postImagesLoad: a failed load is a 200 whose stream ends in an error
            # message (docker-py raises ImageLoadError, the CLI prints it and exits 1)
            return await stream_json_lines(request, [progress_error(str(exc))])
    lines = [{"stream": f"Loaded image{'' if ':' in n else ' ID'}: {n}\n"} for n in loaded]
    del quiet  # the CLI shows the lines either way; dockerd only drops progress bars
    return await stream_json_lines(request, lines, progress=True)


def _save_names(request: web.Request) -> list[str]:
    names = request.query.getall("names", [])
    if not names:
        raise InvalidArgument("no images given to save")
    return list(names)


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    with tempfile.TemporaryFile(prefix="conch-save-") as out:
        await call_engine(_images(request).save, names, out)
        out.seek(0)
        return await stream_bytes(request, _file_chunks(out), content_type="application/x-tar")


def _file_chunks(f: BinaryIO) -> Iterable[bytes]:
    while chunk := f.read(_SPOOL_CHUNK):
        yield chunk


async def save_images(request: web.Request) -> web.StreamResponse:
    return await _save(request, _save_names(request))


async def save_image(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])
