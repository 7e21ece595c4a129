"""``POST /build``: docker's classic builder over the API (``conch.engine.build.builder``).

Query (Engine API v1.45 ``ImageBuild``): ``t`` (repeatable), ``dockerfile``,
``buildargs`` and ``labels`` (JSON objects of strings; a null build arg is skipped),
``target``, ``nocache``, ``q``, ``rm`` (default true), ``forcerm``, ``pull``,
``platform`` (the host's only). ``remote`` (a URL or git context) is refused. The body is
the context tar (plain or compressed). conch's header ``X-Conch-Build-Secrets`` carries
``RUN --mount=type=secret`` values (see :data:`SECRETS_HEADER`).

Answer: docker's jsonmessage lines -- ``{"stream": "Step 1/4 : FROM busybox\\n"}``,
``{"aux": {"ID": "sha256:…"}}`` once -- as the build goes. As dockerd, an error before
the first line (bad query, unreadable context, no Dockerfile, a parse error) is an
ordinary HTTP error; after it, the in-band ``{"errorDetail": {"message": m}, "error": m}``
line, with ``"code"`` (the RUN's exit status) when a RUN step failed: the docker CLI exits
with that code.
"""

from __future__ import annotations

import json
import logging
import tempfile

from aiohttp import web

from conch.api.params import engine_of, json_body, parse_bool
from conch.api.streams import progress_error
from conch.errors import ConchError, InvalidArgument
from conch.oci.reference import Reference

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def register(add) -> None:
    add("POST", "/build", build)
    add("POST", "/build/prune", prune)


async def prune(request: web.Request) -> web.StreamResponse:
    """``POST /build/prune`` (``docker builder prune``, and the last step of ``docker
    system prune``): the classic builder's step cache is forgotten; its images are the
    builds' intermediate images and go with the images built on them; the step
    snapshots of stages that were not exported (no image holds them) are removed."""
    import asyncio

    from conch.engine.build.step_images import StepCache

    from conch.engine.build import step_results

    engine = engine_of(request)
    cache = StepCache(engine.containers.paths.data_root, engine.images)
    dropped = await asyncio.to_thread(cache.clear)
    freed = 0
    if step_results.alone(0):  # no build in flight: the deferred stages' step snapshots go
        snapshotter = engine.containers.snapshotter
        freed = await asyncio.to_thread(lambda: step_results.drop_snapshots(
            snapshotter, step_results.step_snapshots(snapshotter)))
    return web.json_response({"CachesDeleted": dropped or None, "SpaceReclaimed": freed})


def _json_map(query, name: str) -> dict[str, str]:
    raw = query.get(name, "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidArgument(f"invalid {name} JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON object")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def build_options(query):
    from conch.engine.build.builder import BuildOptions

    if query.get("remote"):
        raise InvalidArgument("remote build contexts are not supported: send the context as the body")
    tags = tuple(query.getall("t", []))
    for tag in tags:
        if Reference.parse(tag).digest is not None:
            raise InvalidArgument(f"invalid tag {tag!r}: a build cannot be tagged with a digest")
    return BuildOptions(
        tags=tags, dockerfile=query.get("dockerfile") or "Dockerfile",
        build_args=_json_map(query, "buildargs"), target=query.get("target", ""),
        no_cache=parse_bool(query, "nocache"), quiet=parse_bool(query, "q"),
        remove=parse_bool(query, "rm", True), force_remove=parse_bool(query, "forcerm"),
        labels=_json_map(query, "labels"), pull=parse_bool(query, "pull"),
        network_mode=query.get("networkmode", ""),
        extra_hosts=tuple(h for v in query.getall("extrahosts", []) for h in v.split(",") if h),
        cache_from=_json_list(query, "cachefrom"))


# conch's own: RUN --mount=type=secret values (docker's BuildKit sends them over its
# gRPC session, which the classic API does not have): base64 of a JSON object of
# id -> base64 content. Never written to the context, a layer or the history.
SECRETS_HEADER = "X-Conch-Build-Secrets"


def _secrets(raw: str) -> dict[str, bytes]:
    import base64

    try:
        value = json.loads(base64.b64decode(raw, validate=True))
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return {str(k): base64.b64decode(v, validate=True) for k, v in value.items()}
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidArgument(f"invalid {SECRETS_HEADER} header: {exc}") from exc


def _json_list(query, name: str) -> tuple[str, ...]:
    raw = query.get(name, "")
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidArgument(f"invalid {name} JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{name} must be a JSON array of strings")
    return tuple(value)


def _message(msg) -> dict:
    if msg.aux_id:
        return {"aux": {"ID": msg.aux_id}}
    return {"stream": msg.stream}


async def build(request: web.Request) -> web.StreamResponse:
    from conch.engine.build.builder import Builder
    from conch.engine.build.messages import StepFailed

    opts = build_options(request.query)
    if request.headers.get(SECRETS_HEADER):
        from dataclasses import replace

        opts = replace(opts, secrets=_secrets(request.headers[SECRETS_HEADER]))
    response = None
    with tempfile.TemporaryFile(prefix="conch-build-") as body:
        async for chunk in request.content.iter_chunked(_CHUNK):
            body.write(chunk)
        body.seek(0)
        try:
            async for msg in Builder(engine_of(request)).build(body, opts):
                if response is None:
                    response = web.StreamResponse(status=200)
                    response.content_type = "application/json"
                    await response.prepare(request)
                await response.write(json_body(_message(msg)))
        except (ConnectionError,):
            raise
        except Exception as exc:  # noqa: BLE001 - after the head: in-band, as dockerd
            if response is None:
                raise
            if not isinstance(exc, ConchError):
                log.error("build failed: %s", exc, exc_info=exc)
            line = progress_error(str(exc))
            if isinstance(exc, StepFailed):
                line["errorDetail"]["code"] = exc.code
            await response.write(json_body(line))
    await response.write_eof()
    return response
