"""A tiny misbehaving registry (aiohttp) for the failure paths a real registry never takes.

A real registry does not serve corrupt blobs, cut connections half-way, stall, or
redirect to foreign hosts on demand, so the tests of those paths use this fake, on
127.0.0.1 only. It serves ``blobs`` and ``manifests`` (dicts filled by the test) under
one repository, and misbehaves per blob digest as told in ``faults``:

* ``"corrupt"``  -- the right size, one byte flipped (a digest mismatch);
* ``"drop"``     -- the first GET sends half the blob then closes the connection; later
  GETs honour ``Range`` (a resumable download);
* ``"stall"``    -- the first GET sends half the blob, then silence until the client
  gives up (``"stall-always"``: every GET);
* ``"redirect"`` -- 307 to ``redirect_base`` (another origin), which serves the blob and
  records the Authorization header it received in ``seen_auth``.

Uploads (``POST …/blobs/uploads/``, ``PATCH`` with Content-Range, ``PUT ?digest=``) land
in ``blobs`` once their digest checks; ``fail_patch`` = N answers the N-th PATCH with a
500 (an upload failing half-way); ``patches`` counts PATCHes.

``token=True`` puts ``/v2/`` behind a Bearer challenge whose realm is ``/token`` here;
requests must then carry ``Bearer good-token``. ``requests`` logs (method, path, Range).

:meth:`add_image` serves a one-layer OCI image for the host's platform (gzip or zstd, a
diff_id of the test's choice), for pulls of hand-made layers.

Run it inside a test's event loop (``await reg.start()``) or in a background thread
(:meth:`start_in_thread`, for conchd to pull from).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

from aiohttp import web

from conch.oci.digest import Digest


class FakeRegistry:
    def __init__(self, *, token: bool = False) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}  # tag or digest -> (type, bytes)
        self.faults: dict[str, str] = {}
        self.token = token
        self.requests: list[tuple[str, str, str]] = []
        self.seen_auth: list[str | None] = []
        self.redirect_base = ""
        self._dropped: set[str] = set()
        self.uploads: dict[str, bytearray] = {}
        self.patches = 0
        self.fail_patch = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- content ---------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        digest = str(Digest.from_bytes(data))
        self.blobs[digest] = data
        return digest

    def add_manifest(self, media_type: str, data: bytes, tag: str = "") -> str:
        digest = str(Digest.from_bytes(data))
        self.manifests[digest] = (media_type, data)
        if tag:
            self.manifests[tag] = (media_type, data)
        return digest

    def add_image(self, tag: str, layer: bytes, *, compression: str = "gzip",
                  diff_id: str | None = None) -> bytes:
        """An OCI image of the one layer ``layer`` (uncompressed tar) under ``tag``; its
        config claims ``diff_id`` (default: the layer's own). Returns the manifest."""
        from conch.oci import mediatype as mt
        from conch.oci.platform import host_platform

        if compression == "zstd":
            import zstandard

            blob, media_type = zstandard.ZstdCompressor().compress(layer), mt.OCI_LAYER_ZSTD
        else:
            import gzip

            blob, media_type = gzip.compress(layer, 1), mt.OCI_LAYER_GZIP
        p = host_platform()
        platform = {"architecture": p.architecture, "os": p.os,
                    **({"variant": p.variant} if p.variant else {})}
        diff_id = diff_id or "sha256:" + hashlib.sha256(layer).hexdigest()
        config = _json({**platform, "config": {"Cmd": ["sh"]},
                        "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
        self.add_blob(blob)
        self.add_blob(config)
        manifest = _json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                          "config": descriptor(mt.OCI_CONFIG, config),
                          "layers": [descriptor(media_type, blob)]})
        self.add_manifest(mt.OCI_MANIFEST, manifest, tag=tag)
        return manifest

    # --- app ---------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)  # upload pieces are 8 MiB
        app.router.add_get("/v2/", self._ping)
        app.router.add_get("/token", self._token)
        app.router.add_get("/v2/{repo:.+}/manifests/{ref}", self._manifest)
        app.router.add_get("/v2/{repo:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/storage/{digest}", self._storage)
        app.router.add_post("/v2/{repo:.+}/blobs/uploads/", self._upload_start)
        app.router.add_patch("/v2/{repo:.+}/blobs/uploads/{uid}", self._upload_patch)
        app.router.add_put("/v2/{repo:.+}/blobs/uploads/{uid}", self._upload_put)
        return app

    async def _upload_start(self, request: web.Request) -> web.StreamResponse:
        uid = f"u{len(self.uploads)}"
        self.uploads[uid] = bytearray()
        loc = f"/v2/{request.match_info['repo']}/blobs/uploads/{uid}"
        return web.Response(status=202, headers={"Location": loc, "Range": "0-0"})

    async def _upload_patch(self, request: web.Request) -> web.StreamResponse:
        self.patches += 1
        if self.patches == self.fail_patch:
            return web.json_response({"errors": [{"code": "UNKNOWN", "message": "disk full"}]},
                                     status=500)
        buf = self.uploads[request.match_info["uid"]]
        start = int(request.headers.get("Content-Range", "0-0").split("-")[0])
        if start != len(buf):
            return web.Response(status=416)
        buf += await request.read()
        return web.Response(status=202, headers={"Location": request.path,
                                                 "Range": f"0-{len(buf) - 1}"})

    async def _upload_put(self, request: web.Request) -> web.StreamResponse:
        buf = self.uploads.pop(request.match_info["uid"]) + await request.read()
        if str(Digest.from_bytes(bytes(buf))) != request.query.get("digest"):
            return web.json_response({"errors": [{"code": "DIGEST_INVALID",
                                                  "message": "digest mismatch"}]}, status=400)
        self.blobs[request.query["digest"]] = bytes(buf)
        return web.Response(status=201, headers={"Location": request.path})

    def _authorized(self, request: web.Request) -> bool:
        return not self.token or request.headers.get("Authorization") == "Bearer good-token"

    def _challenge(self) -> web.Response:
        realm = f"http://127.0.0.1:{self.port}/token"
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"'})

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({}) if self._authorized(request) else self._challenge()

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", "/token?" + request.query_string, ""))
        return web.json_response({"token": "good-token", "expires_in": 300})

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", request.path, ""))
        if not self._authorized(request):
            return self._challenge()
        found = self.manifests.get(request.match_info["ref"])
        if found is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN",
                                                  "message": "manifest unknown"}]}, status=404)
        media_type, data = found
        return web.Response(body=data, headers={
            "Content-Type": media_type, "Docker-Content-Digest": str(Digest.from_bytes(data))})

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        rng = request.headers.get("Range", "")
        self.requests.append(("GET", request.path, rng))
        if not self._authorized(request):
            return self._challenge()
        data = self.blobs.get(digest)
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN",
                                                  "message": "blob unknown"}]}, status=404)
        fault = self.faults.get(digest, "")
        if fault == "redirect":
            raise web.HTTPTemporaryRedirect(f"{self.redirect_base}/storage/{digest}")
        if fault == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        if fault == "stall-always" or (fault in ("drop", "stall") and digest not in self._dropped):
            self._dropped.add(digest)
            return await self._half(request, data, stall=fault != "drop")
        return self._ranged(data, rng)

    def _ranged(self, data: bytes, rng: str) -> web.Response:
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            return web.Response(status=206, body=data[start:], headers={
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return web.Response(body=data)

    async def _half(self, request: web.Request, data: bytes, *, stall: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        if stall:
            await asyncio.sleep(3600)
        assert request.transport is not None
        request.transport.close()  # cut the connection mid-body
        return resp

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        self.seen_auth.append(request.headers.get("Authorization"))
        return web.Response(body=self.blobs[request.match_info["digest"]])

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> "FakeRegistry":
        self._runner = web.AppRunner(self._app(), shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_in_thread(self) -> "FakeRegistry":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-registry")
        self._thread.start()
        ready.wait(10)
        return self

    def stop_thread(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop = None


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    """An OCI descriptor of ``data`` (a dict, as a manifest holds it)."""
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}
