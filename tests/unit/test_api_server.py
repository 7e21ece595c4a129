"""The REST adapter against the fake engine, over a real unix socket, with raw HTTP."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import tarfile
import time
from urllib.parse import quote

import pytest

from conch.api.params import call_engine, engine_of, json_response
from conch.api.server import create_app
from conch.errors import AlreadyExists, Conflict, NotFound
from conch.testing.fake_engine import FakeEngine, ServerThread


def http(path: str, sock_path, method: str = "GET", body: bytes = b"",
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP/1.0-style exchange; returns (status, headers, body)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(sock_path))
    hdrs = {"Host": "x", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    out_headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if out_headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while payload:
            size_line, _, payload = payload.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded += payload[:size]
            payload = payload[size + 2:]
        payload = decoded
    return status, out_headers, payload


@pytest.fixture
def engine():
    e = FakeEngine()
    e.images.add("busybox:latest", labels={"tier": "base"})
    e.images.add("localhost:5000/team/app:1.0", labels={"tier": "app"})
    e.images.add()  # dangling
    return e


@pytest.fixture
def api(engine, tmp_path):
    with ServerThread(create_app(engine), tmp_path / "api.sock") as srv:
        yield srv


def get_json(api, path, **kw):
    status, _, body = http(path, api.path, **kw)
    return status, json.loads(body) if body.strip() else None


def test_ping_get_and_head_carry_dockerd_headers(api):
    for method in ("GET", "HEAD"):
        status, headers, body = http("/_ping", api.path, method=method)
        assert status == 200
        assert headers["api-version"] == "1.50"
        assert headers["docker-experimental"] == "false"
        assert headers["ostype"] == "linux"
        assert headers["server"].startswith("Docker/") and "conch" in headers["server"]
        assert headers["content-type"].startswith("text/plain")
        assert body == (b"OK" if method == "GET" else b"")


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.50"])
def test_every_route_takes_the_optional_version_prefix(api, prefix):
    status, body = get_json(api, prefix + "/version")
    assert status == 200 and body["ApiVersion"] == "1.50" and body["MinAPIVersion"] == "1.24"


def test_version_too_new_and_too_old(api):
    status, body = get_json(api, "/v1.99/version")
    assert status == 400
    assert body == {"message": "client version 1.99 is too new. Maximum supported API version is 1.50"}
    status, body = get_json(api, "/v1.12/info")
    assert status == 400 and body["message"].startswith("client version 1.12 is too old.")


def test_unknown_route_and_wrong_method_are_page_not_found(api):
    for path, method in (("/nope", "GET"), ("/v1.50/containers/x/bogus", "GET"), ("/info", "DELETE")):
        status, body = get_json(api, path, method=method)
        assert (status, body) == (404, {"message": "page not found"})


def test_version_shape(api):
    _, v = get_json(api, "/version")
    assert v["Platform"]["Name"]
    engine = v["Components"][0]
    assert engine["Name"] == "Engine" and engine["Details"]["ApiVersion"] == "1.50"
    for key in ("Version", "GitCommit", "GoVersion", "Os", "Arch", "KernelVersion", "BuildTime"):
        assert key in v
    assert v["GoVersion"] == "n/a"


def test_info_shape_and_numbers_from_engine(api):
    _, i = get_json(api, "/info")
    assert (i["Containers"], i["ContainersRunning"], i["ContainersStopped"]) == (3, 1, 2)
    assert i["Images"] == 3
    assert i["Driver"] == "overlay2" and i["LoggingDriver"] == "json-file"
    assert i["CgroupDriver"] == "cgroupfs" and i["Swarm"]["LocalNodeState"] == "inactive"
    assert i["SecurityOptions"] == ["name=seccomp,profile=builtin"]
    assert i["Runtimes"]["conch"] == {"path": "conch-runtime"} and i["DefaultRuntime"] == "conch"
    for key in ("ID", "NCPU", "MemTotal", "DockerRootDir", "Name", "ServerVersion", "OSType",
                "Architecture", "KernelVersion", "OperatingSystem", "SystemTime", "Warnings",
                "IndexServerAddress", "RegistryConfig", "CgroupVersion", "NEventsListener"):
        assert key in i


def test_images_list_and_filters(api):
    _, images = get_json(api, "/v1.50/images/json")
    assert len(images) == 3
    tags = sorted(t for i in images for t in i["RepoTags"])
    assert tags == ["busybox:latest", "localhost:5000/team/app:1.0"]
    assert all(isinstance(i["Created"], int) and i["Id"].startswith("sha256:") for i in images)

    def filtered(f):
        _, out = get_json(api, "/images/json?filters=" + quote(json.dumps(f)))
        return sorted(t for i in out for t in i["RepoTags"] or ["<none>"])

    assert filtered({"dangling": {"true": True}}) == ["<none>"]
    assert filtered({"dangling": ["false"]}) == ["busybox:latest", "localhost:5000/team/app:1.0"]
    assert filtered({"reference": ["busy*"]}) == ["busybox:latest"]
    assert filtered({"reference": ["localhost:5000/team/app"]}) == ["localhost:5000/team/app:1.0"]
    assert filtered({"label": ["tier=app"]}) == ["localhost:5000/team/app:1.0"]
    assert filtered({"label": ["tier"]}) == ["busybox:latest", "localhost:5000/team/app:1.0"]
    assert filtered({"before": ["localhost:5000/team/app:1.0"]}) == ["busybox:latest"]
    assert filtered({"since": ["busybox"]}) == ["<none>", "localhost:5000/team/app:1.0"]
    status, body = get_json(api, "/images/json?filters=" + quote(json.dumps({"bogus": ["1"]})))
    assert (status, body) == (400, {"message": "invalid filter 'bogus'"})


def test_image_names_with_slashes_and_colons(api):
    status, img = get_json(api, "/v1.50/images/localhost:5000/team/app:1.0/json")
    assert status == 200 and img["RepoTags"] == ["localhost:5000/team/app:1.0"]
    assert img["Config"]["Labels"] == {"tier": "app"} and img["RootFS"]["Type"] == "layers"
    status, hist = get_json(api, "/images/localhost:5000/team/app:1.0/history")
    assert status == 200 and hist[0]["Tags"] == ["localhost:5000/team/app:1.0"]


def test_missing_image_is_404_with_docker_message(api):
    assert get_json(api, "/images/nope/json") == (404, {"message": "No such image: nope:latest"})


def test_tag_then_remove(api):
    status, _, body = http("/images/busybox/tag?repo=mine/bb&tag=v1", api.path, method="POST")
    assert status == 201 and body == b""
    assert get_json(api, "/images/mine/bb:v1/json")[0] == 200
    status, items = get_json(api, "/images/mine/bb:v1", method="DELETE")
    assert (status, items) == (200, [{"Untagged": "mine/bb:v1"}])


def test_remove_conflict_is_409(api, engine):
    image = engine.images.tag("busybox", "other:latest")
    status, body = get_json(api, f"/images/{image.id.hex[:12]}", method="DELETE")
    assert status == 409 and "must be forced" in body["message"]
    status, items = get_json(api, f"/images/{image.id.hex[:12]}?force=1", method="DELETE")
    assert status == 200 and {"Deleted": str(image.id)} in items


def test_prune_dangling(api):
    status, body = get_json(api, "/images/prune", method="POST")
    assert status == 200 and len(body["ImagesDeleted"]) == 1 and body["SpaceReclaimed"] > 0


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


def test_import_streams_progress_with_new_id(api):
    status, headers, body = http("/v1.50/images/create?fromSrc=-&repo=imported&tag=v1&message=m",
                                 api.path, method="POST", body=_tarball())
    assert status == 200 and headers["content-type"].startswith("application/json")
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 1 and lines[0]["status"].startswith("sha256:")
    assert get_json(api, "/images/imported:v1/json")[1]["Id"] == lines[0]["status"]


def test_import_of_garbage_reports_error(api):
    status, _, body = http("/images/create?fromSrc=-", api.path, method="POST", body=b"not a tar")
    assert status == 400 and "invalid tar" in json.loads(body)["message"]


def test_pull_unknown_manifest_is_a_404_before_the_stream(api):
    status, body = get_json(api, "/images/create?fromImage=nothere&tag=latest", method="POST")
    assert status == 404 and body["message"].startswith("manifest for nothere:latest not found")


def test_pull_streams_jsonmessages(api, engine):
    engine.images.remote.add("docker.io/library/remote:v1")
    status, _, body = http("/images/create?fromImage=remote&tag=v1", api.path, method="POST")
    lines = [json.loads(x) for x in body.splitlines()]
    assert status == 200
    assert lines[0] == {"status": "Pulling from library/remote", "id": "v1"}
    assert lines[1]["progressDetail"] == {"current": 5, "total": 10}
    assert lines[1]["progress"].startswith("[=========================>")
    assert lines[-1] == {"status": "Status: Downloaded newer image for remote:v1"}


def test_save_and_load(api):
    status, headers, body = http("/images/get?names=busybox", api.path)
    assert status == 200 and headers["content-type"] == "application/x-tar"
    assert tarfile.open(fileobj=io.BytesIO(body)).getnames()[0].startswith("blobs/sha256/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("loaded__thing:v2"), io.BytesIO(b""))
    status, _, body = http("/images/load", api.path, method="POST", body=buf.getvalue())
    assert status == 200
    assert json.loads(body) == {"stream": "Loaded image: loaded/thing:v2\n"}


def test_events_since_until_and_filters(api, engine):
    t0 = time.time_ns()
    engine.events.publish("container", "start", "c1", {"name": "web", "image": "busybox"},
                          time_nano=t0)
    engine.events.publish("image", "tag", "sha256:ab", {"name": "x:1"}, time_nano=t0 + 1)
    until = f"{(t0 + 2) // 10**9}.{(t0 + 2) % 10**9:09d}"  # the CLI's seconds.nanos form
    _, _, body = http(f"/events?since=0&until={until}", api.path)
    events = [json.loads(line) for line in body.splitlines()]
    assert [e["Action"] for e in events] == ["start", "tag"]
    first = events[0]
    assert first["Type"] == "container" and first["Actor"] == {
        "ID": "c1", "Attributes": {"name": "web", "image": "busybox"}}
    assert first["scope"] == "local" and first["timeNano"] == t0 and first["time"] == t0 // 10**9
    assert first["status"] == "start" and first["id"] == "c1" and first["from"] == "busybox"
    from urllib.parse import quote
    f = quote(json.dumps({"type": ["image"]}))
    _, _, body = http(f"/events?since=0&until={until}&filters={f}", api.path)
    assert [json.loads(line)["Type"] for line in body.splitlines()] == ["image"]


def test_events_stream_live(api, engine):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(api.path)
    s.sendall(b"GET /v1.50/events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")  # the head comes before any event
    for _ in range(50):  # the subscription is registered once the handler runs
        if engine.events.listeners:
            break
        time.sleep(0.02)
    api.call(engine.events.publish, "container", "die", "c9", {"exitCode": "0"})
    data = head.partition(b"\r\n\r\n")[2]
    while b"die" not in data:
        data += s.recv(4096)
    s.close()
    for _ in range(100):  # handler cancellation unsubscribes the closed client
        if not engine.events.listeners:
            break
        time.sleep(0.02)
    assert engine.events.listeners == 0


def test_system_df(api):
    _, df = get_json(api, "/system/df")
    assert len(df["Images"]) == 3 and df["LayersSize"] > 0
    assert df["Containers"] == [] and df["Volumes"] == [] and df["BuildCache"] == []


class _Routes:
    """A route module for error-mapping tests."""

    @staticmethod
    def register(add):
        async def boom(request):
            kind = request.query["kind"]
            exc = {"notfound": NotFound("No such container: x"), "exists": AlreadyExists("dup"),
                   "conflict": Conflict("busy"), "bug": ZeroDivisionError("division by zero")}[kind]
            await call_engine(_raise, exc)
            return json_response({})

        add("GET", "/boom", boom)
        add("GET", "/engine", _engine_name)


def _raise(exc):
    raise exc


async def _engine_name(request):
    return json_response({"engine": type(engine_of(request)).__name__})


def test_errors_map_to_status_and_message(tmp_path):
    app = create_app(FakeEngine(), modules=(_Routes,))
    with ServerThread(app, tmp_path / "e.sock") as srv:
        for kind, status, message in (("notfound", 404, "No such container: x"),
                                      ("exists", 409, "dup"), ("conflict", 409, "busy"),
                                      ("bug", 500, "division by zero")):
            assert get_json(srv, f"/v1.45/boom?kind={kind}") == (status, {"message": message})
        assert get_json(srv, "/engine") == (200, {"engine": "FakeEngine"})


def test_socket_mode_stale_socket_and_live_daemon(tmp_path, engine):
    path = tmp_path / "run" / "conch.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    with ServerThread(create_app(engine), path) as srv:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        second = ServerThread(create_app(engine), path)
        with pytest.raises(RuntimeError, match="already listening"):
            second.__enter__()
        assert get_json(srv, "/_ping".replace("/_ping", "/version"))[0] == 200
    assert not path.exists()
