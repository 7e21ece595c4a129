"""conch.archive.gzip_writer: one gzip member any reader decodes; chunks that do not
compress are stored (not run through the compressor), chunks that do are compressed,
and the same input gives the same bytes."""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import zlib

import pytest

from conch.archive.gzip_writer import CHUNK, GzipWriter, stored_blocks

RANDOM = random.Random(14).randbytes(3 * CHUNK + 12345)
TEXT = b"".join(b"line %d of a text file in a layer\n" % i for i in range(120_000))


def gz(data: bytes, piece: int = 10_000) -> bytes:
    out = io.BytesIO()
    w = GzipWriter(out)
    for i in range(0, len(data), piece):
        w.write(data[i:i + piece])
    w.finish()
    return out.getvalue()


CASES = {
    "empty": b"",
    "small": b"abc",
    "text": TEXT,
    "random": RANDOM,
    "mixed": TEXT[:300_000] + RANDOM + b"\0" * (2 * CHUNK) + TEXT + RANDOM[:CHUNK // 3],
    "exact-chunk": RANDOM[:CHUNK],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_any_reader_decodes_it(name):
    data = CASES[name]
    blob = gz(data)
    assert gzip.decompress(blob) == data
    assert zlib.decompress(blob, 31) == data
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # mtime 0: reproducible
    if shutil.which("gzip"):  # an independent decoder (GNU gzip checks CRC and size too)
        assert subprocess.run(["gzip", "-dc"], input=blob, capture_output=True, check=True).stdout == data


def test_incompressible_chunks_are_stored_compressible_ones_compressed():
    blob = gz(RANDOM)
    # stored: the bytes plus 5 per 64 KiB block and the gzip frame, nothing compressed
    assert len(RANDOM) < len(blob) <= len(RANDOM) + 5 * (len(RANDOM) // 0xFFFF + 2) + 40
    assert RANDOM[CHUNK:CHUNK + 4096] in blob  # the bytes as they are
    assert len(gz(TEXT)) < len(TEXT) // 5
    mixed = CASES["mixed"]
    assert len(gz(mixed)) < len(RANDOM) + len(RANDOM) // 3 + 400_000


def test_same_input_same_bytes_whatever_the_write_sizes():
    data = CASES["mixed"]
    assert gz(data, 10_000) == gz(data, CHUNK + 1) == gz(data, 333_333)


def test_stored_blocks_frame():
    data = bytes(range(256)) * 300  # 76800 bytes: two blocks
    framed = stored_blocks(data)
    assert framed[:5] == b"\x00" + (0xFFFF).to_bytes(2, "little") + (0).to_bytes(2, "little")
    d = zlib.decompressobj(-15)
    assert d.decompress(framed + b"\x01\x00\x00\xff\xff") == data and d.eof
