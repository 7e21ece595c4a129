"""The aiohttp application (routes, middlewares, dockerd's headers) and its unix socket.

Routing: every route is registered twice, bare (``/images/json``) and under Docker's
version prefix (``/v{api_version}/images/json``); the version middleware reads the
prefix, refuses versions outside [MIN_API_VERSION, API_VERSION] with moby's messages and
stores the parsed version for ``params.api_version``. Route modules never see the prefix:
each exposes ``register(add)`` and calls ``add(method, path, handler)``.

Socket: ``serving(app, "unix:///run/conch/conch.sock")`` removes a stale socket file, but
refuses to start when another daemon still answers on it; the socket is mode 0660.
Handlers are cancelled when their client disconnects (``handler_cancellation``), which is
what ends an ``/events`` stream or an attach whose client went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from conch.api import routes_distribution, routes_images, routes_swarm, routes_system
from conch.api.errors import error_response, http_exception_response
from conch.api.params import (API_VERSION, API_VERSION_KEY, ENGINE, MIN_API_VERSION,
                              docker_headers)
from conch.errors import AlreadyExists, ConchError, FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_HOST = "unix:///run/conch/conch.sock"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AddRoute = Callable[[str, str, Handler], None]

#: Each module's ``register(add)`` adds its routes. Container and exec routes are added
#: here by their modules' authors, one line each.
ROUTE_MODULES = (routes_system, routes_images, routes_distribution, routes_swarm)

def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError as exc:
        raise InvalidArgument(f"invalid API version {text!r}") from exc


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return http_exception_response(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes HTTP
        return error_response(exc)


@web.middleware
async def _version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # moby middleware/version.go: refuse too old / too new, with its exact texts.
    raw = request.match_info.get("api_version")
    if raw is not None:
        wanted = _version_tuple(raw)
        if wanted < _version_tuple(MIN_API_VERSION):
            raise InvalidArgument(
                f"client version {raw} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version")
        if wanted > _version_tuple(API_VERSION):
            raise InvalidArgument(f"client version {raw} is too new. Maximum supported API "
                                  f"version is {API_VERSION}")
        request[API_VERSION_KEY] = wanted[:2] if len(wanted) >= 2 else (wanted[0], 0)
    return await handler(request)


#: Routes that write content blobs or snapshots before naming an image: each holds an
#: image-store lease (conch.images.gc) so the blob/snapshot GC never runs between the two.
_CONTENT_WRITERS = frozenset({"/images/create", "/images/load", "/images/{name}/push",
                              "/build", "/commit"})


@web.middleware
async def _lease_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else ""
    if template.startswith("/v{api_version}"):
        template = template[len("/v{api_version}"):]
    leases = None
    if request.method == "POST" and template in _CONTENT_WRITERS:
        leases = getattr(getattr(request.app[ENGINE], "images", None), "leases", None)
    if leases is None:
        return await handler(request)
    while not leases.try_acquire():  # only while a GC runs (it never waits for us)
        await asyncio.sleep(0.02)
    try:
        return await handler(request)
    finally:
        leases.release()


async def _add_docker_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in docker_headers().items():
        response.headers[name] = value


def create_app(engine: Any, *, modules: tuple = ROUTE_MODULES) -> web.Application:
    """The REST adapter over ``engine`` (see ``conch.api`` for what it must offer)."""
    app = web.Application(middlewares=[_errors_middleware, _version_middleware,
                                       _lease_middleware],
                          client_max_size=64 * 1024 * 1024)
    app[ENGINE] = engine
    app.on_response_prepare.append(_add_docker_headers)

    def add(method: str, path: str, handler: Handler) -> None:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v{api_version:[0-9.]+}" + path, handler)

    for module in modules:
        module.register(add)
    return app


def socket_path(host: str) -> Path:
    """``unix:///run/conch/conch.sock`` -> ``/run/conch/conch.sock``."""
    if not host.startswith("unix://"):
        raise InvalidArgument(f"unsupported host {host!r}: only unix:// sockets are served")
    path = host[len("unix://"):]
    if not path.startswith("/"):
        raise InvalidArgument(f"unix socket path must be absolute: {host!r}")
    return Path(path)


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket at ``path``; refuse if a live daemon answers on it."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FailedPrecondition(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConchError(f"probing {path}: {exc}") from exc
    else:
        raise AlreadyExists(f"another daemon is already listening on {path}")
    finally:
        probe.close()
    log.info("removing stale socket %s", path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str = DEFAULT_HOST,
                  *, shutdown_timeout: float = 5.0) -> AsyncIterator[Path]:
    """Serve ``app`` on the unix socket ``host`` for the duration of the block; the socket
    file is removed on the way out. Yields the socket path."""
    path = socket_path(host)
    _claim_socket_path(path)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.UnixSite(runner, str(path))
        await site.start()
        os.chmod(path, 0o660)
        log.info("API listening on %s", host)
        yield path
    finally:
        # Hijacked sessions (attach, exec) are invisible to aiohttp's shutdown: bound
        # the wait so SIGTERM always stops the daemon (containers keep running).
        try:
            await asyncio.wait_for(runner.cleanup(), shutdown_timeout + 2)
        except asyncio.TimeoutError:
            log.warning("API shutdown timed out; closing anyway")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
