"""Replicas behind one published port and the autoscaler, end to end (issue 12).

- 30 requests to a 3-replica service's one host port reach at least 2 replicas (nft
  ``numgen random`` over the ready backends);
- scaling 3 -> 1 under a steady bounded request loop on 127.0.0.1 loses no request
  (each replica leaves the balancer and drains before it is stopped);
- autoscaling: a CPU-bound CGI endpoint with ``cpus: 0.25`` per replica under 8 bounded
  client loops grows from 1 to at least 2 replicas, falls back to 1 after the load stops,
  and no request fails meanwhile; each change is a ``service``/``scale`` event and the
  state shows in the replicas' labels. Short windows (sync 1 s, up 2 s, down 4 s) keep the
  test short (the defaults and why are in conch.engine.scaling.policy), and a 30 % target
  still scales up when a loaded machine gives the replica less than its 0.25 CPU; the
  load stops once a second replica has answered (bounded at 45 s).

Safety: traffic only to 127.0.0.1; every loop is bounded in time and count.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import time
import urllib.request

import pytest

from conch.testing.daemon import clean_after, daemon_fixture, free_port, ok

pytestmark = pytest.mark.root

daemon = daemon_fixture()


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode().strip()


class Load:
    """``n`` client loops on ``url`` until stopped (bounded: ``limit`` seconds and
    ``max_requests`` requests in all); counts successes per answer and failures."""

    def __init__(self, url: str, n: int = 1, limit: float = 60, max_requests: int = 200_000):
        self.url, self.limit, self.max = url, limit, max_requests
        self.seen: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(n)]

    def _loop(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            with self._lock:
                if sum(self.seen.values()) + len(self.failures) >= self.max:
                    return
            try:
                body = get(self.url)
                with self._lock:
                    self.seen[body] += 1
            except OSError as exc:
                with self._lock:
                    self.failures.append(repr(exc))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    @property
    def ok(self) -> int:
        with self._lock:
            return sum(self.seen.values())


def compose(d, project: str, path, *args, timeout: float = 120):
    return d.conch("compose", "-p", project, "-f", str(path), *args, timeout=timeout)


@contextlib.contextmanager
def project_up(d, tmp_path, prefix: str, template: str, *up_args: str):
    """``template`` (its ``%(port)d`` a free host port) written to compose.yaml and
    ``up -d``'d as a fresh project named ``prefix``+hex; yields (project, path, port);
    ``down`` afterwards, whatever the test did."""
    project, port = f"{prefix}{os.urandom(3).hex()}", free_port()
    path = tmp_path / "compose.yaml"
    path.write_text(template % {"port": port})
    r = compose(d, project, path, "up", "-d", *up_args)
    assert r.returncode == 0, r.stderr
    try:
        yield project, path, port
    finally:
        compose(d, project, path, "down")


def sample(url: str, n: int = 30) -> set[str]:
    """The answers of ``n`` requests to ``url`` (failed ones skipped)."""
    out = set()
    for _ in range(n):
        try:
            out.add(get(url, 3))
        except OSError:
            pass
    return out


def running(d, project: str) -> int:
    items = d.api.get("/containers/json", filters={"label": [f"com.docker.compose.project={project}"]})
    return len(items)


def wait_for(pred, timeout: float, what: str, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


WEB = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; echo $$HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:%(port)d:80"]
    deploy: {replicas: 3}
"""


def test_replicas_share_one_port_and_scale_down_loses_nothing(d, tmp_path):
    with project_up(d, tmp_path, "sp", WEB) as (project, path, port):
        _share_and_drain(d, project, path, port)


def _share_and_drain(d, project, path, port):
    url = f"http://127.0.0.1:{port}/"

    def spread():  # replicas join the balancer once they listen: poll until they did
        answers = sample(url)
        return answers if len(answers) >= 2 else None

    answers = wait_for(spread, 30, "30 requests to reach 2 replicas")
    assert len(answers) >= 2
    # the shared port is in nft, not in the socket LB: still one published port per replica
    inspect = d.api.get(f"/containers/{project}-web-2/json")
    assert inspect["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(port)

    with Load(url, n=2, limit=40) as load:
        wait_for(lambda: load.ok > 50, 20, "the loop to run")
        r = compose(d, project, path, "up", "-d", "--scale", "web=1")
        assert r.returncode == 0, r.stderr
        after = load.ok
        wait_for(lambda: load.ok > after + 50, 20, "requests after the scale-down")
    assert load.failures == [], load.failures[:5]
    assert running(d, project) == 1
    assert get(url) == d.api.get(f"/containers/{project}-web-1/json")["Config"]["Hostname"]


BURN = r"""
services:
  burn:
    image: busybox
    command:
      - sh
      - -c
      - |
        mkdir -p /www/cgi-bin
        printf '#!/bin/sh\ni=0\nwhile [ $$i -lt 3000 ]; do i=$$((i+1)); done\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%%%s\\n" "$$HOSTNAME"\n' > /www/cgi-bin/burn
        chmod +x /www/cgi-bin/burn
        exec httpd -f -p 80 -h /www
    stop_signal: SIGKILL
    ports: ["127.0.0.1:%(port)d:80"]
    deploy: {resources: {limits: {cpus: "0.25"}}}
    x-autoscale:
      min_replicas: 1
      max_replicas: 3
      target_cpu_percent: 30
      sync_period: 1s
      scale_up_window: 2s
      scale_down_window: 4s
"""


def test_autoscale_follows_cpu_load_without_failures(d, tmp_path):
    since = int(time.time()) - 1
    with project_up(d, tmp_path, "as", BURN) as (project, path, port):
        _autoscale(d, project, path, port, since)


def _autoscale(d, project, path, port, since):
    url = f"http://127.0.0.1:{port}/cgi-bin/burn"
    wait_for(lambda: _answers(url), 20, "the first replica to answer")
    assert running(d, project) == 1
    # the load: 8 bounded client loops for 45 s, kept up after the scale-up so that
    # "no request fails" covers the replicas joining (and a third, if the load asks for it)
    started = time.monotonic()
    with Load(url, n=8, limit=45) as load:
        peak = wait_for(lambda: running(d, project) >= 2 and running(d, project), 40,
                        "the autoscaler to add a replica under load")
        # the new replica takes requests once it listens
        wait_for(lambda: len(load.seen) >= 2, 20, "a second replica to answer")
        while time.monotonic() - started < 45:
            peak = max(peak, running(d, project))
            time.sleep(0.5)
    assert peak >= 2
    wait_for(lambda: running(d, project) == 1, 60, "the autoscaler to scale back to 1")
    assert load.failures == [], load.failures[:5]
    assert load.ok > 0
    # the scale-down event is sent once the retired replica is gone, which may be a moment
    # after the count of running replicas fell (seen on a loaded machine): poll for it
    scale = wait_for(lambda: _scaled_both_ways(d, since), 20, "the scale-up and scale-down events")
    assert any(int(a["replicas_to"]) > int(a["replicas_from"]) for a in scale), scale
    assert any(int(a["replicas_to"]) < int(a["replicas_from"]) for a in scale), scale
    labels = wait_for(lambda: _desired_is(d, f"{project}-burn-1", "1"), 20,
                      "the state labels to follow the scale-down")
    assert labels["io.conch.autoscale.max_replicas"] == "3"
    ps = ok(compose(d, project, path, "ps"))
    assert "autoscale 1-3@30%cpu" in ps


def _scaled_both_ways(d, since: int) -> list[dict] | None:
    events = d.api.request("GET", "/events", params={
        "since": since, "until": int(time.time()) + 1,
        "filters": json.dumps({"type": ["service"]})}).read().decode().splitlines()
    scale = [json.loads(e)["Actor"]["Attributes"] for e in events if e.strip()]
    up = any(int(a["replicas_to"]) > int(a["replicas_from"]) for a in scale)
    down = any(int(a["replicas_to"]) < int(a["replicas_from"]) for a in scale)
    return scale if up and down else None


def _desired_is(d, name: str, want: str) -> dict | None:
    labels = d.api.get(f"/containers/{name}/json")["Config"]["Labels"]
    return labels if labels.get("io.conch.autoscale.desired") == want else None


def _answers(url: str) -> bool:
    try:
        get(url, 3)
        return True
    except OSError:
        return False


IDLE = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; echo $$HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:%(port)d:80"]
    deploy: {resources: {limits: {cpus: "0.25"}}}
    x-autoscale: {min_replicas: 1, max_replicas: 3, target_cpu_percent: 30, sync_period: 1s,
                  scale_up_window: 2s, scale_down_window: 3s}
"""


def test_shared_port_and_autoscaler_survive_a_conchd_crash(d, tmp_path):
    """kill -9 of conchd: the shared port keeps serving while it is down (the rules are
    in the kernel), and the restarted conchd's autoscaler, reading its policy from the
    records, still scales the idle service from 3 down to its minimum of 1."""
    with project_up(d, tmp_path, "ak", IDLE, "--scale", "web=3") as (project, _, port):
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _answers(url), 20, "the service to answer")
        d.kill9()
        try:
            assert _answers(url)  # conchd down: the kernel still balances
        finally:
            d.start()
        wait_for(lambda: running(d, project) == 1, 60, "the restarted autoscaler to scale to 1")
        wait_for(lambda: _answers(url), 20, "the last replica to answer")


HEALTH = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; echo $$HOSTNAME > /www/index.html; touch /ok; exec httpd -f -p 80 -h /www"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:%(port)d:80"]
    healthcheck: {test: ["CMD", "test", "-f", "/ok"], interval: 1s, retries: 1}
    deploy: {replicas: 2}
"""


def test_only_healthy_replicas_get_connections(d, tmp_path):
    """A replica with a healthcheck joins the shared port once healthy and leaves it
    when it turns unhealthy (and comes back when healthy again)."""
    with project_up(d, tmp_path, "hc", HEALTH, "--wait") as (project, _, port):
        url = f"http://127.0.0.1:{port}/"
        host = {n: d.api.get(f"/containers/{project}-web-{n}/json")["Config"]["Hostname"]
                for n in (1, 2)}
        wait_for(lambda: sample(url) == set(host.values()), 20, "both healthy replicas to answer")
        ok(d.conch("exec", f"{project}-web-2", "rm", "/ok"))
        wait_for(lambda: d.api.get(f"/containers/{project}-web-2/json")["State"]["Health"]["Status"]
                 == "unhealthy", 20, "web-2 to turn unhealthy")
        assert sample(url) == {host[1]}
        ok(d.conch("exec", f"{project}-web-2", "touch", "/ok"))
        wait_for(lambda: sample(url) == set(host.values()), 20, "web-2 back in the balancer")


RPS = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; echo $$HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:%(port)d:80"]
    x-autoscale: {min_replicas: 1, max_replicas: 3, target_requests_per_second: 20,
                  sync_period: 1s, scale_up_window: 2s, scale_down_window: 3s}
"""


def test_autoscale_on_requests_per_second(d, tmp_path):
    """``target_requests_per_second``: the shared port's nft connection counter drives
    the count: a request loop far above 20/s per replica adds replicas, none removes them."""
    with project_up(d, tmp_path, "rq", RPS) as (project, _, port):
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _answers(url), 20, "the service to answer")
        with Load(url, n=2, limit=40) as load:
            wait_for(lambda: running(d, project) >= 2, 30, "a replica added for the request rate")
        assert load.failures == [], load.failures[:5]
        wait_for(lambda: running(d, project) == 1, 60, "back to 1 without requests")
