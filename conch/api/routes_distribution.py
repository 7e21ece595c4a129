"""Registry routes: pull (``POST /images/create?fromImage=``, dispatched here by
``routes_images``), ``POST /images/{name}/push``, ``POST /auth``,
``GET /distribution/{name}/json``, ``GET /images/search``.

Engine calls (``engine.images``): ``pull(ref, *, platform, all_tags, credentials)`` and
``push(name, tag, *, credentials)`` return async iterators of Progress records
(``status``, ``id``, ``current``, ``total``, ``aux``); ``login(server, credentials)`` ->
status text; ``inspect_distribution(ref, *, credentials)`` -> (descriptor, platforms);
``search(term, *, limit, filters, credentials)`` -> [SearchResult dicts].

Streams are docker's jsonmessage lines. As dockerd, an error before the first message
(unknown manifest, refused credentials, image not found locally) is an ordinary HTTP
error (404/401/...), because nothing was written yet; after that it is the in-band
``{"errorDetail": {"message": m}, "error": m}`` line (``streams.stream_json_lines``).

``X-Registry-Auth`` is base64url(JSON AuthConfig: ``username``, ``password``, ``auth``
(base64 ``user:pass``), ``serveraddress``, ``identitytoken``, ``registrytoken``); padding
optional, standard base64 accepted too; absent or empty means anonymous.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, AsyncIterator

from aiohttp import web

from conch.api.body import AUTH_CONFIG, decode
from conch.api.params import call_engine, engine_of, field, json_response, parse_filters
from conch.api.streams import stream_json_lines
from conch.errors import InvalidArgument

if TYPE_CHECKING:  # the registry client loads with the first request that needs it
    from conch.registry.client.auth import Credentials

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def register(add) -> None:
    add("POST", "/images/{name:.+}/push", push_image)
    add("POST", "/auth", auth)
    add("GET", "/distribution/{name:.+}/json", distribution_inspect)
    add("GET", "/images/search", search_images)


# --- X-Registry-Auth -------------------------------------------------------------------


def decode_auth_config(raw: str) -> dict[str, str]:
    """The AuthConfig JSON carried by ``X-Registry-Auth`` (``{}`` when empty)."""
    raw = raw.strip()
    if not raw:
        return {}
    padded = raw + "=" * (-len(raw) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        doc = json.loads(decoded)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument("invalid X-Registry-Auth header: not base64url JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    return {k: v for k, v in doc.items() if isinstance(v, str)}


def credentials_of(config: dict[str, str]) -> Credentials:
    """AuthConfig -> Credentials (``auth`` = base64 ``user:pass`` when no username)."""
    username, password = config.get("username", ""), config.get("password", "")
    if not username and config.get("auth"):
        try:
            username, _, password = base64.b64decode(config["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidArgument("invalid auth configuration: bad 'auth' field") from exc
    from conch.registry.client.auth import Credentials

    return Credentials(username=username, password=password,
                       identity_token=config.get("identitytoken", ""),
                       registry_token=config.get("registrytoken", ""))


def _credentials(request: web.Request) -> Credentials:
    return credentials_of(decode_auth_config(request.headers.get("X-Registry-Auth", "")))


# --- jsonmessage ----------------------------------------------------------------------


def human_size(n: float) -> str:
    """go-units ``HumanSize``: decimal units, 4 significant digits (``1.049MB``)."""
    i = 0
    while n >= 1000 and i < len(_UNITS) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{_UNITS[i]}"


def progress_bar(current: int, total: int) -> str:
    """jsonmessage ``JSONProgress.String()`` as dockerd sends it (50-wide bar)."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(int(current * 100 / total) // 2, 50)
    bar = "[" + "=" * filled + ">" + " " * (50 - filled) + "] "  # docker keeps the ">" at 100%
    return f"{bar}{human_size(current):>8}/{human_size(total)}"


def progress_json(item: Any) -> dict[str, Any]:
    aux = field(item, "aux")
    if aux:
        return {"progressDetail": {}, "aux": aux}
    out: dict[str, Any] = {"status": field(item, "status", "")}
    current, total = field(item, "current"), field(item, "total")
    if current is not None:
        out["progressDetail"] = {"current": current, "total": total or 0}
        out["progress"] = progress_bar(current, total or 0)
    elif field(item, "id") and not str(field(item, "status", "")).startswith("Pulling from"):
        out["progressDetail"] = {}
    if field(item, "id"):
        out["id"] = field(item, "id")
    return out


async def _primed(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Start ``items`` now (errors before its first item propagate to the caller, as
    an HTTP error) and hand back an iterator that yields everything."""
    try:
        first = await items.__anext__()
    except StopAsyncIteration:
        first = None

    async def chained():
        try:
            if first is not None:
                yield first
            async for item in items:
                yield item
        finally:
            await items.aclose()

    return chained()


# --- handlers -------------------------------------------------------------------------


def pull_reference(from_image: str, tag: str) -> tuple[str, bool]:
    """(reference, all_tags) from ``fromImage`` and ``tag``, as the API documents them:
    a digest in fromImage wins; else ``tag`` (a tag or a digest); else fromImage's own
    tag; neither means every tag."""
    if "@" in from_image:
        return from_image, False
    if tag:
        name = from_image
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name = name[: len(name) - len(last)] + last.split(":", 1)[0]
        return (f"{name}@{tag}" if ":" in tag else f"{name}:{tag}"), False
    last = from_image.rsplit("/", 1)[-1]
    return from_image, ":" not in last


async def pull(request: web.Request) -> web.StreamResponse:
    q = request.query
    ref, all_tags = pull_reference(q.get("fromImage", ""), q.get("tag", ""))
    items = engine_of(request).images.pull(ref, platform=q.get("platform") or None,
                                           all_tags=all_tags, credentials=_credentials(request))
    stream = await _primed(items)
    return await stream_json_lines(request, stream, serialise=progress_json, progress=True)


async def push_image(request: web.Request) -> web.StreamResponse:
    items = engine_of(request).images.push(request.match_info["name"], request.query.get("tag", ""),
                                           credentials=_credentials(request))
    stream = await _primed(items)
    return await stream_json_lines(request, stream, serialise=progress_json, progress=True)


async def auth(request: web.Request) -> web.StreamResponse:
    body = decode(await request.read(), AUTH_CONFIG)
    config = {k: v for k, v in body.items() if isinstance(v, str)}
    status = await call_engine(engine_of(request).images.login, config.get("serveraddress", ""),
                               credentials_of(config))
    return json_response({"Status": status, "IdentityToken": ""})


async def distribution_inspect(request: web.Request) -> web.StreamResponse:
    desc, platforms = await call_engine(engine_of(request).images.inspect_distribution,
                                        request.match_info["name"],
                                        credentials=_credentials(request))
    return json_response({
        "Descriptor": {"mediaType": desc.media_type, "digest": str(desc.digest),
                       "size": desc.size},
        "Platforms": [p.to_dict() for p in platforms],
    })


async def search_images(request: web.Request) -> web.StreamResponse:
    # moby getImagesSearch: a bad limit is "invalid limit specified" (400); a search
    # ignores an invalid X-Registry-Auth rather than failing
    raw = request.query.get("limit", "")
    try:
        limit = int(raw) if raw else 0
    except ValueError as exc:
        raise InvalidArgument(f'invalid limit specified: strconv.Atoi: parsing "{raw}": '
                              "invalid syntax") from exc
    if limit < 0:
        raise InvalidArgument("invalid limit specified")
    filters = parse_filters(request.query)
    try:
        credentials = _credentials(request)
    except InvalidArgument:
        from conch.registry.client.auth import Credentials

        credentials = Credentials()
    results = await call_engine(engine_of(request).images.search, request.query.get("term", ""),
                                limit=limit, filters=filters, credentials=credentials)
    return json_response(list(results))
