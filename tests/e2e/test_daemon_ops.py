"""Operations a user expects from a daemon (issue 15): daemon.json, the API over TCP with
TLS client verification, Prometheus /metrics, systemd socket activation (fd://)."""

import json
import subprocess

import pytest

from conch.testing.daemon import BIN, Daemon, _unavailable, free_port, ok

pytestmark = pytest.mark.skipif(bool(_unavailable()), reason=_unavailable() or "")


@pytest.fixture
def make_daemon():
    made = []

    def make(**kw):
        d = Daemon(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_daemon_json_applies_log_opts_and_default_ulimits(make_daemon):
    d = make_daemon(config={"log-opts": {"max-size": "1m", "max-file": "2"},
                            "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1234,
                                                           "Hard": 1234}}}).start()
    d.import_busybox()
    out = ok(d.conch("run", "--name", "ulim", "busybox", "sh", "-c", "ulimit -n"))
    assert out.strip() == "1234"
    # a container's own ulimit wins over the daemon's default
    assert ok(d.conch("run", "--rm", "--ulimit", "nofile=99:99", "busybox", "sh", "-c",
                      "ulimit -n")).strip() == "99"
    conf = json.loads(ok(d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", "ulim")))
    assert conf == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}


def test_daemon_json_conflict_and_unknown_key_refused(tmp_path):
    for config, flags, want in (
            ({"bip": "10.98.0.1/24"}, ["--bip", "10.97.0.1/24"],
             "the following directives are specified both as a flag and in the configuration "
             "file: bip: (from flag: 10.97.0.1/24, from file: 10.98.0.1/24)"),
            ({"no-such": True}, [],
             "the following directives don't match any configuration option: no-such")):
        path = tmp_path / "daemon.json"
        path.write_text(json.dumps(config))
        r = subprocess.run([str(BIN / "conchd"), "--config-file", str(path), "--data-root",
                            str(tmp_path / "d"), "--exec-root", str(tmp_path / "e"),
                            "-H", f"unix://{tmp_path}/s", *flags],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert want in r.stderr
        assert not (tmp_path / "d").exists()  # refused before touching anything
