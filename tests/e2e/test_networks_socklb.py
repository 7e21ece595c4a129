"""Published ports served at connect() time for host processes (conch.network.socklb)
through conchd: the host's socket goes straight to the container (its own address is the
bridge's, getpeername() still says 127.0.0.1:P); with conchd killed the nft DNAT serves
(the socket stays on 127.0.0.1); after the restart the reconcile puts the port back in
the map; containers, including the publisher itself, still reach the port through the
host address.

Safety: traffic only to 127.0.0.1 and to the containers these tests create.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

import pytest

from conch.testing.daemon import clean_after, daemon_fixture, free_port, ok

pytestmark = pytest.mark.root


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    from conch.network.socklb import SocketLB

    lb = SocketLB()
    try:
        return None if lb.start() else "cgroup sock_addr eBPF unavailable here (nft only)"
    finally:
        lb.close()


_SKIP = _probe()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)

daemon = daemon_fixture()


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _get(port: int) -> tuple[str, str, tuple]:
    """(body, the socket's own address, getpeername) of GET / on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        local, peer = s.getsockname()[0], s.getpeername()
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode(errors="replace").partition("\r\n\r\n")[2], local, peer


def test_host_connects_straight_to_the_container_and_survive_kill9(d):
    port = free_port()
    site = tempfile.mkdtemp(prefix="socklb-")
    try:
        with open(f"{site}/index.html", "w") as f:
            f.write("direct\n")
        ok(d.conch("run", "-d", "--name", "lbsite", "-p", f"{port}:80", "-v", f"{site}:/www",
                    "busybox", "httpd", "-f", "-p", "80", "-h", "/www"))
        (c,) = json.loads(ok(d.conch("inspect", "lbsite")))
        gateway = c["NetworkSettings"]["Gateway"]
        assert _get(port) == ("direct\n", gateway, ("127.0.0.1", port))
        # the publisher itself and a sibling, through the host (gateway) address: nft
        url = f"http://{gateway}:{port}/index.html"
        assert ok(d.conch("exec", "lbsite", "wget", "-qO-", url)) == "direct\n"
        assert ok(d.conch("run", "--rm", "busybox", "wget", "-qO-", url)) == "direct\n"
        d.kill9()  # the kernel detaches the programs with conchd's fds: nft alone serves
        assert _get(port) == ("direct\n", "127.0.0.1", ("127.0.0.1", port))
        d.start()  # reconcile: the live port is back in the map
        assert _get(port) == ("direct\n", gateway, ("127.0.0.1", port))
        ok(d.conch("rm", "-f", "lbsite"))
        with pytest.raises(OSError):
            _get(port)
    finally:
        d.conch("rm", "-f", "lbsite")
        shutil.rmtree(site, ignore_errors=True)
