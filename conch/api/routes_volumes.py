"""/volumes/*: list, create, inspect, remove, prune (Docker's ``local`` volumes).

Engine calls (one per route): ``engine.volumes.list(filters)``, ``.create(name, driver=,
labels=, options=)``, ``.get(name)``, ``.remove(name, force=)``, ``.prune(all=, labels=)``
(``conch.engine.engine.VolumesFacade``). Records are ``conch.volumes.Volume``: name,
driver, mountpoint, created_at, labels, options, scope.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from conch.api.body import VOLUME_CREATE, decode
from conch.api.params import (call_engine, engine_of, field, json_response, parse_bool,
                              parse_filters)
from conch.errors import InvalidArgument, Unavailable


def register(add) -> None:
    add("GET", "/volumes", list_volumes)
    add("POST", "/volumes/create", create)
    add("POST", "/volumes/prune", prune)
    add("GET", "/volumes/{name}", inspect)
    add("DELETE", "/volumes/{name}", remove)


def _svc(request):
    volumes = getattr(engine_of(request), "volumes", None)
    if volumes is None:
        raise Unavailable("volumes are not available in this engine")
    return volumes


def volume_json(v: Any) -> dict[str, Any]:
    return {
        "CreatedAt": field(v, "created_at", ""),
        "Driver": field(v, "driver", "local"),
        "Labels": dict(field(v, "labels", {})) or None,
        "Mountpoint": field(v, "mountpoint", ""),
        "Name": field(v, "name", ""),
        "Options": dict(field(v, "options", {})) or None,
        "Scope": field(v, "scope", "local"),
    }


async def list_volumes(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query, allowed={"dangling", "name", "label", "label!", "driver"})
    for value in filters.get("dangling", ()):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
    volumes = await call_engine(_svc(request).list, filters)
    return json_response({"Volumes": [volume_json(v) for v in volumes], "Warnings": []})


async def create(request: web.Request) -> web.StreamResponse:
    body = decode(await request.read(), VOLUME_CREATE, empty={})
    v = await call_engine(_svc(request).create, body.get("Name") or None,
                          driver=body.get("Driver") or "local",
                          labels=dict(body.get("Labels") or {}),
                          options=dict(body.get("DriverOpts") or {}))
    return json_response(volume_json(v), status=201)


async def inspect(request: web.Request) -> web.StreamResponse:
    v = await call_engine(_svc(request).get, request.match_info["name"])
    return json_response(volume_json(v))


async def remove(request: web.Request) -> web.StreamResponse:
    await call_engine(_svc(request).remove, request.match_info["name"],
                      force=parse_bool(request.query, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query, allowed={"all", "label", "label!"})
    all_ = any(v.lower() in ("1", "true") for v in filters.get("all", ()))
    labels = list(filters.get("label", ())) + ["!" + x for x in filters.get("label!", ())]
    result = await call_engine(_svc(request).prune, all=all_, labels=labels)
    return json_response({"VolumesDeleted": list(field(result, "deleted", ())) or None,
                          "SpaceReclaimed": field(result, "space_reclaimed", 0)})
