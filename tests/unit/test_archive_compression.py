import gzip
import io

import pytest
import zstandard

from conch.archive.compression import Compression, compressor, decompressed, detect
from conch.errors import InvalidArgument

PAYLOAD = b"layer bytes " * 50_000


@pytest.mark.parametrize("prefix, kind", [
    (b"\x1f\x8b\x08\x00", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"etc/", Compression.NONE),
    (b"", Compression.NONE),
    (b"\x1f", Compression.NONE),
])
def test_detect_by_magic(prefix, kind):
    assert detect(prefix) is kind


@pytest.mark.parametrize("kind", list(Compression))
def test_compress_then_decompress_round_trips(kind):
    out = io.BytesIO()
    with compressor(out, kind) as w:
        w.write(PAYLOAD)
    assert not out.closed
    reader, found = decompressed(io.BytesIO(out.getvalue()))
    assert found is kind
    assert reader.read() == PAYLOAD


def test_gzip_output_is_deterministic_and_honours_level():
    def pack(level):
        out = io.BytesIO()
        with compressor(out, Compression.GZIP, level=level) as w:
            w.write(PAYLOAD)
        return out.getvalue()

    assert pack(6) == pack(6)
    assert len(pack(1)) != len(pack(9))
    with pytest.raises(InvalidArgument):
        pack(11)


def test_multi_member_gzip_and_multi_frame_zstd():
    gz = gzip.compress(b"one") + gzip.compress(b"two")
    assert decompressed(io.BytesIO(gz))[0].read() == b"onetwo"
    c = zstandard.ZstdCompressor()
    zs = c.compress(b"one") + c.compress(b"two")
    assert decompressed(io.BytesIO(zs))[0].read() == b"onetwo"


@pytest.mark.parametrize("data", [
    gzip.compress(PAYLOAD)[:-100],  # truncated
    b"\x1f\x8b" + b"\xff" * 100,  # bad header
    zstandard.ZstdCompressor().compress(PAYLOAD)[:50] + b"\x00" * 50,
])
def test_corrupt_streams_raise_invalid_argument(data):
    reader, _ = decompressed(io.BytesIO(data))
    with pytest.raises(InvalidArgument, match="not a valid"):
        reader.read()


class _Trickle(io.RawIOBase):
    """A pipe-like stream that returns one byte per read and cannot seek."""

    def __init__(self, data):
        self._data = data

    def readable(self):
        return True

    def readinto(self, buf):
        if not self._data:
            return 0
        buf[0] = self._data[0]
        self._data = self._data[1:]
        return 1


def test_short_reads_and_unseekable_input():
    reader, kind = decompressed(_Trickle(gzip.compress(b"hello world")))
    assert kind is Compression.GZIP
    assert reader.read() == b"hello world"
