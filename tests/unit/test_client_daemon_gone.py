"""Issue 15 (found by tests/e2e/test_fault_injection.py): a conchd killed after the kernel
queued the client's connection but before it read the request. The client's send then
fails with EPIPE, which ``conch``'s main() took for a closed stdout: ``conch wait`` exited
0 with no output, a lost wait read as success. Now it is the daemon's failure
(:class:`conch.errors.Unavailable`), and ``wait`` exits 1 with a message.
"""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest

from conch import errors
from conch.cli.main import main
from conch.client.http import Client


def _client_whose_daemon_dies_after_connect(path: str) -> Client:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    client = Client(f"unix://{path}")
    connect = client.connect

    def connect_then_die():
        sock = connect()  # queued in the listener's backlog, never accepted
        srv.close()  # conchd killed: the queued connection is dropped
        return sock

    client.connect = connect_then_die
    return client


def test_send_to_a_daemon_that_died_is_unavailable(tmp_path):
    client = _client_whose_daemon_dies_after_connect(str(tmp_path / "s"))
    with pytest.raises(errors.Unavailable, match="closed the connection before taking the request"):
        client.post("/containers/x/wait")


def test_wait_on_a_daemon_that_died_is_not_exit_0(tmp_path):
    client = _client_whose_daemon_dies_after_connect(str(tmp_path / "s"))
    out, err = io.StringIO(), io.StringIO()
    rc = main(["wait", "x"], client=client, stdout=out, stderr=err)
    assert (rc, out.getvalue()) == (1, ""), err.getvalue()
    assert "closed the connection" in err.getvalue()


def _serve_once(path: str, response: bytes) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(response)
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("body", [b"", b"{}", json.dumps({"Error": None}).encode()])
def test_wait_answer_without_status_code_is_an_error(tmp_path, body):
    path = str(tmp_path / "s")
    t = _serve_once(path, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    out, err = io.StringIO(), io.StringIO()
    rc = main(["wait", "x"], client=Client(f"unix://{path}"), stdout=out, stderr=err)
    t.join(5)
    assert (rc, out.getvalue()) == (1, ""), err.getvalue()


def test_wait_prints_the_status_code(tmp_path):
    path = str(tmp_path / "s")
    body = b'{"StatusCode":7,"Error":null}'
    t = _serve_once(path, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    out, err = io.StringIO(), io.StringIO()
    rc = main(["wait", "x"], client=Client(f"unix://{path}"), stdout=out, stderr=err)
    t.join(5)
    assert (rc, out.getvalue()) == (0, "7\n"), err.getvalue()
