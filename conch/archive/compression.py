"""Layer stream compression: detect by magic bytes, decompress and compress as streams.

Contract:

- :func:`detect` names the compression of a stream from its first bytes: gzip
  (``1f 8b``), zstd (``28 b5 2f fd``) or none. OCI media types say the same thing, but
  Docker (and ``docker import``) trust the bytes, not the label, so we do too.
- :func:`decompressed` wraps a readable binary stream and returns a readable binary
  stream of the uncompressed bytes, reading the input once, in order (it never seeks, so
  an HTTP body or a pipe works). Errors of the decoder surface as
  :class:`~conch.errors.InvalidArgument` (``layer is not a valid gzip stream: …``).
- :func:`compressor` wraps a writable stream; closing the wrapper flushes the trailer
  but leaves the underlying stream open. Gzip output has mtime 0 and no file name, so
  the same tar always compresses to the same bytes (and digest) on one machine.

Backends (the seam is :func:`_gzip_reader` / :func:`compressor`): gzip decompression uses
``isal`` (Intel ISA-L, ~3x faster) when it is importable and the stdlib otherwise; both
produce identical bytes. Gzip *compression* uses the stdlib's zlib, because ISA-L's
levels (0-3) are not zlib's (1-9) and a caller's level must mean what it says. zstd
needs ``zstandard``. Both optional libraries are imported lazily, on first use, so
importing this module costs nothing.
"""

from __future__ import annotations

import enum
import io
import zlib
from typing import BinaryIO

from conch.errors import FailedPrecondition, InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PEEK = 4


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


def detect(prefix: bytes) -> Compression:
    """The compression whose magic ``prefix`` starts with (at least 4 bytes to be sure)."""
    if prefix.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if prefix.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


class _Prefixed(io.RawIOBase):
    """``prefix`` then the rest of ``stream``: un-reads the bytes we peeked at."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._prefix:
            n = min(len(buf), len(self._prefix))
            buf[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class _Checked(io.RawIOBase):
    """Translates a decoder's errors into InvalidArgument, once, at this boundary."""

    def __init__(self, reader: BinaryIO, kind: Compression, errors: tuple[type[BaseException], ...]):
        self._reader = reader
        self._kind = kind
        self._errors = errors

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        try:
            data = self._reader.read(len(buf))
        except InvalidArgument:
            raise
        except self._errors as exc:
            raise InvalidArgument(f"layer is not a valid {self._kind.value} stream: {exc}") from exc
        buf[: len(data)] = data
        return len(data)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        data = stream.read(n - len(chunks))
        if not data:
            break
        chunks += data
    return chunks


def decompressed(stream: BinaryIO) -> tuple[BinaryIO, Compression]:
    """A reader of ``stream``'s uncompressed bytes, and the compression it found."""
    prefix = _read_exactly(stream, _PEEK)
    kind = detect(prefix)
    raw = _Prefixed(prefix, stream)
    if kind is Compression.NONE:
        return io.BufferedReader(raw, 1 << 16), kind
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, ValueError)
    if kind is Compression.GZIP:
        reader = _gzip_reader(io.BufferedReader(raw, 1 << 16))
    else:
        reader = _zstd_reader(io.BufferedReader(raw, 1 << 16))
        errors += (_import_zstandard().ZstdError,)
    return io.BufferedReader(_Checked(reader, kind, errors), 1 << 16), kind


def _gzip_reader(raw: BinaryIO) -> BinaryIO:
    try:
        from isal import igzip  # lazy: optional accelerator
    except ImportError:
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    return igzip.IGzipFile(fileobj=raw, mode="rb")


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    zstandard = _import_zstandard()
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)


def _import_zstandard():
    try:
        import zstandard  # lazy: only zstd layers need it
    except ImportError as exc:
        raise FailedPrecondition("zstd layers need the 'zstandard' package") from exc
    return zstandard


class _NoClose(io.RawIOBase):
    """Forwards writes; close() leaves the wrapped stream open for the caller."""

    def __init__(self, out: BinaryIO):
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._out.write(data)
        return len(data)


def compressor(out: BinaryIO, kind: Compression, *, level: int | None = None) -> BinaryIO:
    """A writer that compresses into ``out``; close it to flush the trailer.

    ``level``: gzip 0-9 (default 6, as Docker), zstd 1-22 (default 3).
    """
    if kind is Compression.NONE:
        return _NoClose(out)
    if kind is Compression.GZIP:
        import gzip

        lvl = 6 if level is None else level
        if not 0 <= lvl <= 9:
            raise InvalidArgument(f"gzip level must be 0-9, not {lvl}")
        # mtime=0 and no file name: the output depends on the input alone.
        return gzip.GzipFile(filename="", fileobj=_NoClose(out), mode="wb", compresslevel=lvl, mtime=0)
    zstandard = _import_zstandard()
    lvl = 3 if level is None else level
    if not 1 <= lvl <= 22:
        raise InvalidArgument(f"zstd level must be 1-22, not {lvl}")
    return zstandard.ZstdCompressor(level=lvl).stream_writer(out, closefd=False)
