"""conch.compose's loading (no daemon): -f merge, .env and ${VAR:-default}
interpolation, profiles, extends, schema validation with key paths, names/labels/hash."""

from __future__ import annotations

import pytest

from conch.compose import convert
from conch.compose.interpolation import parse_env_file, substitute
from conch.compose.loader import load_project
from conch.errors import InvalidArgument


def _write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize("text,want", [
    ("${A}", "1"), ("$A-x", "1-x"), ("${UNSET:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""), ("${UNSET-dflt}", "dflt"), ("${A:+alt}", "alt"), ("${UNSET:+alt}", ""),
    ("$$A", "$A"), ("${UNSET:-${A}x}", "1x"), ("a$", "a$"),
])
def test_interpolation(text, want):
    assert substitute(text, {"A": "1", "EMPTY": ""}) == want


def test_interpolation_errors():
    with pytest.raises(InvalidArgument, match="required variable X is missing a value: need X"):
        substitute("${X:?need X}", {})
    with pytest.raises(InvalidArgument, match="missing '}'"):
        substitute("${X", {}, where="services.a.image")


def test_env_file_format():
    env = parse_env_file("# c\nexport A=1\nB='x y'\nC=\"q\\nr\"\nD=v # comment\nE\n",
                         where=".env", env={"E": "from-shell"})
    assert env == {"A": "1", "B": "x y", "C": "q\nr", "D": "v", "E": "from-shell"}


def test_merge_env_profiles_extends(tmp_path):
    _write(tmp_path, ".env", "PORT=9090\nTAG=1.2\n")
    _write(tmp_path, "base.yml", "services:\n  common:\n    environment: [X=1]\n    labels: {a: b}\n")
    main = _write(tmp_path, "compose.yaml", """
services:
  web:
    image: "busybox:${TAG}"
    ports: ["${PORT:-80}:80"]
    command: echo one
    environment: {A: "1"}
    extends: {file: base.yml, service: common}
  debug:
    image: busybox
    profiles: [dbg]
  db:
    image: busybox
    volumes: [data:/data]
volumes: {data: {}}
""")
    over = _write(tmp_path, "override.yml", """
services:
  web:
    command: ["echo", "two"]
    environment: {B: "2"}
    ports: ["9091:81"]
""")
    p = load_project(files=[main, over], project_name="My_Proj", environ={})
    assert p.name == "my_proj"
    web = p.services["web"]
    assert web["image"] == "busybox:1.2"
    assert web["command"] == ["echo", "two"]  # replaced, not merged
    assert web["environment"] == {"X": "1", "A": "1", "B": "2"}  # extends + merge
    assert web["labels"] == {"a": "b"}
    assert [(x["published"], x["target"]) for x in web["ports"]] == [("9090", 80), ("9091", 81)]
    assert set(p.services) == {"web", "db"} and set(p.disabled) == {"debug"}
    assert "debug" in load_project(files=[main], profiles=["dbg"], environ={}).services
    # shell environment wins over .env
    assert load_project(files=[main], environ={"TAG": "9"}).services["web"]["image"] == "busybox:9"


def test_bad_files_name_the_key_path(tmp_path):
    bad = _write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    ports: 80\n")
    with pytest.raises(InvalidArgument, match=r"services\.web\.ports"):
        load_project(files=[bad], environ={})
    bad = _write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    bogus: 1\n")
    with pytest.raises(InvalidArgument, match=r"services\.web additional property 'bogus'"):
        load_project(files=[bad], environ={})
    bad = _write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n"
                 "    depends_on: [nope]\n")
    with pytest.raises(InvalidArgument, match="undefined service 'nope'"):
        load_project(files=[bad], environ={})
    bad = _write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n"
                 "    x-autoscale: {min_replicas: 3, max_replicas: 2, target_cpu_percent: 50}\n")
    p = load_project(files=[bad], environ={})
    with pytest.raises(InvalidArgument, match="x-autoscale"):
        convert.create_body(p, "web", 1, image="busybox", net_names={"default": "x_default"})


def test_labels_names_and_config_hash(tmp_path):
    f = _write(tmp_path, "compose.yaml", """
services:
  web:
    image: busybox
    deploy: {replicas: 2, resources: {limits: {cpus: "0.25", memory: 64m}}}
    healthcheck: {test: "true", interval: 2s}
    x-autoscale: {min_replicas: 1, max_replicas: 4, target_cpu_percent: 50, scale_down_window: 30s}
""")
    p = load_project(files=[f], project_name="pr", environ={})
    body = convert.create_body(p, "web", 2, image="busybox", net_names={"default": "pr_default"})
    labels = body["Labels"]
    assert labels["com.docker.compose.project"] == "pr"
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "2"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert labels["io.conch.autoscale.scale_down_window"] == "30"
    assert body["HostConfig"]["NanoCpus"] == 250_000_000
    assert body["HostConfig"]["Memory"] == 64 << 20
    assert body["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert body["Healthcheck"]["Interval"] == 2_000_000_000
    assert convert.container_name("pr", "web", 2) == "pr-web-2"
    # scaling does not change the hash; a real change does
    h = convert.config_hash(p.services["web"])
    assert convert.config_hash({**p.services["web"], "replicas": 5}) == h
    assert convert.config_hash({**p.services["web"], "environment": {"A": "1"}}) != h
