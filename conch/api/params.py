"""Request parsing and JSON responses shared by every ``routes_*`` module.

A route handler is three steps: parse (these helpers), call ONE engine method
(:func:`call_engine`), serialise (:func:`json_response` or a ``streams`` helper)::

    async def list_images(request):
        all_ = parse_bool(request.query, "all")
        filters = parse_filters(request.query, allowed={"dangling", "label"})
        records = await call_engine(engine_of(request).images.list, all=all_, filters=filters)
        return json_response([image_summary(r) for r in records])

Parse errors are :class:`~conch.errors.InvalidArgument` (HTTP 400), so a handler never
builds an HTTP error itself; ``server``'s error middleware does that once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Mapping
from typing import Any, Callable

from aiohttp import web

from conch.errors import InvalidArgument

#: The API version we speak (docker CLI 28.2 / moby v28.2) and the oldest we accept.
API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
SERVER_VERSION = "28.2.2-conch"

#: ``request.app[ENGINE]`` is the engine object the daemon handed to ``create_app``.
ENGINE: web.AppKey[Any] = web.AppKey("conch.engine", object)
#: ``request[API_VERSION_KEY]``: the version from the ``/v1.xx`` prefix, set by ``server``.
API_VERSION_KEY: web.RequestKey[tuple[int, int]] = web.RequestKey("conch.api_version", tuple)


def docker_headers() -> dict[str, str]:
    """The headers dockerd puts on every response, hijacked ones included (the CLI
    negotiates its version from ``Api-Version`` in ``/_ping``)."""
    return {
        "Api-Version": API_VERSION,
        "Docker-Experimental": "false",
        "Ostype": "linux",
        "Server": f"Docker/{SERVER_VERSION} (linux)",
    }


def engine_of(request: web.Request) -> Any:
    """The engine this app was created with."""
    return request.app[ENGINE]


def api_version(request: web.Request) -> tuple[int, int]:
    """The API version of this request: the ``/v1.xx`` prefix, or ours when absent.

    Routes use it for version-dependent behaviour (e.g. attach's content type is
    ``multiplexed-stream`` only from 1.42 on)."""
    return request.get(API_VERSION_KEY) or (1, 50)


async def call_engine(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call one engine method: awaited when it is a coroutine function, otherwise run in a
    worker thread (``asyncio.to_thread``) so blocking store/kernel work never stalls the
    event loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
    if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
        return await result
    return result


def json_body(data: Any) -> bytes:
    """Compact JSON plus a newline, as Go's ``json.Encoder`` (and so dockerd) writes it."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """``data`` (already Docker-shaped: PascalCase dicts/lists) as an ``application/json``
    response."""
    return web.Response(body=json_body(data), status=status, content_type="application/json")


def parse_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Docker's ``httputils.BoolValueOrDefault``: absent -> ``default``; ``""``, ``0``,
    ``no``, ``false``, ``none`` (any case, trimmed) -> False; anything else -> True."""
    if name not in query:
        return default
    return query[name].strip().lower() not in ("", "0", "no", "false", "none")


def parse_int(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    """An integer query parameter (``""`` counts as absent, as ``strconv`` callers in moby
    treat it)."""
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgument(f'invalid value for {name}: strconv.Atoi: parsing "{raw}": '
                              "invalid syntax") from exc


def parse_filters(query: Mapping[str, str], *, allowed: set[str] | None = None,
                  name: str = "filters") -> dict[str, list[str]]:
    """Docker's ``filters`` query parameter (``filters.FromJSON``) as ``{key: [values]}``.

    Both wire forms are accepted: the current map-of-map-of-bool
    (``{"label": {"a=b": true}}``) and the legacy map-of-lists (``{"label": ["a=b"]}``).
    As in moby, every key of the inner map counts, whatever its bool. An absent or empty
    parameter gives ``{}``. With ``allowed``, an unknown key is refused with docker's
    ``invalid filter '<key>'`` (400)."""
    raw = query.get(name, "")
    if raw.strip() == "":
        return {}
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidArgument(f"invalid filter: {exc}") from exc
    if not isinstance(decoded, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in decoded.items():
        if isinstance(value, dict):
            out[key] = [str(v) for v in value]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        elif isinstance(value, str):  # very old clients sent a bare string
            out[key] = [value]
        else:
            raise InvalidArgument(f"invalid filter: bad value for {key!r}")
    if allowed is not None:
        for key in out:
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")
    return out


_TIMESTAMP = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")


def parse_timestamp(query: Mapping[str, str], name: str) -> int | None:
    """``since``/``until`` as sent by the CLI (``<seconds>[.<nanoseconds>]``, see moby's
    ``timetypes.ParseTimestamps``) -> nanoseconds since the epoch, or None when absent."""
    raw = query.get(name, "").strip()
    if raw == "":
        return None
    m = _TIMESTAMP.match(raw)
    if m is None:
        raise InvalidArgument(f"invalid timestamp for {name}: {raw!r}")
    nanos = (m.group(2) or "").ljust(9, "0")
    return int(m.group(1)) * 1_000_000_000 + int(nanos)


def field(record: Any, name: str, default: Any = None) -> Any:
    """``record.name`` for a dataclass/object, ``record[name]`` for a mapping, else
    ``default``: serialisers read engine values through this so the engine may return
    either (snake_case names in both)."""
    if isinstance(record, Mapping):
        value = record.get(name, default)
    else:
        value = getattr(record, name, default)
    return default if value is None else value
