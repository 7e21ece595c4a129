"""Issue 10 proof: docker-compose 1.29 (the Python one, from PyPI, in a cached throwaway
venv: ``conch.testing.compose_v1``) drives conchd through a project's life: ``up -d
--build``, ``up -d --force-recreate`` (compose 1.29 reads the old image's
``ContainerConfig`` here, so the API version gates matter), ``up -d --scale web=3``,
``down -v``; the project has a build, a user network, a named volume and a published
port, and nothing of it is left after ``down``.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from conch.testing.compose_v1 import ENV as COMPOSE_ENV, compose_v1_or_skip
from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")

PROJECT = "c1proj"

COMPOSE_YML = """\
version: "3.8"
services:
  web:
    build: .
    image: c1proj-web:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports:
      - "127.0.0.1::80"
    networks: [front]
    volumes:
      - data:/data
networks:
  front: {}
volumes:
  data: {}
"""

DOCKERFILE = """\
FROM busybox:latest
RUN mkdir -p /www && echo compose-one > /www/index.html
"""


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _compose(d, binary, project_dir, *args, timeout=180) -> subprocess.CompletedProcess:
    env = dict(d.env, **COMPOSE_ENV, COMPOSE_PROJECT_NAME=PROJECT, COMPOSE_INTERACTIVE_NO_CLI="1",
               DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")
    proc = subprocess.run([str(binary), "--ansi", "never", *args], cwd=project_dir, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout)
    assert proc.returncode == 0, f"docker-compose {' '.join(args)}: {proc.returncode}\n{proc.stderr}\n{proc.stdout}"
    return proc


def _project_containers(d) -> list[dict]:
    filters = json.dumps({"label": [f"com.docker.compose.project={PROJECT}"]})
    out = d.api.request("GET", "/containers/json", params={"all": "1", "filters": filters})
    return json.loads(out.read())


def _get(port: int) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=3) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _ports(containers: list[dict]) -> list[int]:
    return sorted(p["PublicPort"] for c in containers for p in c["Ports"] if p.get("PublicPort"))


def test_compose_v1_lifecycle(d, tmp_path):
    binary = compose_v1_or_skip()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_YML)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    try:
        _compose(d, binary, tmp_path, "up", "-d", "--build")
        first = _project_containers(d)
        assert [c["State"] for c in first] == ["running"]
        assert _get(_ports(first)[0]).strip() == "compose-one"

        _compose(d, binary, tmp_path, "up", "-d", "--force-recreate")
        second = _project_containers(d)
        assert [c["State"] for c in second] == ["running"]
        assert second[0]["Id"] != first[0]["Id"]
        assert _get(_ports(second)[0]).strip() == "compose-one"

        _compose(d, binary, tmp_path, "up", "-d", "--scale", "web=3")
        third = _project_containers(d)
        assert sorted(c["State"] for c in third) == ["running"] * 3
        ports = _ports(third)
        assert len(set(ports)) == 3
        for port in ports:
            assert _get(port).strip() == "compose-one"
        # the named volume and the user network are the project's, shared by the replicas
        inspect = json.loads(d.api.request("GET", f"/containers/{third[0]['Id']}/json").read())
        assert f"{PROJECT}_front" in inspect["NetworkSettings"]["Networks"]
        assert [m["Name"] for m in inspect["Mounts"]] == [f"{PROJECT}_data"]

        _compose(d, binary, tmp_path, "down", "-v")
        assert _project_containers(d) == []
        networks = json.loads(d.api.request("GET", "/networks").read())
        assert not [n["Name"] for n in networks if n["Name"].startswith(PROJECT)]
        volumes = json.loads(d.api.request("GET", "/volumes").read())["Volumes"] or []
        assert not [v["Name"] for v in volumes if v["Name"].startswith(PROJECT)]
    finally:
        subprocess.run([str(binary), "--ansi", "never", "down", "-v", "--remove-orphans"], cwd=tmp_path,
                       env=dict(d.env, **COMPOSE_ENV, COMPOSE_PROJECT_NAME=PROJECT), capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=120)
        d.docker("rmi", "-f", "c1proj-web:latest")
        d.docker("image", "prune", "-f")
