"""HTTP/1.1 over a unix socket: requests, JSON and streams.

One connection per request (connecting to a unix socket costs microseconds, and a
streaming response owns its connection anyway). Responses are read by
:mod:`conch.client.wire` (the parser and the error kind of each status).
"""

from __future__ import annotations

import os

# `_socket`, not `socket`: the socket module's enums (and `enum` itself) cost ~4 ms of
# every CLI call; the C socket type has every method used here. JSON and URL quoting
# come from conch.client.lean for the same reason (no `json`, `re`, `urllib.parse`).
from _socket import AF_UNIX, SOCK_STREAM, socket

from conch import errors
from conch.client import lean as json
from conch.client.lean import quote, urlencode
from conch.client.wire import CHUNK, Reader, Response, error_for, error_message, read_head

TYPE_CHECKING = False  # not `from typing import`: typing costs ~2 ms of CLI start-up
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

DEFAULT_HOST = "unix:///run/conch/conch.sock"
API_VERSION = "1.50"


class Pending:
    """A request that was sent and whose answer has not been read yet."""

    def __init__(self, client: Client, sock: socket, method: str) -> None:
        self.client = client
        self.sock = sock
        self._reader = Reader(sock)
        self._method = method

    def wait(self, timeout: float) -> bool:
        """Block until the answer starts to arrive (True) or ``timeout`` seconds pass
        (False). Nothing is parsed: :meth:`response` reads the head afterwards."""
        if self._reader.buf or self._reader.eof:
            return True
        self.sock.settimeout(timeout)
        try:
            self._reader._fill()
        except TimeoutError:
            return False
        except OSError:
            return True  # response() reports it
        finally:
            self.sock.settimeout(self.client.timeout)
        return True

    def response(self, check: bool = True) -> Response:
        """The response with its head read; with ``check`` an error status raises."""
        try:
            status, reason, resp_headers = read_head(self._reader)
        except BaseException:
            self.sock.close()
            raise
        resp = Response(self.sock, self._reader, status, reason, resp_headers, self._method)
        if check and status >= 400:
            raise error_for(status, error_message(resp.read(), status))
        return resp

    def close(self) -> None:
        self.sock.close()


class Client:
    """Docker Engine API over ``unix://`` (see the package docstring)."""

    def __init__(self, host: str | None = None, *, version: str | None = API_VERSION,
                 timeout: float | None = None) -> None:
        self.host = host or os.environ.get("CONCH_HOST") or DEFAULT_HOST
        if not self.host.startswith("unix://"):
            raise errors.InvalidArgument(f"unsupported host {self.host!r}: use unix:///path")
        self.path = self.host[len("unix://"):]
        self.version = version
        self.timeout = timeout

    # --- plumbing ---

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """``/v1.50`` + path (already quoted by the caller where needed) + query. Lists
        become repeated keys, bools ``1``/``0``, dicts JSON (docker's filters)."""
        prefix = f"/v{self.version}" if self.version else ""
        query = []
        for key, value in (params or {}).items():
            if value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, bool):
                    v = "1" if v else "0"
                elif isinstance(v, dict):
                    v = json.dumps(v, compact=True)
                query.append((key, str(v)))
        return prefix + path + ("?" + urlencode(query) if query else "")

    def connect(self) -> socket:
        sock = socket(AF_UNIX, SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise errors.Unavailable(f"Cannot connect to the conch daemon at {self.host}. "
                                     "Is conchd running?") from exc
        except PermissionError as exc:
            sock.close()
            raise errors.PermissionDenied(f"permission denied while trying to connect to the "
                                          f"conch daemon socket at {self.host}") from exc
        return sock

    def _send(self, sock: socket, method: str, url: str, body: bytes | None,
              headers: Mapping[str, str] | None) -> None:
        lines = [f"{method} {url} HTTP/1.1", "Host: conch", "User-Agent: conch-client/0.1"]
        hdrs = dict(headers or {})
        if (body is not None or method in ("POST", "PUT")) and "Transfer-Encoding" not in hdrs:
            hdrs.setdefault("Content-Length", str(len(body or b"")))
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def send_request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                     json_body: Any = None, body: bytes | None = None,
                     headers: Mapping[str, str] | None = None) -> Pending:
        """Send a request on a new connection and return at once; the answer is read
        with :meth:`Pending.response` (``run`` registers its wait this way, no thread)."""
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        sock = self.connect()
        try:
            self._send(sock, method, self.url(path, params), body, hdrs)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # conchd died after the kernel queued our connection (kill -9 mid-accept):
            # the daemon's failure, not a closed stdout, which main() exits 0 for (a
            # `conch wait` then exited 0 with no status: a lost wait read as success)
            sock.close()
            raise errors.Unavailable(f"the conch daemon at {self.host} closed the connection "
                                     "before taking the request") from exc
        except BaseException:
            sock.close()
            raise
        return Pending(self, sock, method)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, check: bool = True) -> Response:
        """Send a request; return the response with its head read. With ``check`` an
        error status raises its kind (the body is consumed for the message)."""
        return self.send_request(method, path, params=params, json_body=json_body, body=body,
                                 headers=headers).response(check)

    def send_file(self, method: str, path: str, fileobj, *, params=None,
                  headers: Mapping[str, str] | None = None) -> Response:
        """Send a (large) body from a file, chunked; returns the checked response."""
        sock = self.connect()
        try:
            hdrs = {"Transfer-Encoding": "chunked", **(headers or {})}
            self._send(sock, method, self.url(path, params), None, hdrs)
            try:
                while chunk := fileobj.read(CHUNK):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                # the daemon answered (an error) or went away before taking the whole
                # body: its answer, or the lack of one, is what the caller must hear (a
                # BrokenPipeError here read as a closed stdout: exit 0, no message)
                pass
            reader = Reader(sock)
            status, reason, resp_headers = read_head(reader)
        except BaseException:
            sock.close()
            raise
        resp = Response(sock, reader, status, reason, resp_headers, method)
        if status >= 400:
            raise error_for(status, error_message(resp.read(), status))
        return resp

    # --- JSON verbs ---

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, json_body=body).json()

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params).json()

    def head(self, path: str, **params: Any) -> dict[str, str]:
        resp = self.request("HEAD", path, params=params)
        resp.close()
        return resp.headers

    def ping(self) -> str:
        return self.request("GET", "/_ping").read().decode()

    # --- streams ---

    def stream_json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    json_body: Any = None, response: Response | None = None) -> Iterator[Any]:
        """JSON lines (events, progress). A progress error line (``{"error": …}``) raises
        ``ConchError`` with its message, as the docker CLI fails on it."""
        resp = response or self.request(method, path, params=params, json_body=json_body)
        for line in resp.iter_lines():
            item = json.loads(line)
            if isinstance(item, dict) and item.get("error"):
                resp.close()
                raise errors.ConchError(str(item["error"]))
            yield item

    def stream_raw(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                   json_body: Any = None) -> Iterator[bytes]:
        return self.request(method, path, params=params, json_body=json_body).iter_chunks()

    def hijack(self, method: str, path: str, body: Any = None, *,
               params: Mapping[str, Any] | None = None):
        """Upgrade the connection for attach/exec start; see ``conch.client.hijack``."""
        from conch.client.hijack import open_hijacked

        return open_hijacked(self, method, path, body, params=params)


def quote_name(name: str) -> str:
    """A path segment for an image/container name (``/`` and ``:`` stay as the CLI
    sends them; only bytes unsafe in a URL path are escaped)."""
    return quote(name, safe="/:@")
