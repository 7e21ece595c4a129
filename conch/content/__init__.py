"""Content-addressed blob storage: the seam and the local implementation.

Contract: a blob is readable under its digest only once its size and digest were
verified; writes go through a resumable, ref-keyed ingest and are renamed into place
atomically. Layout on disk and the write protocol are in :mod:`conch.content.store`.

The Protocols below are what higher layers (images/, registry/, engine/) depend on, so
a fake or a remote store can stand in for :class:`ContentStore`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import BinaryIO, Iterator, Protocol

from conch.content.store import ContentStore, IngestStatus, Info, Writer
from conch.oci.digest import Digest

__all__ = [
    "BlobWriter",
    "ContentStore",
    "Ingester",
    "IngestStatus",
    "Info",
    "Provider",
    "Store",
    "Writer",
]


class Provider(Protocol):
    """Read side."""

    def exists(self, digest: Digest) -> bool: ...

    def info(self, digest: Digest) -> Info: ...

    def open(self, digest: Digest) -> BinaryIO: ...

    def read(self, digest: Digest, *, verify: bool = False) -> bytes: ...


class BlobWriter(Protocol):
    ref: str

    @property
    def offset(self) -> int: ...

    def write(self, data: bytes) -> int: ...

    def truncate(self, size: int = 0) -> None: ...

    def commit(self, size: int | None = None, expected: Digest | None = None) -> Info: ...

    def close(self) -> None: ...

    def __enter__(self) -> BlobWriter: ...

    def __exit__(self, *exc: object) -> None: ...


class Ingester(Protocol):
    """Write side."""

    def writer(
        self, ref: str, *, expected: Digest | None = None, total: int | None = None
    ) -> BlobWriter: ...

    def put(self, data: bytes, *, expected: Digest | None = None) -> Info: ...


class Store(Provider, Ingester, Protocol):
    """Everything the local store offers, for the engine and garbage collection."""

    def delete(self, digest: Digest) -> None: ...

    def walk(self) -> Iterator[Info]: ...

    def status(self, ref: str) -> IngestStatus: ...

    def list_ingests(self) -> list[IngestStatus]: ...

    def abort(self, ref: str) -> None: ...

    def prune_ingests(self, older_than: float | timedelta) -> list[str]: ...
