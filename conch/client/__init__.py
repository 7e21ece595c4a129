"""A lean synchronous Docker Engine API client over a unix socket (for the conch CLI and
tests; also talks to dockerd).

Contract: ``Client(host)`` (default ``$CONCH_HOST``, else ``unix:///run/conch/conch.sock``)
sends API 1.50 requests (``/v1.50`` prefix) and returns parsed JSON; an error response
raises the ``conch.errors`` kind of its HTTP status with the daemon's message, and a
missing or refusing socket raises ``Unavailable("Cannot connect to the conch daemon at
unix:///…. Is conchd running?")``. Streams come back as iterators (JSON lines, raw
chunks); attach/exec use :meth:`Client.hijack`, which returns a :class:`HijackedSocket`
(raw socket plus bytes already read) and ``demux`` for stdcopy frames.

Start-up cost matters (every CLI command imports this), so this is plain sockets with a
small HTTP/1.1 reader instead of ``http.client`` (whose ``email`` imports alone cost
~20 ms); ``import conch.client`` stays under ~15 ms (tests/unit/test_client_import_cost.py).
"""

from conch.client.http import DEFAULT_HOST, Client  # noqa: F401
from conch.client.wire import Response  # noqa: F401
from conch.client.hijack import HijackedSocket, demux  # noqa: F401
