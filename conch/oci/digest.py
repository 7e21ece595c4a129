"""Content digests: ``algorithm ":" encoded``, as in the OCI image-spec descriptor.

Grammar (image-spec descriptor.md, "Digests")::

    digest              ::= algorithm ":" encoded
    algorithm           ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component ::= [a-z0-9]+
    algorithm-separator ::= [+._-]
    encoded             ::= [a-zA-Z0-9=_-]+

Only the registered algorithms are accepted: ``sha256`` (encoded ``[a-f0-9]{64}``) and
``sha512`` (``[a-f0-9]{128}``). A digest that fits the grammar but names another
algorithm is ``unsupported``. The error texts are go-digest's, because docker shows them
to users verbatim ("invalid checksum digest format", "invalid checksum digest length",
"unsupported digest algorithm").

Pure data: hashing bytes in memory is the only work done here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from conch.errors import InvalidArgument

SHA256 = "sha256"
SHA512 = "sha512"

# algorithm -> length of its lowercase hex encoding
_ALGORITHMS: dict[str, int] = {SHA256: 64, SHA512: 128}

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[a-f0-9]+")

ERR_FORMAT = "invalid checksum digest format"
ERR_LENGTH = "invalid checksum digest length"
ERR_UNSUPPORTED = "unsupported digest algorithm"


def supported_algorithms() -> tuple[str, ...]:
    return tuple(_ALGORITHMS)


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Digest:
    """A validated digest; construct with :meth:`parse`, :meth:`from_bytes` or keywords."""

    algorithm: str
    encoded: str

    def __post_init__(self) -> None:
        _validate(self.algorithm, self.encoded, f"{self.algorithm}:{self.encoded}")

    @classmethod
    def parse(cls, s: str) -> Digest:
        if not isinstance(s, str):
            raise InvalidArgument(f"{ERR_FORMAT}: expected a string, got {type(s).__name__}")
        algorithm, sep, encoded = s.partition(":")
        if not sep or not algorithm or not encoded:
            raise InvalidArgument(f"{ERR_FORMAT}: {s!r}")
        return cls(algorithm=algorithm, encoded=encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = SHA256) -> Digest:
        d = Digester(algorithm)
        d.update(data)
        return d.digest()

    @property
    def hex(self) -> str:
        """The encoded part (always lowercase hex for the supported algorithms)."""
        return self.encoded

    def short(self, n: int = 12) -> str:
        """The first ``n`` hex characters, as docker prints image IDs."""
        return self.encoded[:n]

    def digester(self) -> Digester:
        """A fresh digester for this digest's algorithm, to verify content against it."""
        return Digester(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def _validate(algorithm: str, encoded: str, whole: str) -> None:
    if not isinstance(algorithm, str) or not isinstance(encoded, str):
        raise InvalidArgument(f"{ERR_FORMAT}: {whole!r}")
    length = _ALGORITHMS.get(algorithm)
    if length is None:
        # go-digest: a string that fits the grammar is "unsupported"; anything else
        # is a format error.
        if _GRAMMAR.fullmatch(whole) is None:
            raise InvalidArgument(f"{ERR_FORMAT}: {whole!r}")
        raise InvalidArgument(f"{ERR_UNSUPPORTED}: {algorithm!r}")
    if len(encoded) != length:
        raise InvalidArgument(f"{ERR_LENGTH}: {whole!r}")
    if _HEX.fullmatch(encoded) is None:
        raise InvalidArgument(f"{ERR_FORMAT}: {whole!r}")


class Digester:
    """Incremental hashing: ``update()`` chunks, then ``digest()``.

    ``digest()`` does not finalise the state, so a writer can ask for the digest of what
    it has so far and keep writing (the content store's resumable ingest relies on it).
    """

    __slots__ = ("_algorithm", "_hash", "_size")

    def __init__(self, algorithm: str = SHA256) -> None:
        if algorithm not in _ALGORITHMS:
            raise InvalidArgument(f"{ERR_UNSUPPORTED}: {algorithm!r}")
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._size = 0

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def size(self) -> int:
        """Bytes hashed so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self._size += len(data)

    def digest(self) -> Digest:
        return Digest(algorithm=self._algorithm, encoded=self._hash.hexdigest())
