"""``conch build``'s BuildKit options around the classic ``POST /build``: ``--output``,
``--cache-to``/``--cache-from type=registry`` and ``--progress=plain``.

Contract (buildx's option syntax; done by the client with the Engine API, so any conchd
serves them):

* ``--output type=local,dest=DIR`` writes the built image's filesystem into DIR;
  ``type=tar,dest=FILE`` as a tar (``-``: stdout); ``type=oci,dest=FILE`` /
  ``type=docker,dest=FILE`` the image as an OCI layout tar (``GET /images/get``). A bare
  ``--output DIR`` is ``type=local``. The filesystem comes from a created (never
  started) container's ``export``, removed afterwards.
* ``--cache-from type=registry,ref=R`` pulls R (a failure is a warning: no cache) and
  names it as a ``cachefrom`` source; a bare value is an image (docker's form).
  ``--cache-to type=registry,ref=R`` tags the built image R and pushes it: the image and
  its history are the cache (BuildKit's ``mode=min``: the exported stage's steps).
* :class:`PlainProgress` prints the classic stream as BuildKit's plain progress:
  ``#N [k/M] INSTRUCTION``, the step's output lines prefixed ``#N 0.123``, then
  ``#N CACHED`` or ``#N DONE 0.4s`` (timed here, as the lines arrive: the stream is
  sent as the build goes).
"""

from __future__ import annotations

import re
import time
from typing import Any

from conch.cli.main import CommandError, Context, UsageError


def _fields(spec: str) -> dict[str, str]:
    out = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip()] = value
        elif part:
            out.setdefault("_bare", part)
    return out


def parse_output(spec: str) -> tuple[str, str]:
    f = _fields(spec)
    if "_bare" in f and "type" not in f:
        return "local", f["_bare"]
    kind = f.get("type", "")
    if kind not in ("local", "tar", "oci", "docker", "image"):
        raise UsageError(f"unsupported output type {kind!r}: local, tar, oci, docker or image")
    dest = f.get("dest", "")
    if kind in ("local", "tar", "oci", "docker") and not dest:
        raise UsageError(f"output type {kind} needs dest=")
    return kind, dest


def cache_ref(spec: str, *, to: bool) -> str:
    f = _fields(spec)
    if "_bare" in f and "type" not in f:
        if to:
            raise UsageError(f"--cache-to {spec!r}: type=registry,ref=… is supported")
        return f["_bare"]
    if f.get("type") != "registry" or not f.get("ref"):
        raise UsageError(f"unsupported cache {spec!r}: type=registry,ref=NAME is supported")
    return f["ref"]


def import_caches(ctx: Context, refs: list[str]) -> None:
    from conch.cli.container_run import pull_image

    for ref in refs:
        try:
            pull_image(ctx, ref, quiet=True)
        except Exception as exc:  # noqa: BLE001 - no cache is a warning, as buildx
            ctx.err(f"WARNING: failed to import cache {ref}: {exc}")


def export_cache(ctx: Context, image_id: str, ref: str) -> None:
    from urllib.parse import quote

    from conch.cli.registry_cmds import encode_auth, get_credentials
    from conch.oci.reference import Reference

    r = Reference.parse(ref)
    ctx.client.request("POST", f"/images/{quote(image_id, safe='')}/tag",
                       params={"repo": r.familiar_name(), "tag": r.tag or "latest"}).read()
    resp = ctx.client.request("POST", f"/images/{quote(r.familiar_name(), safe='/:@')}/push",
                              params={"tag": r.tag or "latest"},
                              headers={"X-Registry-Auth": encode_auth(get_credentials(r.domain) or {})})
    for msg in ctx.client.stream_json("POST", "", response=resp):
        if msg.get("errorDetail"):
            raise CommandError(f"failed to export cache to {ref}: {msg['errorDetail'].get('message')}")


def write_output(ctx: Context, image_id: str, kind: str, dest: str) -> None:
    import io
    import os
    import sys
    import tarfile

    if kind == "image":
        return
    if kind in ("oci", "docker"):
        chunks = ctx.client.stream_raw("GET", "/images/get", params={"names": image_id})
        _write_chunks(chunks, dest)
        return
    created = ctx.client.post("/containers/create", {"Image": image_id, "Cmd": ["true"],
                                                      "Entrypoint": [""], "NetworkDisabled": True})
    cid = created["Id"]
    try:
        chunks = ctx.client.stream_raw("GET", f"/containers/{cid}/export")
        if kind == "tar":
            _write_chunks(chunks, dest)
            return
        os.makedirs(dest, exist_ok=True)
        data = io.BytesIO(b"".join(chunks))
        with tarfile.open(fileobj=data) as tar:
            members = [m for m in tar.getmembers() if not m.isdev()
                       and not m.name.startswith((".dockerenv",))]
            kwargs: dict[str, Any] = {"filter": "tar"} if sys.version_info >= (3, 12) else {}
            tar.extractall(dest, members=members, **kwargs)
    finally:
        ctx.client.request("DELETE", f"/containers/{cid}", params={"force": True, "v": True}).read()


def _write_chunks(chunks, dest: str) -> None:
    import sys

    if dest == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return
    with open(dest, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$", re.S)
_NOISE = re.compile(r"^ ---> (Running in |Removed intermediate container |Using cache$|[0-9a-f]{12}$)")


class PlainProgress:
    """The classic stream as BuildKit's ``--progress=plain`` (see the module docstring)."""

    def __init__(self, write):
        self.write = write
        self.n = 0
        self.started = 0.0
        self.cached = False
        self.open = False
        self.t0 = time.monotonic()

    def _close(self) -> None:
        if self.open:
            elapsed = time.monotonic() - self.started
            self.write(f"#{self.n} CACHED" if self.cached else f"#{self.n} DONE {elapsed:.1f}s")
            self.write("")
        self.open = False

    def feed(self, text: str) -> None:
        for line in text.splitlines():
            m = _STEP.match(line)
            if m:
                self._close()
                self.n += 1
                self.started, self.cached, self.open = time.monotonic(), False, True
                self.write(f"#{self.n} [{m.group(1)}/{m.group(2)}] {m.group(3).strip()}")
                continue
            if line.strip() == "---> Using cache":
                self.cached = True
                continue
            if _NOISE.match(line) or not line.strip():
                continue
            line = line.replace("\033[91m", "").replace("\033[0m", "")
            if line.startswith(("Successfully built", "Successfully tagged")):
                self._close()
                self.write(line)
                continue
            if self.open:
                self.write(f"#{self.n} {time.monotonic() - self.started:.3f} {line}")
            else:
                self.write(line)

    def finish(self) -> None:
        self._close()
