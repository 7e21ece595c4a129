"""Pure OCI data and codecs: no I/O, no state, cheap to import.

Contract: values are frozen, slotted, keyword-only dataclasses; every ``from_dict`` /
``from_bytes`` validates and raises :class:`conch.errors.InvalidArgument` with a clear
message, and keeps keys it does not know in ``extra`` so ``to_dict`` loses nothing.
A blob's digest is over its exact bytes: callers keep the bytes they parsed.

Modules:

* ``digest``     -- :class:`Digest` (sha256/sha512), incremental :class:`Digester`
* ``mediatype``  -- OCI and Docker schema 2 media type constants and predicates
* ``platform``   -- :class:`Platform`, host detection, containerd-style matching
* ``descriptor`` -- :class:`Descriptor`
* ``reference``  -- :class:`Reference`, Docker's reference grammar and normalisation
* ``image``      -- :class:`ImageManifest`, :class:`ImageIndex`, :class:`ImageConfig`,
  :func:`chain_ids`
* ``duration``   -- Go's duration text (``1m30s``) -> nanoseconds
* ``fastjson``   -- JSON through the ``_json`` C accelerator (no ``re``), for the
  runtime's and the CLI's start-up paths

The runtime spec (``config.json``) is not here yet; it belongs in ``oci/runtime.py``.
"""

import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing

# Names are re-exported lazily (PEP 562): the runtime imports conch.oci submodules on
# every container start and must not pay for the image codecs it never uses.
_EXPORTS = {
    "Descriptor": "descriptor",
    "Digest": "digest",
    "Digester": "digest",
    "ExecutionConfig": "image",
    "Healthcheck": "image",
    "History": "image",
    "ImageConfig": "image",
    "ImageIndex": "image",
    "ImageManifest": "image",
    "RootFS": "image",
    "chain_ids": "image",
    "parse_manifest": "image",
    "Platform": "platform",
    "host_platform": "platform",
    "Reference": "reference",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from conch.oci.descriptor import Descriptor
    from conch.oci.digest import Digest, Digester
    from conch.oci.image import (
        ExecutionConfig,
        Healthcheck,
        History,
        ImageConfig,
        ImageIndex,
        ImageManifest,
        RootFS,
        chain_ids,
        parse_manifest,
    )
    from conch.oci.platform import Platform, host_platform
    from conch.oci.reference import Reference


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conch.oci' has no attribute {name!r}")
    # __import__, not importlib.import_module: importlib (and the warnings module it
    # imports) would cost every conch-runtime start ~0.5 ms for this rare path
    __import__(f"conch.oci.{module}")
    value = getattr(sys.modules[f"conch.oci.{module}"], name)
    globals()[name] = value
    return value
