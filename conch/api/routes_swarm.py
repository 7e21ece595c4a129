"""Swarm-mode and plugin routes, answered as dockerd answers them on a node that is not
a swarm member and has no managed plugins.

conch has no swarm mode: every ``/swarm``, ``/nodes``, ``/services``, ``/tasks``,
``/secrets`` and ``/configs`` route exists so that clients get dockerd's own 503 texts
(moby ``daemon/cluster``: ``errNoSwarm`` for leave, ``errNoManager`` for the rest) and
not ``page not found``; docker-py's ``swarm`` helpers and ``docker info``-driven tools
branch on exactly these. ``GET /plugins`` is ``[]`` (no managed plugins; the built-in
drivers are listed in ``/info`` ``Plugins``), and a named plugin is moby's
``plugin "<name>" not found`` (404). No engine call: there is nothing to ask.
"""

from __future__ import annotations

from aiohttp import web

from conch.api.params import json_response, parse_filters
from conch.errors import NotFound, Unavailable

#: moby daemon/cluster/errors.go errNoSwarm (swarm leave on a node outside a swarm).
NOT_PART_OF_SWARM = "This node is not part of a swarm"
#: moby daemon/cluster/cluster.go errNoManager when the node has no swarm at all.
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or '
                 '"docker swarm join" to connect this node to swarm and try again.')
#: init/join would make this node a swarm member: conch cannot.
NO_SWARM_MODE = "conch does not support swarm mode: this node cannot join or create a swarm"

_PLUGIN_FILTERS = {"capability", "enable"}


def register(add) -> None:
    add("POST", "/swarm/leave", _not_part_of_swarm)
    add("POST", "/swarm/init", _no_swarm_mode)
    add("POST", "/swarm/join", _no_swarm_mode)
    for method, path in (
        ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"),
        ("POST", "/swarm/unlock"),
        ("GET", "/nodes"), ("GET", "/nodes/{id}"), ("DELETE", "/nodes/{id}"),
        ("POST", "/nodes/{id}/update"),
        ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/{id}"),
        ("DELETE", "/services/{id}"), ("POST", "/services/{id}/update"),
        ("GET", "/services/{id}/logs"),
        ("GET", "/tasks"), ("GET", "/tasks/{id}"), ("GET", "/tasks/{id}/logs"),
        ("GET", "/secrets"), ("POST", "/secrets/create"), ("GET", "/secrets/{id}"),
        ("DELETE", "/secrets/{id}"), ("POST", "/secrets/{id}/update"),
        ("GET", "/configs"), ("POST", "/configs/create"), ("GET", "/configs/{id}"),
        ("DELETE", "/configs/{id}"), ("POST", "/configs/{id}/update"),
    ):
        add(method, path, _not_a_manager)
    add("GET", "/plugins", list_plugins)
    add("GET", "/plugins/privileges", _plugin_privileges)
    for method, path in (
        ("GET", "/plugins/{name:.+}/json"), ("DELETE", "/plugins/{name:.+}"),
        ("POST", "/plugins/{name:.+}/enable"), ("POST", "/plugins/{name:.+}/disable"),
        ("POST", "/plugins/{name:.+}/upgrade"), ("POST", "/plugins/{name:.+}/push"),
        ("POST", "/plugins/{name:.+}/set"),
    ):
        add(method, path, _no_such_plugin)
    add("POST", "/plugins/pull", _plugin_install)
    add("POST", "/plugins/create", _plugin_install)


async def _not_part_of_swarm(request: web.Request) -> web.StreamResponse:
    raise Unavailable(NOT_PART_OF_SWARM)


async def _not_a_manager(request: web.Request) -> web.StreamResponse:
    raise Unavailable(NOT_A_MANAGER)


async def _no_swarm_mode(request: web.Request) -> web.StreamResponse:
    raise Unavailable(NO_SWARM_MODE)


async def list_plugins(request: web.Request) -> web.StreamResponse:
    # the filters are still checked, as dockerd does (400 for an unknown key)
    parse_filters(request.query, allowed=_PLUGIN_FILTERS)
    return json_response([])


async def _plugin_privileges(request: web.Request) -> web.StreamResponse:
    raise Unavailable("conch does not support managed plugins: "
                      f"cannot fetch {request.query.get('remote', '')!r}")


async def _plugin_install(request: web.Request) -> web.StreamResponse:
    raise Unavailable("conch does not support managed plugins")


async def _no_such_plugin(request: web.Request) -> web.StreamResponse:
    # moby plugin/errors.go errNotFound: fmt.Sprintf("plugin %q not found", name)
    name = request.match_info["name"]
    raise NotFound(f'plugin "{name}" not found')
