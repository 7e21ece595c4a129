"""``system df`` end to end: images (with the containers that use them), containers
(their writable layer), volumes, build cache, and conch's logs figure -- through the
API, the conch CLI and (when installed) the docker CLI."""

from __future__ import annotations

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

daemon = daemon_fixture("module")
WRITTEN = 300_000  # bytes a container writes into its rootfs
LOGGED = 50_000  # bytes of output it logs


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def workload(d):
    """One stopped container that wrote a file and logged, one running container with a
    named volume. Removed afterwards (volume too)."""
    d.conch("volume", "create", "df-vol", check=True)
    script = (f"head -c {WRITTEN} /dev/zero > /big && "
              f"head -c {LOGGED // 2} /dev/zero | tr '\\0' x && echo")
    stopped = d.conch("run", "--name", "df-stopped", "busybox", "sh", "-c", script,
                      check=True)
    assert len(stopped.stdout) > LOGGED // 2
    running = d.conch("run", "-d", "--name", "df-running", "-v", "df-vol:/data", "busybox",
                      "sh", "-c", "echo hello > /data/f; exec sleep 300", check=True).stdout.strip()
    yield running
    d.conch("rm", "-f", "df-stopped", "df-running")
    d.conch("volume", "rm", "df-vol")


def test_api_shape_and_numbers(d, workload):
    df = d.api.get("/system/df")
    assert set(df) >= {"LayersSize", "Images", "Containers", "Volumes", "BuildCache", "LogsSize"}
    busybox = [i for i in df["Images"] if "busybox:latest" in i["RepoTags"]][0]
    assert busybox["Containers"] == 2 and busybox["Size"] > 0 and busybox["SharedSize"] == 0
    assert df["LayersSize"] >= busybox["Size"]
    by_name = {c["Names"][0]: c for c in df["Containers"]}
    stopped, running = by_name["/df-stopped"], by_name["/df-running"]
    assert stopped["State"] == "exited" and running["State"] == "running"
    assert WRITTEN <= stopped["SizeRw"] < WRITTEN + 65536
    assert stopped["SizeRootFs"] == stopped["SizeRw"] + busybox["Size"]
    assert stopped["LogsSize"] > LOGGED // 2  # json-file framing makes it larger
    assert df["LogsSize"] >= stopped["LogsSize"] + running["LogsSize"]
    vol = [v for v in df["Volumes"] if v["Name"] == "df-vol"][0]
    assert vol["UsageData"]["RefCount"] == 1 and vol["UsageData"]["Size"] > 0
    assert df["BuildCache"] == []


def _rows(out: str) -> dict[str, list[str]]:
    """TYPE -> the other columns (sizes keep their unit: "1.2MB")."""
    rows = {}
    for line in out.strip().splitlines()[1:]:
        cells = [c for c in line.split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


def test_conch_cli_shows_logs_row(d, workload):
    rows = _rows(d.conch("system", "df", check=True).stdout)
    assert list(rows) == ["Images", "Containers", "Local Volumes", "Build Cache", "Container Logs"]
    assert rows["Images"][:2] == ["1", "1"]  # busybox, used by containers
    assert rows["Containers"][:2] == ["2", "1"]  # two, one running
    assert rows["Local Volumes"][:2] == ["1", "1"]
    assert rows["Container Logs"][0] == "2" and rows["Container Logs"][2] != "0B"
    assert d.conch("system", "df", "--format", "{{.Type}}={{.TotalCount}}", check=True).stdout \
        .splitlines() == ["Images=1", "Containers=2", "Local Volumes=1", "Build Cache=0",
                     "Container Logs=2"]


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_cli_system_df(d, workload):
    rows = _rows(d.docker("system", "df", check=True).stdout)
    assert list(rows) == ["Images", "Containers", "Local Volumes", "Build Cache"]
    assert rows["Images"][:2] == ["1", "1"] and rows["Containers"][:2] == ["2", "1"]
    verbose = d.docker("system", "df", "-v", check=True).stdout
    assert "df-stopped" in verbose and "df-vol" in verbose and "busybox" in verbose
