"""/networks/*: list, inspect, create, remove, prune, connect, disconnect.

Engine calls (one per route): ``engine.networks.list(filters)``, ``.get(ref)``,
``.endpoints(id)``, ``.create(name, driver=, internal=, attachable=, ipam_body=,
options=, labels=, check_duplicate=)``, ``.remove(ref)``, ``.prune(filters)``,
``.connect(net, container, aliases=, ipv4=)``, ``.disconnect(net, container, force=)``
(``conch.engine.network.service.NetworkService``). Records are
``conch.engine.network.records.Network``; the JSON is docker's (api/types/network).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from conch.api.params import call_engine, engine_of, json_response, parse_filters
from conch.api.body import NETWORK_CONNECT, NETWORK_CREATE, NETWORK_DISCONNECT, decode
from conch.api.container_json import endpoint_settings
from conch.errors import InvalidArgument, Unavailable

FILTERS = {"name", "id", "driver", "label", "type", "dangling", "scope"}


def register(add) -> None:
    add("GET", "/networks", list_networks)
    add("POST", "/networks/create", create)
    add("POST", "/networks/prune", prune)
    add("GET", "/networks/{id}", inspect)
    add("DELETE", "/networks/{id}", remove)
    add("POST", "/networks/{id}/connect", connect)
    add("POST", "/networks/{id}/disconnect", disconnect)


def _svc(request):
    networks = getattr(engine_of(request), "networks", None)
    if networks is None:
        raise Unavailable("networks are not available in this engine")
    return networks


async def _body(request: web.Request, schema) -> dict:
    # typed as dockerd decodes it: a wrong type is a 400 in Go's words (conch.api.body)
    return decode(await request.read(), schema, empty={})


def network_json(net: Any, endpoints: dict[str, dict] | None) -> dict[str, Any]:
    config = []
    if net.subnet:
        item = {"Subnet": net.subnet, "Gateway": net.gateway}
        if net.ip_range:
            item["IPRange"] = net.ip_range
        if getattr(net, "aux_addresses", None):
            item["AuxiliaryAddresses"] = dict(net.aux_addresses)
        config.append(item)
    if getattr(net, "subnet6", ""):
        config.append({"Subnet": net.subnet6, "Gateway": net.gateway6})
    containers = {}
    for cid, info in (endpoints or {}).items():
        ep = info["endpoint"]
        containers[cid] = {"Name": info["name"], "EndpointID": ep["endpoint_id"],
                           "MacAddress": ep["mac"], "IPv4Address": f"{ep['ip']}/{ep['prefixlen']}",
                           "IPv6Address": f"{ep['ip6']}/{ep['prefixlen6']}" if ep.get("ip6") else ""}
    return {
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
        "Driver": net.driver, "EnableIPv4": True, "EnableIPv6": bool(getattr(net, "enable_ipv6", False)),
        # dockerd: IPAM.Options as the create request gave them (the docker CLI sends
        # {}, docker-py none: null), null for the networks it made itself
        "IPAM": {"Driver": "default",
                 "Options": None if net.ipam_options is None else dict(net.ipam_options),
                 "Config": config},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": containers, "Options": dict(net.options), "Labels": dict(net.labels),
    }


async def list_networks(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query, allowed=FILTERS)
    for value in filters.get("dangling", ()):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
    scopes = filters.pop("scope", None)
    if scopes and "local" not in scopes:
        return json_response([])  # every network here is local
    svc = _svc(request)
    nets = await call_engine(svc.list, filters)
    return json_response([network_json(n, svc.endpoints(n.id)) for n in nets])


async def inspect(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    net = await call_engine(svc.get, request.match_info["id"])
    return json_response(network_json(net, svc.endpoints(net.id)))


async def create(request: web.Request) -> web.StreamResponse:
    body = await _body(request, NETWORK_CREATE)
    name = body.get("Name") or ""
    if not name:
        raise InvalidArgument("network name is required" if "Name" not in body else
                              'invalid network name "": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    net = await call_engine(_svc(request).create, name, driver=body.get("Driver") or "bridge",
                            internal=bool(body.get("Internal")),
                            attachable=bool(body.get("Attachable")), ipam_body=body.get("IPAM"),
                            options=dict(body.get("Options") or {}),
                            labels=dict(body.get("Labels") or {}),
                            check_duplicate=body.get("CheckDuplicate", True) is not False,
                            enable_ipv6=bool(body.get("EnableIPv6")))
    return json_response({"Id": net.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    await call_engine(_svc(request).remove, request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query, allowed={"until", "label", "label!"})
    names = await call_engine(_svc(request).prune, filters)
    return json_response({"NetworksDeleted": names or None})


async def connect(request: web.Request) -> web.StreamResponse:
    body = await _body(request, NETWORK_CONNECT)
    container = body.get("Container") or ""
    if not container:
        raise InvalidArgument("no container specified")
    settings = endpoint_settings(body.get("EndpointConfig"))
    await call_engine(_svc(request).connect, request.match_info["id"], container,
                      aliases=settings["aliases"], ipv4=settings["ipv4"], settings=settings)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.StreamResponse:
    body = await _body(request, NETWORK_DISCONNECT)
    container = body.get("Container") or ""
    if not container:
        raise InvalidArgument("no container specified")
    await call_engine(_svc(request).disconnect, request.match_info["id"], container,
                      force=bool(body.get("Force")))
    return web.Response(status=200)
