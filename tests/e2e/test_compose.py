"""`conch compose` end to end (conch CLI -> conchd -> kernel), issue 12:

- a project with a build, two services on a user network, a named volume, a healthcheck
  and ``depends_on: service_healthy`` goes up, answers on its published port, reaches the
  other service by name, scales, recreates only what changed, and ``down -v`` leaves
  nothing (containers, network, volume, nft shared-port chain; the per-test leak check
  covers mounts, veths, cgroups and processes);
- docker-compose 1.29 (PyPI, a cached throwaway venv) and conch compose work on the same
  project file and see each other's containers (docker compose's labels).

Safety: user networks get explicit free 10.x subnets; traffic only to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from conch.testing.daemon import clean_after, daemon_fixture, free_port, free_subnet, ok

pytestmark = pytest.mark.root

daemon = daemon_fixture()


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def fetch(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def compose(d, project: str, path, *args, timeout: float = 120):
    return d.conch("compose", "-p", project, "-f", str(path), *args, timeout=timeout)


def ids(d, project: str, service: str | None = None) -> dict[str, str]:
    """container name -> id of a project's containers (any state)."""
    labels = [f"com.docker.compose.project={project}"]
    if service:
        labels.append(f"com.docker.compose.service={service}")
    items = d.api.get("/containers/json", all=True, filters={"label": labels})
    return {c["Names"][0].lstrip("/"): c["Id"] for c in items}


PROJECT_FILE = """
services:
  web:
    build:
      context: ./web
      args: {GREETING: "${GREETING:-hello}"}
    ports: ["127.0.0.1:%(port)d:80"]
    networks: [front]
    stop_signal: SIGKILL
    depends_on:
      db: {condition: service_healthy}
  db:
    image: busybox
    command: ["sh", "-c", "echo db-data > /data/x; exec httpd -f -p 80 -h /data"]
    stop_signal: SIGKILL
    environment: {LEVEL: "%(level)s"}
    healthcheck: {test: ["CMD-SHELL", "test -f /data/x"], interval: 1s, retries: 30}
    volumes: [data:/data]
    networks: [front]
volumes: {data: {}}
networks:
  front:
    ipam: {config: [{subnet: "%(subnet)s"}]}
"""


def _project(tmp_path, *, level="1", port=None, subnet=None):
    (tmp_path / "web").mkdir(exist_ok=True)
    (tmp_path / "web" / "Dockerfile").write_text(
        "FROM busybox\nARG GREETING\nRUN mkdir -p /www && echo $GREETING > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n')
    (tmp_path / ".env").write_text("GREETING=hi-from-env\n")
    path = tmp_path / "compose.yaml"
    path.write_text(PROJECT_FILE % {"port": port, "level": level, "subnet": subnet})
    return path


def test_project_up_scale_recreate_down(d, tmp_path):
    project = f"cp{os.urandom(3).hex()}"
    port, subnet = free_port(), free_subnet()
    path = _project(tmp_path, port=port, subnet=subnet)
    up = compose(d, project, path, "up", "-d", timeout=180)
    assert up.returncode == 0, up.stderr
    # depends_on service_healthy: db was healthy before web was created
    err = up.stderr
    assert err.index(f"Container {project}-db-1  Healthy") < err.index(f"Container {project}-web-1  Created")
    assert fetch(f"http://127.0.0.1:{port}/").strip() == "hi-from-env"  # build arg from .env
    # the user network: web finds db by its service name (embedded DNS)
    got = ok(compose(d, project, path, "exec", "-T", "web", "wget", "-qO-", "http://db/x"))
    assert got.strip() == "db-data"
    ps = ok(compose(d, project, path, "ps"))
    assert f"{project}-web-1" in ps and "(healthy)" in ps
    assert ok(d.conch("network", "ls", "--format", "{{.Name}}")).split().count(f"{project}_front") == 1
    assert f"{project}_data" in ok(d.conch("volume", "ls", "-q")).split()
    info = d.api.get(f"/containers/{project}-web-1/json")
    labels = info["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == project
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert len(labels["com.docker.compose.config-hash"]) == 64

    # scale: two web replicas behind the one published port
    assert compose(d, project, path, "up", "-d", "--scale", "web=2").returncode == 0
    before = ids(d, project)
    assert sorted(before) == sorted([f"{project}-db-1", f"{project}-web-1", f"{project}-web-2"])
    # the service name resolves to both replicas (embedded DNS, answers shuffled)
    web_ips = {d.api.get(f"/containers/{project}-web-{n}/json")["NetworkSettings"]["Networks"]
               [f"{project}_front"]["IPAddress"] for n in (1, 2)}
    looked = ok(compose(d, project, path, "exec", "-T", "db", "nslookup", "-type=a", "web"))
    assert all(ip in looked for ip in web_ips), looked
    assert fetch(f"http://127.0.0.1:{port}/").strip() == "hi-from-env"

    # unchanged: nothing recreated; db changed: only db recreated
    assert compose(d, project, path, "up", "-d", "--scale", "web=2").returncode == 0
    assert ids(d, project) == before
    _project(tmp_path, level="2", port=port, subnet=subnet)
    again = compose(d, project, path, "up", "-d", "--scale", "web=2")
    assert again.returncode == 0, again.stderr
    after = ids(d, project)
    assert after[f"{project}-db-1"] != before[f"{project}-db-1"]
    assert after[f"{project}-web-1"] == before[f"{project}-web-1"]
    assert after[f"{project}-web-2"] == before[f"{project}-web-2"]
    env = d.api.get(f"/containers/{project}-db-1/json")["Config"]["Env"]
    assert "LEVEL=2" in env

    down = compose(d, project, path, "down", "-v")
    assert down.returncode == 0, down.stderr
    assert ids(d, project) == {}
    assert f"{project}_front" not in ok(d.conch("network", "ls", "--format", "{{.Name}}")).split()
    assert f"{project}_data" not in ok(d.conch("volume", "ls", "-q")).split()
    table = subprocess.run(["nft", "list", "table", "ip", d.nft_table], capture_output=True,
                           text=True).stdout
    assert f"_{port}" not in table  # neither a shared-port chain nor a port element


def test_bad_file_names_the_key(d, tmp_path):
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web:\n    image: busybox\n    ports: 80\n")
    r = d.conch("compose", "-f", str(path), "config")
    assert r.returncode == 1 and "services.web.ports must be a array" in r.stderr, r.stderr
    assert "daemon" not in r.stderr  # a file's problem, said plainly


def test_docker_compose_v1_and_conch_compose_share_a_project(d, tmp_path):
    from conch.testing.compose_v1 import compose_v1_or_skip

    v1 = str(compose_v1_or_skip())
    project = f"cv{os.urandom(3).hex()}"
    port = free_port()
    path = tmp_path / "docker-compose.yml"
    path.write_text(f"""
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo v1-ok > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:{port}:80"]
""")

    def v1run(*args):
        return subprocess.run([v1, "-p", project, "-f", str(path), *args], env=d.env,
                              capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)

    r = v1run("up", "-d")
    assert r.returncode == 0, r.stderr
    assert fetch(f"http://127.0.0.1:{port}/").strip() == "v1-ok"
    # conch compose sees docker-compose's container (same labels) and takes it down
    ps = ok(compose(d, project, path, "ps", "--format", "json"))
    rows = [json.loads(line) for line in ps.splitlines()]
    assert [r["Service"] for r in rows] == ["web"]
    ok(compose(d, project, path, "down"))
    assert ids(d, project) == {}
    # and the other way round
    assert compose(d, project, path, "up", "-d").returncode == 0
    assert fetch(f"http://127.0.0.1:{port}/").strip() == "v1-ok"
    r = v1run("ps")
    assert r.returncode == 0 and f"{project}-web-1" in r.stdout, r.stdout + r.stderr
    r = v1run("down")
    assert r.returncode == 0, r.stderr
    assert ids(d, project) == {}


def test_run_logs_wait_secrets_profiles(d, tmp_path):
    """The other verbs on a small project: up --wait (healthcheck), depends_on
    service_completed_successfully, logs with the
    service prefix, run --rm (a one-off with the command given, the project's network),
    secrets from a file, a profile-only service left out until its profile is on,
    stop/start/restart, and config's resolved output."""
    project = f"cr{os.urandom(3).hex()}"
    (tmp_path / "token.txt").write_text("s3cret\n")
    path = tmp_path / "compose.yaml"
    path.write_text("""
services:
  app:
    image: busybox
    command: ["sh", "-c", "echo started-$$NAME; cat /run/secrets/token; exec httpd -f -p 80 -h /"]
    environment: {NAME: "${NAME:-app}"}
    stop_signal: SIGKILL
    secrets: [token]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
    depends_on:
      init: {condition: service_completed_successfully}
  init:
    image: busybox
    command: ["sh", "-c", "sleep 1; echo init-done"]
  tools:
    image: busybox
    profiles: [debug]
    command: ["sleep", "1"]
secrets:
  token: {file: ./token.txt}
""")
    try:
        r = compose(d, project, path, "up", "-d", "--wait")
        assert r.returncode == 0, r.stderr
        assert ids(d, project, "tools") == {}
        err = r.stderr  # the one-shot dependency completed before app was created
        assert err.index(f"Container {project}-init-1  Exited") < err.index(f"Container {project}-app-1  Created")
        state = d.api.get(f"/containers/{project}-app-1/json")["State"]
        assert state["Health"]["Status"] == "healthy"
        logs = ok(compose(d, project, path, "logs", "app"))
        assert f"{project}-app-1  | started-app" in logs and "| s3cret" in logs
        out = ok(compose(d, project, path, "run", "--rm", "-T", "app", "sh", "-c",
                         "cat /run/secrets/token; wget -qO- http://app/etc/hostname"))
        assert "s3cret" in out
        assert len([n for n in ids(d, project) if "-run-" in n]) == 0  # --rm
        assert ok(compose(d, project, path, "config", "--services")).split() == ["app", "init"]
        assert ok(compose(d, project, path, "--profile", "debug", "config", "--services")).split() == ["app", "init", "tools"]
        cfg = ok(compose(d, project, path, "config"))
        assert "NAME: app" in cfg and f"name: {project}" in cfg
        assert compose(d, project, path, "stop").returncode == 0
        assert d.api.get(f"/containers/{project}-app-1/json")["State"]["Running"] is False
        assert compose(d, project, path, "start").returncode == 0
        assert compose(d, project, path, "restart").returncode == 0
        assert d.api.get(f"/containers/{project}-app-1/json")["State"]["Running"] is True
        assert ok(compose(d, project, path, "top")).startswith(f"{project}-app-1")
    finally:
        compose(d, project, path, "down")
    assert ids(d, project) == {}


def test_docker_compose_v1_project_autoscaled_through_labels(d, tmp_path):
    """conchd's autoscaler reads its policy from labels, so a docker-compose 1.29 project
    opts in with ``labels:``: min_replicas 2 on a one-replica service makes conchd add
    ``<project>_web_2`` (v1's naming), which docker-compose then sees and removes."""
    from conch.testing.compose_v1 import compose_v1_or_skip

    v1 = str(compose_v1_or_skip())
    project = f"va{os.urandom(3).hex()}"
    path = tmp_path / "docker-compose.yml"
    path.write_text("""
version: "3.8"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/"]
    stop_signal: SIGKILL
    labels:
      io.conch.autoscale.min_replicas: "2"
      io.conch.autoscale.max_replicas: "3"
      io.conch.autoscale.target_cpu_percent: "50"
      io.conch.autoscale.sync_period: "1"
""")

    def v1run(*args):
        return subprocess.run([v1, "-p", project, "-f", str(path), *args], env=d.env,
                              capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)

    r = v1run("up", "-d")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 30
        while sorted(ids(d, project)) != [f"{project}_web_1", f"{project}_web_2"]:
            assert time.monotonic() < deadline, ids(d, project)
            time.sleep(0.25)
    finally:
        r = v1run("down")
    assert r.returncode == 0, r.stderr
    assert ids(d, project) == {}
