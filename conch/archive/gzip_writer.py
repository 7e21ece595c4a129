"""A gzip stream writer for layer blobs that does not spend time compressing what does
not compress.

Contract: :class:`GzipWriter` takes bytes (any size of write) and writes one gzip member
(RFC 1952: header with mtime 0 and no name, so the same bytes give the same blob; CRC-32
and size trailer) to ``out`` (anything with ``write``). The stream is cut into 1 MiB
chunks. A chunk whose samples compress goes through ISA-L (``level``, raw deflate); one
whose samples do not (random data, an already-compressed archive, media: a build's big
layers often are) is written as *stored* deflate blocks (RFC 1951 3.2.4: the bytes as
they are, 5 bytes of framing per 64 KiB). ISA-L's level 1 takes ~2.5 ms per MiB to learn
that random data does not compress; storing it costs a CRC and a copy. Any gzip reader
(Go's compress/gzip, zlib, GNU gzip) reads the result.

Back-references never cross a stored run: each compressed run has its own compressor,
ended by a sync flush (an empty stored block, byte-aligned), so a run's distances
only reach bytes of that run.

Deterministic: the same input gives the same output (sampling is by position).
"""

from __future__ import annotations

import struct

CHUNK = 1 << 20
_SAMPLE = 16 << 10   # bytes per sample; four samples per chunk
_STORE_RATIO = 0.95  # samples that shrink by less than 5%: the chunk is stored
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, OS unknown
_LAST = b"\x01\x00\x00\xff\xff"  # an empty stored block with BFINAL set
_MAX_STORED = 0xFFFF


class GzipWriter:
    def __init__(self, out, level: int = 1):
        from isal import isal_zlib

        self._z = isal_zlib
        self.out, self.level = out, level
        # one chunk buffer, reused: a fresh 1 MiB per chunk is a fresh mmap and 256 page
        # faults each time (~1 ms per MiB here), more than storing the chunk costs
        self.buf = bytearray(CHUNK)
        self.fill = 0
        self.crc = 0
        self.size = 0
        self._comp = None  # the compressor of the current compressed run
        out.write(_HEADER)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n, pos = len(view), 0
        while pos < n:
            take = min(CHUNK - self.fill, n - pos)
            self.buf[self.fill:self.fill + take] = view[pos:pos + take]
            self.fill += take
            pos += take
            if self.fill == CHUNK:
                self._flush_buf()
        return n

    def finish(self) -> None:
        self._flush_buf()
        self._end_run()
        self.out.write(_LAST + struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))

    # -- internals ----------------------------------------------------------------------
    def _flush_buf(self) -> None:
        if self.fill:
            with memoryview(self.buf)[:self.fill] as chunk:
                self._chunk(chunk)
            self.fill = 0

    def _chunk(self, chunk: memoryview) -> None:
        """One chunk out; nothing keeps ``chunk`` (the buffer is reused)."""
        self.crc = self._z.crc32(chunk, self.crc)
        self.size += len(chunk)
        if self._compressible(chunk):
            if self._comp is None:
                self._comp = self._z.compressobj(self.level, self._z.DEFLATED, -15)
            if out := self._comp.compress(chunk):
                self.out.write(out)
        else:
            self._end_run()
            for i in range(0, len(chunk), _MAX_STORED):
                piece = chunk[i:i + _MAX_STORED]
                self.out.write(_stored_header(len(piece)))
                self.out.write(piece)

    def _end_run(self) -> None:
        if self._comp is not None:
            self.out.write(self._comp.flush(self._z.Z_SYNC_FLUSH))
            self._comp = None

    def _compressible(self, chunk: memoryview) -> bool:
        n = len(chunk)
        if n < 4 * _SAMPLE:
            return True  # small: compressing it costs little
        step = n // 4
        sample = b"".join(chunk[i * step:i * step + _SAMPLE] for i in range(4))
        packed = len(self._z.compress(sample, self.level, -15))
        return packed < _STORE_RATIO * len(sample)


def _stored_header(n: int) -> bytes:
    """A non-final stored block's header (BFINAL 0, BTYPE 00, byte-aligned), LEN, NLEN."""
    return b"\x00" + struct.pack("<HH", n, n ^ 0xFFFF)


def stored_blocks(data: bytes) -> bytes:
    """``data`` as non-final stored deflate blocks (the stream is byte-aligned here)."""
    parts = []
    for i in range(0, len(data), _MAX_STORED):
        piece = data[i:i + _MAX_STORED]
        parts += [_stored_header(len(piece)), piece]
    return b"".join(parts)
