"""run/create flags -> the Engine API create body (docker/cli's parsing, table-tested)."""

import pytest

from conch.cli import create_body, flag_values, run_flags
from conch.cli.main import Context, UsageError


def build(argv, run=True):
    ctx = Context(None, False, "conch run")
    p = ctx.parser("[OPTIONS] IMAGE [COMMAND] [ARG...]", "x", add_help=False)
    run_flags.add_flags(p, run=run)
    ns = p.parse(argv, stop_after=1)
    return create_body.build(ns, ns.rest, run=run)


def dig(body, path):
    for part in path.split("."):
        body = body[part]
    return body


CASES = [
    (["busybox"], {"Image": "busybox", "Cmd": None, "Entrypoint": None, "Tty": False,
                   "OpenStdin": False, "AttachStdout": True, "AttachStderr": True,
                   "AttachStdin": False, "HostConfig.NetworkMode": "default",
                   "HostConfig.RestartPolicy": {"Name": "no"}, "HostConfig.AutoRemove": False}),
    (["busybox", "sh", "-c", "echo -n hi"], {"Cmd": ["sh", "-c", "echo -n hi"]}),
    (["-d", "busybox", "top"], {"AttachStdout": False, "AttachStderr": False, "Cmd": ["top"]}),
    (["-it", "busybox"], {"Tty": True, "OpenStdin": True, "AttachStdin": True, "StdinOnce": True}),
    (["-dit", "busybox"], {"Tty": True, "OpenStdin": True, "AttachStdin": False, "StdinOnce": False}),
    (["--rm", "--name", "web", "busybox"], {"HostConfig.AutoRemove": True}),
    (["-e", "A=1", "-e", "B=", "busybox"], {"Env": ["A=1", "B="]}),
    (["-w", "/srv", "-u", "1000:1000", "-h", "box", "busybox"],
     {"WorkingDir": "/srv", "User": "1000:1000", "Hostname": "box"}),
    (["--entrypoint", "/bin/sh", "busybox"], {"Entrypoint": ["/bin/sh"]}),
    (["--entrypoint", "", "busybox"], {"Entrypoint": [""]}),
    (["--restart", "on-failure:3", "busybox"],
     {"HostConfig.RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
    (["--restart=unless-stopped", "busybox"], {"HostConfig.RestartPolicy": {"Name": "unless-stopped"}}),
    (["-m", "512m", "--memory-swap", "-1", "busybox"],
     {"HostConfig.Memory": 512 * 1024 * 1024, "HostConfig.MemorySwap": -1}),
    (["--cpus", "1.5", "--cpu-shares", "512", "--cpuset-cpus", "0,1", "--pids-limit", "64", "busybox"],
     {"HostConfig.NanoCpus": 1_500_000_000, "HostConfig.CpuShares": 512,
      "HostConfig.CpusetCpus": "0,1", "HostConfig.PidsLimit": 64}),
    (["--init", "--read-only", "--privileged", "busybox"],
     {"HostConfig.Init": True, "HostConfig.ReadonlyRootfs": True, "HostConfig.Privileged": True}),
    (["--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "busybox"],
     {"HostConfig.CapAdd": ["NET_ADMIN"], "HostConfig.CapDrop": ["ALL"],
      "HostConfig.SecurityOpt": ["no-new-privileges"]}),
    (["--tmpfs", "/run", "--tmpfs", "/tmp:rw,size=64m", "busybox"],
     {"HostConfig.Tmpfs": {"/run": "", "/tmp": "rw,size=64m"}}),
    (["--shm-size", "1g", "busybox"], {"HostConfig.ShmSize": 1 << 30}),
    (["-l", "a=b", "--label", "c", "busybox"], {"Labels": {"a": "b", "c": ""}}),
    (["--stop-signal", "SIGUSR1", "--stop-timeout", "3", "busybox"],
     {"StopSignal": "SIGUSR1", "StopTimeout": 3}),
    (["--ulimit", "nofile=1024:2048", "--ulimit", "nproc=100", "busybox"],
     {"HostConfig.Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                             {"Name": "nproc", "Soft": 100, "Hard": 100}]}),
    (["--health-cmd", "true", "--health-interval", "1m30s", "--health-timeout", "500ms",
      "--health-retries", "2", "--health-start-period", "2s", "busybox"],
     {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000,
                      "Timeout": 500_000_000, "Retries": 2, "StartPeriod": 2_000_000_000}}),
    (["--no-healthcheck", "busybox"], {"Healthcheck": {"Test": ["NONE"]}}),
    (["--network", "net1", "--network-alias", "db", "--ip", "10.1.0.5", "busybox"],
     {"HostConfig.NetworkMode": "net1",
      "NetworkingConfig": {"EndpointsConfig": {"net1": {"Aliases": ["db"],
                                                        "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}}}),
    (["-p", "8080:80", "-p", "127.0.0.1::53/udp", "-p", "9000", "busybox"],
     {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}},
      "HostConfig.PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                  "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                                  "9000/tcp": [{"HostIp": "", "HostPort": ""}]}}),
    (["-P", "--expose", "7000-7001", "busybox"],
     {"HostConfig.PublishAllPorts": True, "ExposedPorts": {"7000/tcp": {}, "7001/tcp": {}}}),
    (["--add-host", "db:10.0.0.2", "--add-host", "gw=host-gateway", "--dns", "1.1.1.1",
      "--dns-search", "example.com", "busybox"],
     {"HostConfig.ExtraHosts": ["db:10.0.0.2", "gw:host-gateway"], "HostConfig.Dns": ["1.1.1.1"],
      "HostConfig.DnsSearch": ["example.com"]}),
    (["-v", "/data:/data:ro", "-v", "named:/var/lib", "-v", "/anon", "busybox"],
     {"HostConfig.Binds": ["/data:/data:ro", "named:/var/lib"], "Volumes": {"/anon": {}}}),
    (["--mount", "type=bind,source=/a,target=/b,readonly", "busybox"],
     {"HostConfig.Mounts": [{"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True}]}),
    (["--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777", "busybox"],
     {"HostConfig.Mounts": [{"Type": "tmpfs", "Target": "/t",
                             "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}]}),
    (["--volumes-from", "c1", "--link", "db:db", "busybox"],
     {"HostConfig.VolumesFrom": ["c1"], "HostConfig.Links": ["db:db"]}),
    (["--log-driver", "json-file", "--log-opt", "max-size=1m", "busybox"],
     {"HostConfig.LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}}),
    (["--sysctl", "net.ipv4.ip_forward=1", "--oom-score-adj", "100", "busybox"],
     {"HostConfig.Sysctls": {"net.ipv4.ip_forward": "1"}, "HostConfig.OomScoreAdj": 100}),
    (["--device", "/dev/fuse", "busybox"],
     {"HostConfig.Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                              "CgroupPermissions": "rwm"}]}),
    (["-a", "stdout", "busybox"], {"AttachStdout": True, "AttachStderr": False, "AttachStdin": False}),
    (["--rm=false", "-t=true", "busybox"], {"HostConfig.AutoRemove": False, "Tty": True}),
]


@pytest.mark.parametrize("argv,expect", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_flags_to_body(argv, expect):
    req = build(argv)
    for path, value in expect.items():
        assert dig(req.body, path) == value, path


def test_name_platform_pull_are_query_params():
    req = build(["--name", "web", "--platform", "linux/amd64", "--pull", "never", "busybox"])
    assert (req.name, req.platform, req.pull) == ("web", "linux/amd64", "never")
    assert "name" not in req.body


def test_flags_after_image_belong_to_the_command():
    req = build(["-d", "busybox", "ls", "-l", "--rm"])
    assert req.body["Cmd"] == ["ls", "-l", "--rm"]
    assert req.body["HostConfig"]["AutoRemove"] is False


def test_env_file_and_passthrough(tmp_path, monkeypatch):
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=1\nFROM_HOST\nMISSING\n")
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("MISSING", raising=False)
    req = build(["--env-file", str(f), "-e", "B=2", "busybox"])
    assert req.body["Env"] == ["A=1", "FROM_HOST=yes", "B=2"]


@pytest.mark.parametrize("text,expect", [
    ("100", 100), ("1b", 1), ("1k", 1024), ("1K", 1024), ("1kb", 1024), ("512m", 512 << 20),
    ("1g", 1 << 30), ("1.5g", int(1.5 * (1 << 30))), ("2 MiB", 2 << 20),
])
def test_ram_in_bytes(text, expect):
    assert flag_values.ram_in_bytes(text) == expect


@pytest.mark.parametrize("text", ["", "abc", "1x", "-1", "1.2.3.4q"])
def test_ram_in_bytes_errors(text):
    with pytest.raises(UsageError):
        flag_values.ram_in_bytes(text)


@pytest.mark.parametrize("text,expect", [("1", 10**9), ("0.5", 5 * 10**8), ("2.25", 2_250_000_000)])
def test_nano_cpus(text, expect):
    assert flag_values.nano_cpus(text) == expect


@pytest.mark.parametrize("text,expect", [
    ("0", 0), ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8), ("1h", 3600 * 10**9),
    ("1.5s", 1_500_000_000),
])
def test_go_duration(text, expect):
    assert flag_values.go_duration(text) == expect


@pytest.mark.parametrize("spec", ["nofile", "bogus=1", "nofile=2:1", "nofile=a"])
def test_ulimit_errors(spec):
    with pytest.raises(UsageError):
        flag_values.ulimit(spec)


def test_publish_ranges_and_ipv6():
    exposed, bindings = flag_values.publish("8000-8001:80-81")
    assert bindings == {"80/tcp": [{"HostIp": "", "HostPort": "8000"}],
                        "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}
    _, bindings = flag_values.publish("[::1]:8080:80")
    assert bindings == {"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}
    _, bindings = flag_values.publish("8000-8010:80")
    assert bindings == {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}
    with pytest.raises(UsageError):
        flag_values.publish("80:99999")


@pytest.mark.parametrize("argv,message", [
    (["--rm", "--restart", "always", "busybox"], "Conflicting options: --restart and --rm"),
    (["-d", "-a", "stdout", "busybox"], "Conflicting options: -a and -d"),
    (["--no-healthcheck", "--health-cmd", "x", "busybox"], "conflicts with --health-*"),
    (["--restart", "sometimes", "busybox"], "invalid restart policy"),
    (["--restart", "always:3", "busybox"], "maximum retry count"),
    (["--add-host", "nohost", "busybox"], "bad format for add-host"),
    (["--mount", "type=bind,source=/a", "busybox"], "target is required"),
])
def test_invalid_combinations(argv, message):
    with pytest.raises(UsageError) as exc:
        build(argv)
    assert message in str(exc.value)
    assert exc.value.status == 125


def test_unknown_flag_is_a_usage_error():
    with pytest.raises(UsageError) as exc:
        build(["--bogus", "busybox"])
    assert str(exc.value) == "unknown flag: --bogus"
    assert exc.value.status == 125
