"""The aiohttp application: routing, authentication, the token endpoint, error bodies.

Routing is by the spec's endpoint table (distribution-spec "Endpoints") matched with
regular expressions over the raw path, because a repository name may itself contain
slashes; the name is validated before any handler runs (NAME_INVALID). Each route says
which action it needs on the repository (``pull``/``push``/``delete``); ``_authorize``
checks it before the handler runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass

from aiohttp import web

from . import routes_blobs as blobs
from . import routes_manifests as manifests
from .auth import Authorizer, Scope, TokenSigner, covers, parse_basic, TOKEN_TTL
from .errors import RegistryError
from .names import paginate, parse_page, validate_name
from .storage import Storage
from .uploads import Uploads

log = logging.getLogger(__name__)

_NAME = r"(?P<name>.+?)"
_DIGEST = r"(?P<digest>[^/]+)"
# (pattern, {method: (handler, action)}); first match wins, most specific first.
ROUTES = [
    (rf"/v2/{_NAME}/blobs/uploads/?", {"POST": (blobs.start_upload, "push")}),
    (rf"/v2/{_NAME}/blobs/uploads/(?P<session>[^/]+)", {
        "PATCH": (blobs.patch_upload, "push"), "PUT": (blobs.finish_upload, "push"),
        "GET": (blobs.upload_status, "push"), "DELETE": (blobs.cancel_upload, "push")}),
    (rf"/v2/{_NAME}/blobs/{_DIGEST}", {
        "GET": (blobs.get_blob, "pull"), "HEAD": (blobs.get_blob, "pull"),
        "DELETE": (blobs.delete_blob, "delete")}),
    (rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)", {
        "GET": (manifests.get_manifest, "pull"), "HEAD": (manifests.get_manifest, "pull"),
        "PUT": (manifests.put_manifest, "push"), "DELETE": (manifests.delete_manifest, "delete")}),
    (rf"/v2/{_NAME}/tags/list", {"GET": (manifests.list_tags, "pull")}),
    (rf"/v2/{_NAME}/referrers/{_DIGEST}", {"GET": (manifests.list_referrers, "pull")}),
]
_COMPILED = [(re.compile(p), m) for p, m in ROUTES]
# What satisfies each needed action ("*" always does; push implies delete, since clients
# such as skopeo ask for pull,push before deleting).
_SATISFIES = {"pull": ("pull",), "push": ("push",), "delete": ("delete", "push")}


@dataclass(slots=True)
class Identity:
    user: str | None
    scopes: list[Scope] | None  # token scopes; None for Basic/anonymous (policy decides)
    bearer: bool = False


class Registry:
    """Everything a handler needs: storage, upload sessions and the auth policy."""

    def __init__(self, root, authorizer: Authorizer, realm: str | None = None):
        self.storage = Storage(root)
        self.uploads = Uploads(self.storage)
        self.authorizer = authorizer
        self.signer = TokenSigner(root) if authorizer.enabled else None
        self.realm = realm

    # -- authentication -----------------------------------------------------------------

    async def identify(self, request: web.Request) -> Identity:
        """Who is asking; raises 401 for credentials that are present but wrong."""
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            verified = self.signer.verify(header[7:].strip())
            if verified is None:
                raise self.challenge(request, None, error="invalid_token")
            return Identity(verified[0] or None, verified[1], bearer=True)
        if header:
            creds = parse_basic(header)
            if creds is None or not await asyncio.to_thread(self.authorizer.users.check, *creds):
                raise self.challenge(request, None)
            return Identity(creds[0], None)
        return Identity(None, None)

    def challenge(self, request: web.Request, scope: Scope | None, error: str = "") -> RegistryError:
        realm = self.realm or f"{request.scheme}://{request.host}/token"
        value = f'Bearer realm="{realm}",service="{self.signer.service}"'
        if scope is not None:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return RegistryError("UNAUTHORIZED", headers={"WWW-Authenticate": value})

    def permits(self, ident: Identity, scope: Scope) -> bool:
        (action,) = scope.actions
        for option in _SATISFIES.get(action, (action,)):
            needed = Scope(scope.type, scope.name, frozenset({option}))
            if ident.scopes is not None:
                if covers(ident.scopes, needed):
                    return True
            elif covers([Scope(scope.type, scope.name,
                               self.authorizer.allowed(ident.user, needed))], needed):
                return True
        return False

    async def authorize(self, request: web.Request, scope: Scope | None) -> None:
        """Let the request through or raise 401 (with the challenge) / 403."""
        if not self.authorizer.enabled:
            return
        ident = await self.identify(request)
        request["identity"] = ident
        if scope is None:  # /v2/ itself: any valid identity, but never anonymous
            if ident.user is None and not ident.bearer:
                raise self.challenge(request, None)
            return
        if self.permits(ident, scope):
            return
        # Ask for what a client doing this would ask for: writers want pull,push.
        asked = scope
        if scope.type == "repository" and "pull" not in scope.actions:
            asked = Scope(scope.type, scope.name, frozenset({"pull", "push"}))
        if ident.bearer:
            raise self.challenge(request, asked, error="insufficient_scope")
        if ident.user is None:
            raise self.challenge(request, asked)
        raise RegistryError("DENIED", detail={"scope": str(scope)})

    def may_pull(self, request: web.Request, name: str) -> bool:
        """For cross-repo mounts: may this caller read ``name``? (never raises)."""
        if not self.authorizer.enabled:
            return True
        ident = request.get("identity")
        return ident is not None and self.permits(ident, Scope("repository", name, frozenset({"pull"})))

    # -- the token endpoint --------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        if not self.authorizer.enabled:
            raise RegistryError("UNSUPPORTED", "this registry does not use tokens", status=404)
        params = dict(request.query)
        scopes_text = request.query.getall("scope", [])
        creds = parse_basic(request.headers.get("Authorization", ""))
        if request.method == "POST":  # OAuth2 password grant (containers/image, docker)
            form = await request.post()
            scopes_text = form.getall("scope", [])
            if form.get("username") is not None:
                creds = (str(form["username"]), str(form.get("password", "")))
            params.update({k: str(v) for k, v in form.items()})
        user = None
        if creds is not None:
            if not await asyncio.to_thread(self.authorizer.users.check, *creds):
                raise RegistryError("UNAUTHORIZED", "invalid username or password")
            user = creds[0]
        elif request.headers.get("Authorization") or not self.authorizer.anonymous_pull:
            raise RegistryError("UNAUTHORIZED", "credentials required")
        requested = [s for text in scopes_text for part in text.split(" ")
                     if (s := Scope.parse(part)) is not None]
        granted = self.authorizer.grant(user, requested)
        now = int(time.time())
        tok = self.signer.issue(user or "", granted, now=now)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return web.json_response({"token": tok, "access_token": tok, "expires_in": TOKEN_TTL,
                                  "issued_at": issued})


# -- dispatch ---------------------------------------------------------------------------


async def _base(reg: Registry, request: web.Request) -> web.Response:
    await reg.authorize(request, None)
    return web.json_response({})


async def _catalog(reg: Registry, request: web.Request) -> web.Response:
    await reg.authorize(request, Scope("registry", "catalog", frozenset({"*"})))
    n, last = parse_page(request.query)
    repos, more = paginate(reg.storage.repositories(), n, last)
    headers = {}
    if more:
        headers["Link"] = f'</v2/_catalog?n={n}&last={repos[-1]}>; rel="next"'
    return web.json_response({"repositories": repos}, headers=headers)


async def _dispatch(reg: Registry, request: web.Request) -> web.StreamResponse:
    path = request.path
    if path in ("/v2", "/v2/"):
        if request.method not in ("GET", "HEAD"):
            raise RegistryError("UNSUPPORTED", status=405)
        return await _base(reg, request)
    if path == "/v2/_catalog":
        return await _catalog(reg, request)
    for pattern, methods in _COMPILED:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        groups = m.groupdict()
        name = validate_name(groups["name"])
        entry = methods.get(request.method)
        if entry is None:
            raise RegistryError("UNSUPPORTED", f"method {request.method} not allowed", status=405)
        handler, action = entry
        await reg.authorize(request, Scope("repository", name, frozenset({action})))
        return await handler(reg, request, **groups)
    raise RegistryError("NAME_UNKNOWN", "no such endpoint", status=404)


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except RegistryError as exc:
        resp = web.Response(status=exc.status, body=exc.body(), content_type="application/json",
                            headers=exc.headers)
    except web.HTTPException:
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        body = json.dumps({"errors": [{"code": "UNKNOWN", "message": "internal error"}]})
        resp = web.Response(status=500, text=body, content_type="application/json")
    resp.headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return resp


def make_app(reg: Registry) -> web.Application:
    # client_max_size only bounds request.read()/post(); blob bodies are streamed.
    app = web.Application(middlewares=[_errors], client_max_size=1 << 20)

    async def v2(request: web.Request) -> web.StreamResponse:
        return await _dispatch(reg, request)

    app.router.add_route("*", "/v2{tail:.*}", v2)
    app.router.add_route("GET", "/token", reg.token)
    app.router.add_route("POST", "/token", reg.token)
    return app
