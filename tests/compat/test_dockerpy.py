"""Issue 3 "Proof": docker-py (``docker`` 7.1.0 from PyPI) against conchd's API on a
private socket: run/logs/exec/stop/wait/remove, image and container lists, inspect."""

from __future__ import annotations

import time

import pytest

from conch.testing.daemon import clean_after, daemon_fixture

docker = pytest.importorskip("docker", reason="docker-py is not installed in this venv")

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def client(d):
    c = docker.DockerClient(base_url=d.host, timeout=60)
    yield c
    c.close()


def test_ping_and_version(client):
    assert client.ping() is True
    assert client.version()["ApiVersion"]


def test_run_remove_returns_output(client):
    assert client.containers.run("busybox", "echo hi", remove=True) == b"hi\n"


def test_run_nonzero_raises_container_error(client):
    with pytest.raises(docker.errors.ContainerError) as exc:
        client.containers.run("busybox", ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
    assert exc.value.exit_status == 3
    assert b"oops" in exc.value.stderr


def test_run_missing_image_is_image_not_found(client):
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("no-such-image:nope", "true")


def test_detached_lifecycle(client):
    c = client.containers.run("busybox", ["sh", "-c", "echo started; trap 'exit 0' TERM; "
                                          "while true; do sleep 0.1; done"],
                              detach=True, name="py-life", environment={"A": "b"})
    assert len(c.id) == 64 and c.name == "py-life"
    c.reload()
    assert c.status == "running"
    deadline = time.monotonic() + 5
    while c.logs() != b"started\n":
        assert time.monotonic() < deadline, c.logs()
        time.sleep(0.1)
    res = c.exec_run(["sh", "-c", "echo $A; exit 2"])
    assert (res.exit_code, res.output) == (2, b"b\n")
    res = c.exec_run("id -u", user="1000", workdir="/tmp")
    assert (res.exit_code, res.output) == (0, b"1000\n")
    res = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
    assert res.output == (b"out\n", b"err\n")
    c.stop(timeout=5)
    assert c.wait(timeout=10) == {"StatusCode": 0, "Error": None}
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("py-life")


def test_logs_stream_and_options(client):
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"],
                              detach=True)
    lines = list(c.logs(stream=True, follow=True))
    assert b"".join(lines) == b"1\n2\n3\n"
    assert c.logs(tail=1) == b"3\n"
    assert c.logs(timestamps=True).split(b"\n")[0].endswith(b"Z 1")
    c.remove(force=True)


def test_wait_exit_code(client):
    c = client.containers.run("busybox", ["sh", "-c", "sleep 0.3; exit 9"], detach=True)
    assert c.wait(timeout=10)["StatusCode"] == 9
    c.remove()


def test_lists_and_inspect(client):
    images = client.images.list()
    assert any("busybox:latest" in img.tags for img in images), [i.tags for i in images]
    run = client.containers.run("busybox", "sleep 100", detach=True, name="py-run", labels={"k": "v"})
    done = client.containers.create("busybox", "true", name="py-created")
    running = [c.name for c in client.containers.list()]
    assert running == ["py-run"]
    every = {c.name: c.status for c in client.containers.list(all=True)}
    assert every == {"py-run": "running", "py-created": "created"}
    assert [c.name for c in client.containers.list(filters={"label": "k=v"})] == ["py-run"]
    info = client.api.inspect_container("py-run")
    assert info["Id"] == run.id and info["Name"] == "/py-run"
    assert info["State"]["Running"] is True and info["Config"]["Labels"] == {"k": "v"}
    assert info["Config"]["Cmd"] == ["sleep", "100"]
    run.kill()
    assert run.wait(timeout=10)["StatusCode"] == 137
    run.remove()
    done.remove()
