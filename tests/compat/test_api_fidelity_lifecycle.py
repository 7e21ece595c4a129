"""Issue 10 items 4 and 8 through docker-py and the docker CLI: kill with SIGKILL returns
once the container is dead; the restarting state with docker's back-off and the 409 of
``rm`` then; ``commit?pause=1`` right after a start; log drivers ``none``, ``local`` and an
unknown one."""

from __future__ import annotations

import json
import time

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

docker = pytest.importorskip("docker", reason="docker-py is not installed in this venv")

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")

LOOP = ["sh", "-c", "while :; do sleep 0.1; done"]


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def client(d):
    c = docker.DockerClient(base_url=d.host, timeout=60)
    yield c
    c.close()


def _poll(fn, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- item 4 -----------------------------------------------------------------------------


def test_sigkill_returns_once_dead_so_rm_works(d, client):
    for _ in range(3):
        c = client.containers.run("busybox", LOOP, detach=True)
        c.kill()  # docker-py: SIGKILL
        c.reload()
        assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 137)
        c.remove()  # no force: it is dead already
    cid = d.docker("run", "-d", "busybox", *LOOP).stdout.strip()
    assert d.docker("kill", cid).returncode == 0
    proc = d.docker("rm", cid)
    assert proc.returncode == 0, proc.stderr


def test_kill_of_a_paused_container(d, client):
    c = client.containers.run("busybox", LOOP, detach=True)
    c.pause()
    c.kill()
    c.reload()
    assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 137)
    c.remove()


def test_restarting_state_backoff_and_rm_conflict(d, client):
    since = time.time()
    c = client.containers.run("busybox", ["sh", "-c", "exit 3"], detach=True,
                              restart_policy={"Name": "on-failure"})

    def restarting():
        c.reload()
        return c.attrs["State"]["Restarting"] and c.attrs["RestartCount"] >= 4

    _poll(restarting, what="four restarts")  # so three have started and exited again
    state = c.attrs["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("restarting", True, 3)

    # each check below is made while it is restarting: a restart may come in between
    # (the back-off windows are short), so a check that met a running one is made again
    def while_restarting(check, what):
        for _ in range(50):
            _poll(lambda: (c.reload(), c.attrs["State"]["Restarting"])[1], what=what)
            if check():
                return
        raise AssertionError(f"{what}: never seen while restarting")

    def api_rm_conflict():
        with pytest.raises(docker.errors.APIError) as exc:
            c.remove()
        assert exc.value.status_code == 409
        return f"You cannot remove a restarting container {c.id}" in str(exc.value)

    def cli_rm_conflict():
        proc = d.docker("rm", c.id)
        assert proc.returncode == 1, proc.stdout
        return "You cannot remove a restarting container" in proc.stderr

    def ps_restarting():
        ps = d.docker("ps", "--filter", f"id={c.id}", "--format", "{{.Status}}").stdout
        return ps.startswith("Restarting (3)")

    while_restarting(api_rm_conflict, "docker-py rm's 409")
    while_restarting(cli_rm_conflict, "docker rm's 409")
    while_restarting(ps_restarting, "docker ps's Restarting (3)")
    # docker's back-off: 100 ms, doubling: each gap between starts at least the last delay
    out = d.docker("events", "--since", str(since), "--until", str(time.time()), "--filter",
                   f"container={c.id}", "--filter", "event=start", "--format", "{{.TimeNano}}")
    starts = [int(t) for t in out.stdout.split()]
    gaps = [(b - a) / 1e9 for a, b in zip(starts, starts[1:])]
    assert len(gaps) >= 3, out.stdout
    for i, gap in enumerate(gaps[:3]):
        assert gap >= 0.1 * 2 ** i * 0.9, gaps
    # stop cancels the pending restart: exited, and now rm works
    c.stop(timeout=1)
    c.reload()
    assert (c.status, c.attrs["State"]["Restarting"]) == ("exited", False)
    c.remove()


def test_commit_with_pause_right_after_start(d, client):
    for _ in range(5):
        c = client.containers.run("busybox", LOOP, detach=True)
        image = c.commit(repository="pausecommit", tag="t")  # docker-py: pause=True
        c.remove(force=True)
        client.images.remove(image.id)
    cid = d.docker("run", "-d", "busybox", *LOOP).stdout.strip()
    proc = d.docker("commit", "--pause=true", cid, "pausecommit:cli")
    assert proc.returncode == 0, proc.stderr
    d.docker("rm", "-f", cid)
    d.docker("rmi", "pausecommit:cli")


# --- item 8 -----------------------------------------------------------------------------


def test_log_driver_none(d, client):
    c = client.containers.run("busybox", ["echo", "hidden"], detach=True,
                              log_config={"Type": "none"})
    assert c.wait(timeout=30)["StatusCode"] == 0
    c.reload()
    assert c.attrs["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}
    assert c.attrs["LogPath"] == ""
    with pytest.raises(docker.errors.APIError) as exc:
        c.logs()
    assert exc.value.status_code == 501
    assert "configured logging driver does not support reading" in str(exc.value)
    proc = d.docker("logs", c.id)
    assert proc.returncode == 1 and "does not support reading" in proc.stderr
    # docker run in the foreground still shows the output: attach does not go through logs
    proc = d.docker("run", "--rm", "--log-driver", "none", "busybox", "echo", "seen")
    assert (proc.returncode, proc.stdout) == (0, "seen\n"), proc.stderr


def test_log_driver_local(d, client):
    c = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], detach=True,
                              log_config={"Type": "local", "Config": {"max-size": "1m"}})
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    c.reload()
    assert c.attrs["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {"max-size": "1m"}}
    proc = d.docker("run", "--rm", "--log-driver", "local", "--log-opt", "labels=a", "busybox", "true")
    assert proc.returncode == 125 and "unknown log opt 'labels' for local log driver" in proc.stderr
    info = json.loads(d.api.request("GET", "/info").read())
    assert {"json-file", "local", "none"} <= set(info["Plugins"]["Log"])


def test_unknown_log_driver_is_dockers_error(d, client):
    with pytest.raises(docker.errors.APIError) as exc:
        client.containers.create("busybox", "true", log_config={"Type": "foo"})
    assert exc.value.status_code == 400
    assert exc.value.explanation == 'error looking up logging plugin foo: plugin "foo" not found'
    proc = d.docker("run", "--rm", "--log-driver", "foo", "busybox", "true")
    assert proc.returncode == 125
    assert 'error looking up logging plugin foo: plugin "foo" not found' in proc.stderr
