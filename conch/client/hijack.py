"""The client side of attach/exec hijacking, and stdcopy demultiplexing.

``Client.hijack("POST", "/containers/<id>/attach", params={...})`` sends the request with
``Connection: Upgrade`` / ``Upgrade: tcp``, reads the ``101 UPGRADED`` (or ``200 OK``)
head and returns a :class:`HijackedSocket`: the raw socket plus any output bytes that
arrived with the head. Write stdin with ``send``, end it with ``close_write`` (a
half-close: the output keeps coming), read output with ``recv`` until ``b""``.

stdcopy (moby ``pkg/stdcopy``): frames of ``[stream, 0, 0, 0, size uint32 BE]`` + payload;
:func:`demux` turns a byte source into ``(stream, bytes)`` pairs (1 stdout, 2 stderr).
"""

from __future__ import annotations

from _socket import SHUT_WR  # not `socket` (see conch.client.http)
from _struct import Struct

from conch import errors
from conch.client import lean as json
from conch.client.wire import Reader, Response, error_for, error_message, read_head

TYPE_CHECKING = False  # not `from typing import`: typing costs ~2 ms of CLI start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from socket import socket
    from typing import Any

_HEADER = Struct(">BxxxL")


class HijackedSocket:
    """A hijacked connection: ``recv`` first returns the bytes read with the head."""

    def __init__(self, sock: socket, buffered: bytes, content_type: str,
                 status: int) -> None:
        self.sock = sock
        self._buffered = buffered
        self.content_type = content_type
        self.status = status

    @property
    def multiplexed(self) -> bool:
        return self.content_type == "application/vnd.docker.multiplexed-stream"

    def recv(self, n: int = 65536) -> bytes:
        if self._buffered:
            data, self._buffered = self._buffered[:n], self._buffered[n:]
            return data
        return self.sock.recv(n)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(SHUT_WR)
        except OSError:
            pass  # already gone: the output side will tell

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def __enter__(self) -> "HijackedSocket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_raw(self) -> Iterator[bytes]:
        while data := self.recv():
            yield data

    def iter_frames(self) -> Iterator[tuple[int, bytes]]:
        """``(stream, data)``: demultiplexed when the stream is framed, else all stdout."""
        return demux(self.recv)


def demux(recv: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """stdcopy frames from ``recv(n)`` (returns b"" at EOF) -> ``(stream, payload)``."""
    buf = bytearray()
    while True:
        while len(buf) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(buf)
            if len(buf) < _HEADER.size + size:
                break
            payload = bytes(buf[_HEADER.size:_HEADER.size + size])
            del buf[:_HEADER.size + size]
            yield stream, payload
        data = recv(65536)
        if not data:
            if buf:
                raise errors.ConchError(f"truncated stdcopy frame ({len(buf)} bytes left)")
            return
        buf += data


def open_hijacked(client: Any, method: str, path: str, body: Any = None, *,
                  params: Mapping[str, Any] | None = None) -> HijackedSocket:
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Connection": "Upgrade", "Upgrade": "tcp"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    sock = client.connect()
    try:
        client._send(sock, method, client.url(path, params), payload, headers)
        reader = Reader(sock)
        status, _reason, resp_headers = read_head(reader)
        if status >= 400:
            resp = Response(sock, reader, status, _reason, resp_headers, method)
            raise error_for(status, error_message(resp.read(), status))
        if status not in (101, 200):
            raise errors.ConchError(f"unexpected status {status} to a hijack request")
    except BaseException:
        sock.close()
        raise
    return HijackedSocket(sock, reader.take_buffer(), resp_headers.get("content-type", ""), status)
