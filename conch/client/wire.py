"""HTTP/1.1 responses read off a socket: a small parser (status line, headers, then a
body delimited by Content-Length, chunked encoding or the connection closing, RFC 9112
section 6.3, in that order) and the error kind for each status. Shared by the request
client (:mod:`conch.client.http`) and the upgraded connections of attach and exec
(:mod:`conch.client.hijack`).
"""

from __future__ import annotations

from _socket import socket  # not `socket`: see conch.client.http

from conch import errors
from conch.client import lean as json

TYPE_CHECKING = False  # not `from typing import`: typing costs ~2 ms of CLI start-up
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_KINDS = {400: errors.InvalidArgument, 403: errors.PermissionDenied, 404: errors.NotFound,
          409: errors.Conflict, 412: errors.FailedPrecondition, 503: errors.Unavailable}
CHUNK = 65536


def error_for(status: int, message: str) -> errors.ConchError:
    """The ``conch.errors`` kind for an HTTP error status (the reverse of api/errors)."""
    exc = _KINDS.get(status, errors.ConchError)(message)
    exc.status = status  # type: ignore[attr-defined]
    return exc


def error_message(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace").strip()
        return text or f"HTTP {status}"


class Reader:
    """Buffered reads from a socket (lines, exact sizes, up to EOF)."""

    def __init__(self, sock: socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(buffered)
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        while (i := self.buf.find(b"\n")) < 0:
            if not self._fill():
                line, self.buf = bytes(self.buf), bytearray()
                return line
        line = bytes(self.buf[: i + 1])
        del self.buf[: i + 1]
        return line

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise errors.Unavailable("connection closed by the daemon mid-response")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_some(self) -> bytes:
        if not self.buf:
            self._fill()
        data, self.buf = bytes(self.buf), bytearray()
        return data

    def take_buffer(self) -> bytes:
        data, self.buf = bytes(self.buf), bytearray()
        return data


class Response:
    """A response whose head has been read; the body is read on demand."""

    def __init__(self, sock: socket, reader: Reader, status: int, reason: str,
                 headers: dict[str, str], method: str) -> None:
        self.sock = sock
        self._reader = reader
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names
        self._method = method

    def iter_chunks(self) -> Iterator[bytes]:
        """The body as it arrives; the connection is closed at its end."""
        try:
            if self._method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
                return
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    line = self._reader.readline()
                    if not line.endswith(b"\n"):
                        # EOF before the last chunk: the daemon died mid-body (Go's
                        # "unexpected EOF"); an empty body here read as "{}" once made a
                        # lost wait look like exit 0
                        raise errors.Unavailable("connection closed by the daemon mid-response")
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self._reader.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return
                    yield self._reader.read_exact(size)
                    self._reader.read_exact(2)
            elif "content-length" in self.headers:
                left = int(self.headers["content-length"])
                while left > 0:
                    data = self._reader.read_some()
                    if not data:
                        raise errors.Unavailable("connection closed by the daemon mid-response")
                    data, extra = data[:left], data[left:]
                    self._reader.buf[:0] = extra
                    left -= len(data)
                    yield data
            else:
                while data := self._reader.read_some():
                    yield data
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())

    def iter_lines(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self.iter_chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line for line in lines if line.strip())
        if pending.strip():
            yield pending

    def json(self) -> Any:
        body = self.read()
        return json.loads(body) if body.strip() else None

    def close(self) -> None:
        self.sock.close()


def read_head(reader: Reader) -> tuple[int, str, dict[str, str]]:
    line = reader.readline()
    if not line:
        raise errors.Unavailable("the daemon closed the connection without answering")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise errors.Unavailable(f"malformed response from the daemon: {line[:80]!r}")
    headers: dict[str, str] = {}
    while (h := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers
