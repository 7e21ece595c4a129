"""conch.client against the real API app (fake engine) on a tmp unix socket."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time

import pytest

from conch.api.server import create_app
from conch.client import Client, demux
from conch.client.wire import error_for
from conch import errors
from conch.testing.fake_engine import FakeEngine, ServerThread


@pytest.fixture
def engine():
    e = FakeEngine()
    e.images.add("busybox:latest")
    return e


@pytest.fixture
def srv(engine, tmp_path):
    with ServerThread(create_app(engine), tmp_path / "c.sock") as s:
        yield s


def test_get_json_with_version_prefix(srv):
    client = Client(srv.host)
    assert client.url("/version") == "/v1.50/version"
    assert client.get("/version")["ApiVersion"] == "1.50"
    assert client.ping() == "OK"
    assert client.head("/_ping")["api-version"] == "1.50"


def test_params_encoding(srv):
    client = Client(srv.host)
    url = client.url("/images/json", {"all": True, "filters": {"label": ["a=b"]}, "x": None,
                                      "names": ["a", "b"]})
    assert url == "/v1.50/images/json?all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&names=a&names=b"
    out = client.get("/images/json", filters={"reference": ["busy*"]})
    assert [i["RepoTags"] for i in out] == [["busybox:latest"]]


def test_error_kinds_from_status(srv):
    client = Client(srv.host)
    with pytest.raises(errors.NotFound, match=r"^No such image: nope:latest$"):
        client.get("/images/nope/json")
    with pytest.raises(errors.InvalidArgument, match="too new"):
        Client(srv.host, version="1.99").get("/version")
    with pytest.raises(errors.NotFound, match="manifest for busybox:latest not found"):
        client.post("/images/create", fromImage="busybox")
    assert isinstance(error_for(409, "x"), errors.Conflict)
    assert isinstance(error_for(503, "x"), errors.Unavailable)


def test_delete_and_post(srv):
    client = Client(srv.host)
    assert client.post("/images/busybox/tag", repo="mine", tag="1") is None
    assert client.delete("/images/mine:1") == [{"Untagged": "mine:1"}]


def test_missing_socket_is_unavailable(tmp_path):
    host = f"unix://{tmp_path}/none.sock"
    with pytest.raises(errors.Unavailable) as info:
        Client(host).get("/version")
    assert str(info.value) == f"Cannot connect to the conch daemon at {host}. Is conchd running?"


def test_conch_host_env(monkeypatch, srv):
    monkeypatch.setenv("CONCH_HOST", srv.host)
    assert Client().host == srv.host and Client().ping() == "OK"


def test_stream_json_events(srv, engine):
    t0 = time.time_ns()
    engine.events.publish("container", "start", "c1", {"name": "web"}, time_nano=t0)
    events = list(Client(srv.host).stream_json("GET", "/events",
                                                params={"since": "0", "until": f"{t0 // 10**9 + 1}"}))
    assert [(e["Type"], e["Action"]) for e in events] == [("container", "start")]


def test_send_file_import_and_progress(srv):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    buf.seek(0)
    client = Client(srv.host)
    resp = client.send_file("POST", "/images/create", buf,
                            params={"fromSrc": "-", "repo": "imp", "tag": "1"})
    lines = list(client.stream_json("POST", "", response=resp))
    assert lines[0]["status"].startswith("sha256:")
    assert client.get("/images/imp:1/json")["Id"] == lines[0]["status"]


def test_stream_raw_save(srv):
    data = b"".join(Client(srv.host).stream_raw("GET", "/images/get", params={"names": "busybox"}))
    assert tarfile.open(fileobj=io.BytesIO(data)).getnames()


def test_progress_error_line_raises():
    class FakeResp:
        def iter_lines(self):
            yield b'{"status":"working"}'
            yield b'{"errorDetail":{"message":"boom"},"error":"boom"}'

        def close(self):
            pass

    it = Client("unix:///x").stream_json("POST", "", response=FakeResp())
    assert next(it) == {"status": "working"}
    with pytest.raises(errors.ConchError, match="boom"):
        next(it)


def test_demux_handles_split_frames():
    data = b"\x01\x00\x00\x00\x00\x00\x00\x03out\x02\x00\x00\x00\x00\x00\x00\x02er"
    pieces = [data[i:i + 3] for i in range(0, len(data), 3)] + [b""]
    it = iter(pieces)
    assert list(demux(lambda n: next(it))) == [(1, b"out"), (2, b"er")]
    it = iter([data[:-1], b""])
    with pytest.raises(errors.ConchError, match="truncated"):
        list(demux(lambda n: next(it)))


def test_import_cost_is_small():
    """``import conch.client`` is paid by every CLI command: keep it under ~15 ms."""
    code = ("import time; t = time.perf_counter(); import conch.client; "
            "print(time.perf_counter() - t)")
    best = min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
                                    ).stdout) for _ in range(5))
    assert best < 0.015, f"import conch.client took {best * 1000:.1f} ms"
    mods = subprocess.run([sys.executable, "-c", "import sys, conch.client; "
                           "print(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, check=True).stdout.split()
    for heavy in ("aiohttp", "asyncio", "http.client", "email.parser", "typing", "conch.api"):
        assert heavy not in mods, f"conch.client pulls in {heavy}"
