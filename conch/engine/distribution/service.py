"""Registries from the engine's side: pull, push, login, distribution inspect.

Contract: :class:`Distribution` is built once by the engine with the ImageService, the
event bus and a :class:`conch.registry.client.transport.Registries` (the daemon's
``--insecure-registry`` list). ``pull``/``push`` are async generators of
a :class:`~conch.engine.distribution.progress.Progress` (docker's jsonmessage statuses; the API adds the progress bar text);
an error raised before the first item means nothing was started (the API answers it
with an HTTP status), one raised later ends the stream. Each operation has its own
aiohttp session, closed when the generator ends (or is closed by a client going away).
Events: ``image pull`` / ``image push`` with the familiar reference, as dockerd.

``server`` strings for login are normalised as docker does: ``https://index.docker.io/v1/``
(the CLI's default) and ``docker.io`` are Docker Hub; a scheme and path are dropped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from conch.engine.distribution.progress import Progress
from conch.errors import InvalidArgument
from conch.oci import mediatype as mt
from conch.oci.image import ImageConfig, ImageIndex, ImageManifest
from conch.oci.platform import Platform
from conch.oci.reference import DEFAULT_DOMAIN, Reference, validate_tag

if TYPE_CHECKING:  # the registry client loads on the first pull/push/login: an idle conchd skips it
    from conch.registry.client.auth import Credentials
    from conch.registry.client.transport import Registries

INDEX_SERVER = "https://index.docker.io/v1/"


def registry_domain(server: str) -> str:
    """A login server address -> the registry domain (``docker.io`` for Docker Hub)."""
    s = server.strip()
    if not s or s.rstrip("/") in (INDEX_SERVER.rstrip("/"), "https://index.docker.io",
                                   "index.docker.io", "docker.io", "registry-1.docker.io"):
        return DEFAULT_DOMAIN
    for prefix in ("https://", "http://"):
        s = s.removeprefix(prefix)
    s = s.split("/", 1)[0]
    if not s:
        raise InvalidArgument(f"invalid registry server address {server!r}")
    return DEFAULT_DOMAIN if s in ("index.docker.io", "registry-1.docker.io") else s


def _or_anonymous(credentials: Credentials | None) -> Credentials:
    if credentials is None:
        from conch.registry.client.auth import ANONYMOUS

        return ANONYMOUS
    return credentials


class Distribution:
    def __init__(self, images, events,
                 registries: Registries | Callable[[], Registries] | None = None) -> None:
        """``registries``: the daemon's Registries, or a function making it when first
        needed (conchd's: the registry client is not imported until a pull, push, login
        or search), or None for the defaults."""
        self.images = images
        self.events = events
        self._registries = registries

    @property
    def registries(self) -> Registries:
        if self._registries is None:
            from conch.registry.client.transport import Registries

            self._registries = Registries()
        elif callable(self._registries):
            self._registries = self._registries()
        return self._registries

    async def pull(self, ref: str, *, platform: str | None = None, all_tags: bool = False,
                   credentials: Credentials | None = None) -> AsyncIterator[Progress]:
        from conch.engine.distribution.pull import pull_one
        from conch.registry.client.resolve import list_tags

        credentials = _or_anonymous(credentials)
        named = Reference.parse(ref, default_tag=not all_tags)
        plat = Platform.parse(platform) if platform else None
        async with self.registries.session() as session:
            host = self.registries.host(session, named.domain, credentials)
            refs = [named]
            if all_tags and not named.tag and named.digest is None:
                refs = [named.with_tag(t) for t in await list_tags(host, named.path)]
            for one in refs:
                async for item in pull_one(self.images, host, one, plat):
                    yield item
                self.events.publish("image", "pull", one.familiar(), name=one.familiar())
            if len(refs) > 1:
                yield Progress(status=f"Status: Downloaded newer images for {named.familiar_name()}")

    async def push(self, name: str, tag: str = "", *,
                   credentials: Credentials | None = None) -> AsyncIterator[Progress]:
        from conch.engine.distribution.push import push_tag, tags_to_push

        credentials = _or_anonymous(credentials)
        named = Reference.parse(name, default_tag=False)
        if named.digest is not None:
            raise InvalidArgument("cannot push a digest reference")
        if named.tag and not tag:
            tag = named.tag
        if tag:
            validate_tag(tag)
        named = named.name_only()
        tags = await asyncio.to_thread(tags_to_push, self.images, named, tag)
        yield Progress(status=f"The push refers to repository [{named.name}]")
        async with self.registries.session() as session:
            host = self.registries.host(session, named.domain, credentials)
            for t in tags:
                async for item in push_tag(self.images, host, named, t):
                    yield item
                self.events.publish("image", "push", named.with_tag(t).familiar(),
                                    name=named.with_tag(t).familiar())

    async def login(self, server: str, credentials: Credentials) -> str:
        """Check ``credentials`` against the registry; docker's status text. Raises
        :class:`Unauthorized` (HTTP 401) when the registry refuses them."""
        from conch.registry.client.auth import Unauthorized
        from conch.registry.client.transport import raise_for

        domain = registry_domain(server)
        async with self.registries.session() as session:
            host = self.registries.host(session, domain, credentials)
            await host.ping()
            try:
                resp = await host.request("GET", "", what=f"login to {domain}")
            except Unauthorized as exc:
                raise Unauthorized(f"login attempt to {host.base}/v2/ failed with status: "
                                   f"401 Unauthorized") from exc
            try:
                if resp.status == 401:
                    raise Unauthorized(f"login attempt to {host.base}/v2/ failed with status: "
                                       f"401 Unauthorized")
                await raise_for(resp, f"login to {domain}")
            finally:
                resp.release()
        return "Login Succeeded"

    async def inspect(self, ref: str, *,
                      credentials: Credentials | None = None) -> tuple[Any, list[Platform]]:
        """``GET /distribution/{name}/json``: (the descriptor the reference names, the
        platforms it offers)."""
        from conch.registry.client.blobs import fetch_small
        from conch.registry.client.resolve import fetch_manifest, platforms_of

        credentials = _or_anonymous(credentials)
        named = Reference.parse(ref)
        reference = str(named.digest) if named.digest is not None else named.tag
        async with self.registries.session() as session:
            host = self.registries.host(session, named.domain, credentials)
            desc, data = await fetch_manifest(host, named.path, reference)
            if mt.is_index(desc.media_type):
                return desc, platforms_of(ImageIndex.from_bytes(data))
            config = ImageManifest.from_bytes(data).config
            cfg = ImageConfig.from_bytes(await fetch_small(host, named.path, config))
            return desc, [cfg.platform()]
