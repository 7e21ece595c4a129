"""One image whose config sets every field ``run`` honours, loaded with ``conch load``
and run once: each field must take effect in that one container.

The image is written here as a ``docker save`` tar (``manifest.json`` + config + two
layers): the busybox rootfs (:func:`conch.testing.daemon.busybox_tar`) and a layer with
the entrypoint script, the working directory and the volume's seed content. Fields and
how each is proven:

    Env           the script prints $GREETING and $PATH; inspect Config.Env
    Entrypoint    argv0 is the script run by sh; inspect Config.Entrypoint
    Cmd           the arguments (one with a space) arrive as they are
    WorkingDir    the script prints $(pwd)
    User          ``conch`` (uid 1000) by name: id -u/-g, and HOME from /etc/passwd
    Volumes       an anonymous volume at /data (seeded from the image, writable by the user),
                  listed in inspect Mounts and in ``conch volume ls``; ``rm -v`` removes it
    ExposedPorts  inspect Config.ExposedPorts
    Labels        inspect Config.Labels
    StopSignal    ``conch stop`` sends SIGUSR1: the script traps it and exits 42
    Healthcheck   State.Health reaches "healthy" once the script touched /tmp/ready
    history       ``conch history --no-trunc`` lists every entry, empty layers too
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
import time

import pytest

from conch.testing.daemon import busybox_tar, clean_after, daemon_fixture, ok

daemon = daemon_fixture()
IMAGE = "conch-e2e/config-fields:all"

SCRIPT = b"""\
trap 'echo stop-signal=USR1; exit 42' USR1
trap 'echo stop-signal=TERM; exit 43' TERM
echo "argv0=$0"
for a in "$@"; do echo "arg=$a"; done
echo "cwd=$(pwd)"
echo "id=$(id -u):$(id -g)"
echo "home=$HOME"
echo "greeting=$GREETING"
echo "path=$PATH"
echo "seed=$(cat /data/seed)"
echo written > /data/by-container && echo volume-writable=yes
touch /tmp/ready
echo ready
while :; do sleep 0.1; done
"""

HISTORY = [
    {"created": "2024-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) ADD file:busybox in / ",
     "comment": "base layer"},
    {"created": "2024-01-02T03:04:06Z", "created_by": "/bin/sh -c #(nop)  ENV GREETING=hello world",
     "empty_layer": True},
    {"created": "2024-01-02T03:04:07Z", "created_by": "COPY entry.sh /entry.sh # buildkit",
     "comment": "buildkit.dockerfile.v0"},
    {"created": "2024-01-02T03:04:08Z", "created_by": '/bin/sh -c #(nop)  STOPSIGNAL SIGUSR1',
     "empty_layer": True},
]

CONFIG = {
    "Env": ["PATH=/usr/local/bin:/bin", "GREETING=hello world"],
    "Entrypoint": ["/bin/sh", "/entry.sh"],
    "Cmd": ["first arg", "second"],
    "WorkingDir": "/srv/app",
    "User": "conch",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"org.example.role": "config-fields", "org.example.empty": ""},
    "StopSignal": "SIGUSR1",
    "Healthcheck": {"Test": ["CMD-SHELL", "test -f /tmp/ready"], "Interval": 200_000_000,
                    "Timeout": 2_000_000_000, "StartPeriod": 0, "Retries": 3},
}


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(name: str, *, data: bytes | None = None, mode: int = 0o644, uid: int = 0) -> tuple:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = uid
    info.mtime = 1704164645
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = len(data), mode
    return info, data


def app_layer() -> bytes:
    return _tar([_entry("entry.sh", data=SCRIPT, mode=0o755),
                 _entry("srv"), _entry("srv/app"),
                 _entry("data", uid=1000), _entry("data/seed", data=b"from-image\n", uid=1000)])


def docker_save_tar() -> bytes:
    """A docker-save tar of the image (legacy ``manifest.json`` layout)."""
    layers = [busybox_tar().read_bytes(), app_layer()]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {"architecture": arch, "os": "linux", "created": "2024-01-02T03:04:08Z",
              "author": "conch e2e", "config": CONFIG, "history": HISTORY,
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]}}
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [IMAGE],
                 "Layers": [f"layer{i}/layer.tar" for i in range(len(layers))]}]
    members = [_entry(config_name, data=config_bytes),
               _entry("manifest.json", data=json.dumps(manifest).encode())]
    for i, layer in enumerate(layers):
        members += [_entry(f"layer{i}"), _entry(f"layer{i}/layer.tar", data=layer)]
    return _tar(members)


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _inspect(d, *args: str) -> dict:
    return json.loads(ok(d.conch(*args)))[0]


def _wait(what: str, probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_every_config_field_takes_effect(d, tmp_path):
    archive = tmp_path / "image.tar"
    archive.write_bytes(docker_save_tar())
    assert f"Loaded image: {IMAGE}" in ok(d.conch("load", "-i", archive))
    name = "config-fields"
    cid = ok(d.conch("run", "-d", "--name", name, IMAGE)).strip()
    try:
        _check_running(d, name)
        _check_inspect(d, name)
        _check_history(d)
        # StopSignal: `conch stop` sends SIGUSR1 (not SIGTERM): the trap exits 42
        started = time.monotonic()
        ok(d.conch("stop", "-t", "20", name))
        assert time.monotonic() - started < 15, "stop waited for the kill timeout"
        state = _inspect(d, "inspect", name)["State"]
        logs = ok(d.conch("logs", name))
        assert state["ExitCode"] == 42 and "stop-signal=USR1" in logs, (state, logs)
        volume = _volume_of(d, name)
        ok(d.conch("rm", "-v", name))
        ls = ok(d.conch("volume", "ls", "-q")).split()
        assert volume not in ls, "rm -v left the anonymous volume"
    finally:
        d.conch("rm", "-fv", cid)
        d.conch("rmi", IMAGE)


def _check_running(d, name: str) -> None:
    logs = _wait("the script's report", lambda: (out := d.conch("logs", name).stdout)
                 and "ready" in out and out)
    lines = logs.splitlines()
    expected = ["argv0=/entry.sh", "arg=first arg", "arg=second", "cwd=/srv/app", "id=1000:1000",
                "home=/home/conch", "greeting=hello world", "path=/usr/local/bin:/bin",
                "seed=from-image", "volume-writable=yes", "ready"]
    assert lines == expected, logs
    health = _wait("healthy", lambda: (h := _inspect(d, "inspect", name)["State"].get("Health"))
                   and h["Status"] == "healthy" and h)
    assert health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0, health


def _volume_of(d, name: str) -> str:
    mounts = _inspect(d, "inspect", name)["Mounts"]
    assert len(mounts) == 1, mounts
    return mounts[0]["Name"]


def _check_inspect(d, name: str) -> None:
    info = _inspect(d, "inspect", name)
    cfg = info["Config"]
    assert cfg["Entrypoint"] == CONFIG["Entrypoint"] and cfg["Cmd"] == CONFIG["Cmd"]
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "conch"
    assert "GREETING=hello world" in cfg["Env"] and "PATH=/usr/local/bin:/bin" in cfg["Env"]
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == CONFIG["Labels"]
    assert cfg["StopSignal"] == "SIGUSR1"
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["Healthcheck"]["Test"] == CONFIG["Healthcheck"]["Test"]
    assert cfg["Image"] == IMAGE
    (mount,) = info["Mounts"]
    assert mount["Type"] == "volume" and mount["Destination"] == "/data" and mount["RW"] is True
    assert len(mount["Name"]) == 64 and mount["Driver"] == "local", mount
    assert mount["Name"] in ok(d.conch("volume", "ls", "-q")).split()
    image = _inspect(d, "image", "inspect", IMAGE)
    assert image["Config"]["StopSignal"] == "SIGUSR1" and image["Author"] == "conch e2e"


def _check_history(d) -> None:
    out = ok(d.conch("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", IMAGE))
    rows = out.strip().splitlines()
    # newest first, as docker prints it
    expected = [f"{h['created_by']}|{h.get('comment', '')}" for h in reversed(HISTORY)]
    assert rows == expected, out
    table = ok(d.conch("history", IMAGE))
    assert table.splitlines()[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"], table
    assert len(table.strip().splitlines()) == len(HISTORY) + 1, table
