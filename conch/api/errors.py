"""conch error kinds -> HTTP responses, in dockerd's shape.

dockerd answers every error with ``{"message": "<text>"}`` (application/json) and the
docker CLI prints ``Error response from daemon: <text>``, so the message is the error's
``str()`` exactly, with no prefix. The status comes from the kind's ``http_status``
(``conch.errors``); anything that is not a ``ConchError`` is a bug and becomes a 500 with
its message. This module is the only place an exception turns into HTTP.
"""

from __future__ import annotations

import logging

from aiohttp import web

from conch.api.params import json_response
from conch.errors import ConchError

log = logging.getLogger(__name__)

PAGE_NOT_FOUND = "page not found"


class NotImplementedYet(ConchError):
    """A Docker feature conch does not have yet (HTTP 501): the route exists so the
    client gets a clear message instead of ``page not found``."""

    http_status = 501


def status_of(exc: BaseException) -> int:
    if isinstance(exc, ConchError):
        return exc.http_status
    return 500


def error_response(exc: BaseException) -> web.Response:
    """The response dockerd would send for ``exc``."""
    status = status_of(exc)
    if status >= 500 and not isinstance(exc, ConchError):
        log.error("internal error: %s", exc, exc_info=exc)
    message = str(exc) or type(exc).__name__
    return json_response({"message": message}, status=status)


def http_exception_response(exc: web.HTTPException) -> web.StreamResponse:
    """aiohttp's own errors (no route, wrong method, body too large) in Docker's body.

    moby answers both an unknown path and a wrong method with 404 ``page not found``
    (its mux's NotFoundHandler and MethodNotAllowedHandler are the same handler)."""
    if exc.status in (404, 405):
        return json_response({"message": PAGE_NOT_FOUND}, status=404)
    if exc.status < 400:
        return exc  # redirects and the like are not errors
    return json_response({"message": exc.text or exc.reason}, status=exc.status)
