"""``docker import``: a rootfs tarball becomes a one-layer image.

Contract: :func:`import_image` reads the tarball (plain, gzip or zstd: detected from its
first bytes, as Docker does) exactly once, front to back, and in that one pass

* hashes the uncompressed tar (the layer's diff_id),
* gzip-compresses it (ISA-L level 1, as push does: ~3x the stdlib zlib's speed; the
  stdlib's level 1 when isal is missing: :func:`_gzip_level1` is the seam),
* hashes the compressed bytes (the blob digest) while the content store writes them.

It then writes the image config and a manifest, and names the image. Media types are
Docker's schema 2 (``application/vnd.docker.distribution.manifest.v2+json``,
``…container.image.v1+json``, ``…rootfs.diff.tar.gzip``), as ``docker import`` makes
them: an image that later goes to ``docker save`` or a registry looks like Docker's own,
and every client and registry reads schema 2.

The config (image-spec config.md, plus Docker's top-level ``comment``)::

    {"created": now, "architecture"/"os"/"variant": the platform (host by default),
     "comment": message, "config": from --change, "rootfs": {"type": "layers",
     "diff_ids": [diff_id]}, "history": [{"created": now, "created_by": "conch import",
     "comment": message}]}

``--change`` takes Dockerfile instructions (:func:`apply_changes`, also for ``commit``):
``CMD``, ``ENTRYPOINT`` (JSON exec form, or shell form -> ``["/bin/sh", "-c", …]``),
``ENV``, ``LABEL`` (``k=v …`` or the legacy ``k v``), ``WORKDIR`` (relative to the
previous one), ``USER``, ``EXPOSE``, ``VOLUME``, ``STOPSIGNAL``; anything else is
``InvalidArgument("… is not a valid change command")``. Quotes and backslashes are
honoured as a shell would; ``$VAR`` is not expanded.

On disk: the blobs go through the content store's ingest; nothing else is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import time
import zlib
from dataclasses import replace
from typing import BinaryIO, Iterable

from conch.errors import InvalidArgument, NotFound
from conch.images.records import Image
from conch.images.store import ImageService
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest, Digester
from conch.oci.image import ExecutionConfig, History, ImageConfig, ImageManifest, RootFS
from conch.oci.platform import Platform
from conch.oci.reference import Reference

# ISA-L picks stored or Huffman-coded blocks per input it is given: 8 MiB pieces keep
# incompressible data stored, which inflates faster at every later unpack and pull
_CHUNK = 8 << 20
CREATED_BY = "conch import"


def import_image(service: ImageService, stream: BinaryIO, ref: str | None, *,
                 changes: Iterable[str] = (), message: str = "",
                 platform: Platform | str | None = None) -> Image:
    """Import the rootfs tarball ``stream`` as an image named ``ref`` (None: dangling)."""
    named = None
    if ref:
        named = Reference.parse(ref)
        if named.digest is not None:
            raise InvalidArgument("cannot import digest reference")
    if isinstance(platform, str):
        platform = Platform.parse(platform)
    platform = platform or service.platform
    # an imported image always has a config object (moby image_import: BuildFromConfig
    # over an empty container.Config), so inspect shows "Config": {...}, never null
    exec_config = apply_changes(None, changes) or ExecutionConfig()

    layer, diff_id = _write_layer(service, stream)
    created = rfc3339_nano(time.time_ns())
    config = ImageConfig(
        created=created,
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        os_version=platform.os_version,
        config=exec_config,
        rootfs=RootFS(diff_ids=(diff_id,)),
        history=(History(created=created, created_by=CREATED_BY, comment=message),),
        extra={"comment": message} if message else {},
    )
    config_bytes = config.to_bytes()
    service.content.put(config_bytes)
    manifest = ImageManifest(
        media_type=mt.DOCKER_MANIFEST,
        config=Descriptor.of(config_bytes, mt.DOCKER_CONFIG),
        layers=(layer,),
    )
    manifest_bytes = manifest.to_bytes()
    service.content.put(manifest_bytes)
    return service.register(Descriptor.of(manifest_bytes, mt.DOCKER_MANIFEST), named)


def _write_layer(service: ImageService, stream: BinaryIO) -> tuple[Descriptor, Digest]:
    """Compress ``stream`` into a gzip layer blob; (its descriptor, the diff_id)."""
    import tarfile  # here, not at the top: conchd imports this module at start-up

    from conch.archive.compression import decompressed

    reader, _ = decompressed(stream)
    diff = Digester()
    compress = _gzip_level1()
    ref = f"import-{os.urandom(8).hex()}"
    writer = service.content.writer(ref)
    try:
        with writer:
            head = b""
            while chunk := reader.read(_CHUNK):
                if len(head) < tarfile.BLOCKSIZE:
                    head += chunk[: tarfile.BLOCKSIZE - len(head)]
                diff.update(chunk)
                if out := compress.compress(chunk):
                    writer.write(out)
            _check_tar_header(head)
            writer.write(compress.flush())
            info = writer.commit()
    except BaseException:
        with contextlib.suppress(NotFound):
            service.content.abort(ref)  # a one-shot ref: leave no ingest behind
        raise
    return info.descriptor(mt.DOCKER_LAYER_GZIP), diff.digest()


def _gzip_level1():
    """A gzip (wbits 31) compressor; mtime 0 and no name, so output depends on input."""
    try:
        from isal import isal_zlib  # lazy: a pinned dependency, but optional here
    except ImportError:
        return zlib.compressobj(1, zlib.DEFLATED, 31)
    return isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)


def _check_tar_header(head: bytes) -> None:
    """Cheap sanity check, not a full parse: the first block is a valid tar header or
    the end-of-archive zero block (an empty tar). The full parse happens at unpack."""
    import tarfile

    if len(head) < tarfile.BLOCKSIZE:
        raise InvalidArgument("import: the stream is not a tar archive (too short)")
    if head == bytes(tarfile.BLOCKSIZE):
        return
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError as exc:
        raise InvalidArgument(f"import: the stream is not a tar archive: {exc}") from exc


def rfc3339_nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC (trailing zeros of the fraction dropped)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


# --- --change: Dockerfile instructions applied to an execution config ------------------

_VALID = ("CMD", "ENTRYPOINT", "ENV", "LABEL", "WORKDIR", "USER", "EXPOSE", "VOLUME",
          "STOPSIGNAL")  # fmt: skip
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?", re.IGNORECASE)


def apply_changes(config: ExecutionConfig | None, changes: Iterable[str]) -> ExecutionConfig | None:
    """``config`` with each ``--change`` instruction applied in order."""
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        if not keyword:
            continue
        keyword = keyword.upper()
        if keyword not in _VALID:
            raise InvalidArgument(f"{keyword.lower()} is not a valid change command")
        rest = rest.strip()
        config = _APPLY[keyword](config or ExecutionConfig(), rest)
    return config


def _exec_form(rest: str) -> tuple[str, ...]:
    """JSON array form, else shell form (``/bin/sh -c``), as the Dockerfile parser."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return tuple(value)
    if not rest:
        return ()
    return ("/bin/sh", "-c", rest)


def _words(rest: str, keyword: str) -> list[str]:
    try:
        return shlex.split(rest, posix=True)
    except ValueError as exc:
        raise InvalidArgument(f"{keyword}: {exc}") from exc


def _pairs(rest: str, keyword: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` or the legacy one-pair ``k v w`` (Docker's ``parseNameVal``)."""
    if not rest:
        raise InvalidArgument(f"{keyword} requires at least one argument")
    first = rest.split(None, 1)[0]
    if "=" not in first:
        name, _, value = rest.partition(" ")
        words = _words(value, keyword)
        return [(name, " ".join(words))]
    out = []
    for word in _words(rest, keyword):
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise InvalidArgument(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        out.append((name, value))
    return out


def _cmd(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    return replace(c, cmd=_exec_form(rest))


def _entrypoint(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    return replace(c, entrypoint=_exec_form(rest))


def _env(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    env = list(c.env or ())
    for name, value in _pairs(rest, "ENV"):
        env = [e for e in env if e.partition("=")[0] != name] + [f"{name}={value}"]
    return replace(c, env=tuple(env))


def _label(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    return replace(c, labels={**(c.labels or {}), **dict(_pairs(rest, "LABEL"))})


def _workdir(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    if not rest:
        raise InvalidArgument("WORKDIR requires exactly one argument")
    path = rest if rest.startswith("/") else os.path.join("/", c.working_dir, rest)
    return replace(c, working_dir=os.path.normpath(path))


def _user(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    if not rest:
        raise InvalidArgument("USER requires exactly one argument")
    return replace(c, user=rest)


def _expose(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    return replace(c, exposed_ports=exposed_ports(c.exposed_ports, _words(rest, "EXPOSE")))


def exposed_ports(current, words) -> dict:
    """EXPOSE's words (``80``, ``53/udp``, ``8000-8002``) added to ``current``'s ports, in
    the config's ``"80/tcp": {}`` form (``--change EXPOSE`` here, the builder's EXPOSE)."""
    ports = dict(current or {})
    if not words:
        raise InvalidArgument("EXPOSE requires at least one argument")
    for word in words:
        m = _PORT.fullmatch(word)
        if m is None:
            raise InvalidArgument(f"invalid containerPort: {word}")
        start, end = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 < start <= end <= 65535:
            raise InvalidArgument(f"invalid port range: {word}")
        proto = (m.group(3) or "tcp").lower()
        for port in range(start, end + 1):
            ports[f"{port}/{proto}"] = {}
    return ports


def _volume(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    paths = list(_exec_form(rest)) if rest.startswith("[") else _words(rest, "VOLUME")
    if paths[:2] == ["/bin/sh", "-c"]:  # not JSON after all: split as words
        paths = _words(rest, "VOLUME")
    if not paths or any(not p.strip() for p in paths):
        raise InvalidArgument("VOLUME specified can not be an empty string")
    return replace(c, volumes={**(c.volumes or {}), **{p: {} for p in paths}})


def _stopsignal(c: ExecutionConfig, rest: str) -> ExecutionConfig:
    name = rest.upper()
    ok = (name.isdigit() and 0 < int(name) <= 64) or hasattr(
        signal.Signals, name if name.startswith("SIG") else f"SIG{name}"
    ) or re.fullmatch(r"(SIG)?RTM(IN|AX)([+-]\d+)?", name) is not None
    if not rest or not ok:
        raise InvalidArgument(f"Invalid signal: {rest}")
    return replace(c, stop_signal=rest)


_APPLY = {
    "CMD": _cmd, "ENTRYPOINT": _entrypoint, "ENV": _env, "LABEL": _label,
    "WORKDIR": _workdir, "USER": _user, "EXPOSE": _expose, "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
}
