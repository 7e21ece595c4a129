"""conchd's daemon.json (conch.daemon.config): docker's keys, dockerd's refusals."""

import json

import pytest

from conch.daemon import main


def parse(tmp_path, config, *flags):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(config))
    return main.parse(["--config-file", str(path), *flags])


def test_docker_keys_apply(tmp_path):
    args = parse(tmp_path, {
        "data-root": "/srv/conch", "hosts": ["unix:///tmp/x.sock", "tcp://127.0.0.1:2376"],
        "insecure-registries": ["reg.local:5000"], "bip": "10.99.0.1/24",
        "log-opts": {"max-size": "5m", "max-file": "2"},
        "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}},
        "runtimes": {"mine": {"path": "/usr/bin/true"}}, "default-runtime": "runc",
        "tlsverify": True, "tlscacert": "/c/ca.pem", "metrics-addr": "127.0.0.1:9323",
        "log-level": "debug"})
    assert args.data_root == "/srv/conch"
    assert args.host == ["unix:///tmp/x.sock", "tcp://127.0.0.1:2376"]
    assert args.insecure_registry == ["reg.local:5000"]
    assert args.bip == "10.99.0.1/24" and args.runtime == "runc" and args.tlsverify is True
    assert main.log_opts(args.log_opt) == {"max-size": "5m", "max-file": "2"}
    assert main.default_ulimits(args.default_ulimit) == (("nofile", 1024, 2048),)
    assert args.add_runtime == ["mine=/usr/bin/true"]
    assert args.metrics_addr == "127.0.0.1:9323" and args.log_level == "debug"


def test_flags_only_defaults(tmp_path):
    args = parse(tmp_path, {}, "--data-root", "/d")
    assert args.data_root == "/d" and args.host == [main.DEFAULT_HOST] and args.tlsverify is False


def test_flag_and_file_is_an_error_naming_both(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(tmp_path, {"data-root": "/b", "hosts": ["unix:///y"], "bip": "10.1.0.1/24"},
              "--data-root", "/a", "-H", "unix:///x")
    msg = str(exc.value.code)
    assert "the following directives are specified both as a flag and in the configuration " \
           "file: " in msg
    assert "data-root: (from flag: /a, from file: /b)" in msg
    assert "hosts: (from flag: [unix:///x], from file: [unix:///y])" in msg
    assert "bip" not in msg.split("file: ", 1)[1].replace("from file", "")


def test_unknown_keys_refused(tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse(tmp_path, {"data-root": "/b", "no-such-thing": 1, "graph": "/x"})
    assert ("the following directives don't match any configuration option: no-such-thing, graph"
            in str(exc.value.code))


def test_bad_values_refused(tmp_path):
    for bad in ({"hosts": "unix:///x"}, {"tlsverify": "yes"}, {"log-level": "loud"},
                {"runtimes": {"x": {"path": "/p", "runtimeArgs": ["--a"]}}},
                {"default-ulimits": {"nofile": {"Soft": "1"}}}):
        with pytest.raises(SystemExit):
            parse(tmp_path, bad)


def test_missing_file(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as exc:  # named explicitly: must exist
        main.parse(["--config-file", str(tmp_path / "nope.json")])
    assert "no such file or directory" in str(exc.value.code)
    from conch.daemon import config

    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", str(tmp_path / "nope.json"))
    assert main.parse([]).data_root == main.DEFAULT_DATA_ROOT  # the default path may be absent


def test_invalid_json(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main.parse(["--config-file", str(path)])
    assert f"unable to configure the Docker daemon with file {path}" in str(exc.value.code)


def test_default_ulimit_flag():
    assert main.default_ulimits(["nproc=10"]) == (("nproc", 10, 10),)
    with pytest.raises(SystemExit):
        main.default_ulimits(["nproc=10:5"])
