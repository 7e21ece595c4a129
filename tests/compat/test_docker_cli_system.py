"""The real docker CLI (API 1.50) and docker-py against conch's API on a tmp socket,
served with the in-memory fake engine: version negotiation, system and image routes,
error texts, and the hijacked stream (via a test-only exec route pair)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conch.api.hijack import hijack
from conch.api.params import json_response
from conch.api.server import ROUTE_MODULES, create_app
from conch.testing.fake_engine import FakeEngine, ServerThread

DOCKER = shutil.which("docker", path="/usr/local/bin") or shutil.which("docker")


class _ExecEcho:
    """Just enough of exec for ``docker exec -i``: container inspect, exec create, start
    (hijacked: echoes stdin upper-cased to stdout until stdin's EOF), inspect (exit 0)."""

    @staticmethod
    def register(add):
        async def create(request):
            await request.read()
            return json_response({"Id": "e" * 64}, status=201)

        async def start(request):
            spec = await request.json()
            conn = await hijack(request, multiplexed=not spec.get("Tty"))
            async with conn:
                while data := await conn.reader.read(65536):
                    await conn.write_stream(1, data.upper())
                await conn.write_stream(2, b"done\n")
            return conn.response

        async def inspect(request):
            return json_response({"ID": "e" * 64, "Running": False, "ExitCode": 0,
                                  "ProcessConfig": {}, "OpenStdin": True, "ContainerID": "c" * 64,
                                  "Pid": 0})

        async def container(request):
            return json_response({"Id": "c" * 64, "State": {"Running": True, "Status": "running"},
                                  "Config": {"Tty": False}, "HostConfig": {}})

        add("GET", "/containers/{id}/json", container)
        add("POST", "/containers/{id}/exec", create)
        add("POST", "/exec/{id}/start", start)
        add("GET", "/exec/{id}/json", inspect)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    engine = FakeEngine()
    engine.images.add("busybox:latest", labels={"k": "v"})
    engine.images.add("localhost:5000/team/app:1.0")
    app = create_app(engine, modules=(*ROUTE_MODULES, _ExecEcho))
    with ServerThread(app, tmp_path_factory.mktemp("compat") / "conch.sock") as srv:
        yield srv


def docker(daemon, *args, input: bytes | None = None, tmp_config=None):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (/usr/local/bin/docker)")
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(tmp_config or "/nonexistent")}
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run([DOCKER, *args], input=input, capture_output=True, timeout=30, env=env)


def test_docker_version(daemon):
    proc = docker(daemon, "version", "--format", "{{json .}}")
    assert proc.returncode == 0, proc.stderr
    v = json.loads(proc.stdout)
    assert v["Server"]["ApiVersion"] == "1.50" and v["Server"]["MinAPIVersion"] == "1.24"
    assert v["Server"]["Components"][0]["Name"] == "Engine"
    assert v["Client"]["ApiVersion"] == "1.50"


def test_docker_version_plain_output(daemon):
    proc = docker(daemon, "version")
    assert proc.returncode == 0, proc.stderr
    assert b"1.50 (minimum version 1.24)" in proc.stdout


def test_docker_info(daemon):
    proc = docker(daemon, "info", "--format", "{{json .}}")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["ContainersRunning"] == 1 and info["Images"] == 2
    assert info["Driver"] == "overlay2" and info["DefaultRuntime"] == "conch"
    proc = docker(daemon, "info")
    assert proc.returncode == 0 and b"Storage Driver: overlay2" in proc.stdout, proc.stderr


def test_docker_images_and_inspect(daemon):
    proc = docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.decode().split()) == ["busybox:latest", "localhost:5000/team/app:1.0"]
    proc = docker(daemon, "images", "--filter", "label=k=v", "--format", "{{.Repository}}")
    assert proc.stdout.decode().split() == ["busybox"]
    proc = docker(daemon, "image", "inspect", "localhost:5000/team/app:1.0", "--format", "{{.Os}}")
    assert (proc.returncode, proc.stdout.strip()) == (0, b"linux"), proc.stderr
    proc = docker(daemon, "image", "history", "busybox")
    assert proc.returncode == 0 and b"fake layer" in proc.stdout, proc.stderr


def test_docker_error_text(daemon):
    proc = docker(daemon, "image", "inspect", "nope")
    assert proc.returncode == 1
    assert b"No such image: nope" in proc.stderr
    proc = docker(daemon, "pull", "busybox")
    assert proc.returncode == 1
    assert b"Error response from daemon: manifest for busybox:latest not found" in proc.stderr


def test_docker_exec_stream_with_stdin_half_close(daemon):
    proc = docker(daemon, "exec", "-i", "c" * 12, "cat", input=b"hello\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"HELLO\n"
    assert proc.stderr == b"done\n"


def test_docker_py_version_and_ping(daemon):
    docker_py = pytest.importorskip("docker", reason="docker-py (docker==7.1.0) is not installed")
    client = docker_py.DockerClient(base_url=daemon.host, version="1.45")
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.50"
        assert client.info()["Driver"] == "overlay2"
        tags = sorted(t for i in client.images.list() for t in i.tags)
        assert tags == ["busybox:latest", "localhost:5000/team/app:1.0"]
        with pytest.raises(docker_py.errors.ImageNotFound):
            client.images.get("nope")
    finally:
        client.close()
    auto = docker_py.DockerClient(base_url=daemon.host, version="auto")
    try:
        assert auto.api.api_version == "1.50"
    finally:
        auto.close()
