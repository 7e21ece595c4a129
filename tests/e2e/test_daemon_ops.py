"""Operations a user expects from a daemon (issue 15): daemon.json, the API over TCP with
TLS client verification, Prometheus /metrics, systemd socket activation (fd://)."""

import json
import subprocess
import sys

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
    # as dockerd: the default applies at start and is not recorded in the container's HostConfig
    assert ok(d.docker("inspect", "-f", "{{json .HostConfig.Ulimits}}", "ulim")).strip() == "null"
    assert ok(d.conch("start", "-a", "ulim")).strip() == "1234"


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


def _certs(d) -> dict:
    """A throwaway CA, a server cert for 127.0.0.1 and a client cert, both signed by it."""
    t = d / "tls"
    t.mkdir()

    def sh(*argv):
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60, cwd=t)

    sh("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
       "-days", "2", "-subj", "/CN=conch test CA")
    (t / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth\n")
    (t / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        sh("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out",
           f"{name}.csr", "-subj", f"/CN={name}")
        sh("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
           "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext")
    # a client cert from another CA: must be refused as well
    sh("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue-key.pem", "-out",
       "rogue-cert.pem", "-days", "2", "-subj", "/CN=rogue")
    return {k: str(t / f) for k, f in (
        ("ca", "ca.pem"), ("cert", "server-cert.pem"), ("key", "server-key.pem"),
        ("ccert", "client-cert.pem"), ("ckey", "client-key.pem"),
        ("rcert", "rogue-cert.pem"), ("rkey", "rogue-key.pem"))}


def _refused(port, ca, cert=None, key=None) -> bool:
    """A TLS client (optionally with a cert) asks for /_ping: True when it gets no answer."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(4096)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return not data.startswith(b"HTTP/1.1 200")


def test_tcp_tlsverify(make_daemon, monkeypatch):
    import docker

    # requests lets these override docker-py's ca_cert (psf/requests#3829)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)

    port = free_port()
    d = make_daemon()
    c = _certs(d.dir)
    d.extra_args = ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", c["ca"],
                    "--tlscert", c["cert"], "--tlskey", c["key"]]
    d.start()
    host = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in d.env.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = d.env["DOCKER_CONFIG"]
    from conch.testing.daemon import DOCKER

    if DOCKER:  # the docker CLI (client only), where installed
        r = subprocess.run([DOCKER, "--tlsverify", "--tlscacert", c["ca"], "--tlscert",
                            c["ccert"], "--tlskey", c["ckey"], "-H", host, "version",
                            "--format", "{{.Server.Version}}"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip()
        r = subprocess.run([DOCKER, "--tls", "--tlscacert", c["ca"], "-H", host, "version"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode != 0  # no client certificate
    tls = docker.tls.TLSConfig(client_cert=(c["ccert"], c["ckey"]), ca_cert=c["ca"], verify=True)
    client = docker.DockerClient(base_url=host, tls=tls, timeout=30)
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"]
    finally:
        client.close()
    assert not _refused(port, c["ca"], c["ccert"], c["ckey"])
    assert _refused(port, c["ca"])  # no certificate
    assert _refused(port, c["ca"], c["rcert"], c["rkey"])  # signed by another CA


def test_tcp_without_tls_loopback_only(make_daemon, tmp_path):
    import urllib.request

    port = free_port()
    d = make_daemon(extra_args=["-H", f"tcp://127.0.0.1:{port}"]).start()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ping", timeout=20) as resp:
        assert resp.read() == b"OK"
    assert "API is accessible on http://127.0.0.1:%d without encryption" % port in d.log()
    r = subprocess.run([str(BIN / "conchd"), "--config-file", str(d.config_file), "--data-root",
                        str(tmp_path / "d"), "--exec-root", str(tmp_path / "e"),
                        "-H", "tcp://0.0.0.0:2375"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "refusing to serve tcp://0.0.0.0:2375 without TLS" in r.stderr
    assert not (tmp_path / "d").exists()


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_VALUE = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|Inf)|NaN)"


def parse_exposition(text: str) -> dict:
    """Prometheus text format 0.0.4, strictly: {family: {"type", "samples": [(name, labels,
    value)]}}; raises AssertionError on any line that is not in the format."""
    import re

    sample = re.compile(rf"^({_NAME})(\{{(?:{_LABEL}(?:,{_LABEL})*)?\}})? ({_VALUE})$")
    families: dict = {}
    assert text.endswith("\n"), "the exposition ends with a newline"
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(_NAME, name), line
            families.setdefault(name, {"type": None, "samples": []})
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            fam = families.setdefault(name, {"type": None, "samples": []})
            assert fam["type"] is None and not fam["samples"], f"TYPE after samples: {line}"
            fam["type"] = kind
            continue
        m = sample.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in families \
                    and families[name[:-len(suffix)]]["type"] == "histogram":
                base = name[:-len(suffix)]
        assert base in families and families[base]["type"], f"sample before its TYPE: {line}"
        pairs = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        families[base]["samples"].append((name, pairs, float(value.replace("Inf", "inf"))))
    return families


def _scrape(port):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse_exposition(resp.read().decode())


def test_metrics(make_daemon):
    port = free_port()
    d = make_daemon(extra_args=["--metrics-addr", f"127.0.0.1:{port}"]).start()
    d.import_busybox()
    ok(d.conch("run", "--name", "gone", "busybox", "true"))
    cid = ok(d.conch("run", "-d", "busybox", "sleep", "60")).strip()
    assert d.docker("inspect", "no-such-container").returncode == 1
    api = d.api
    for _ in range(3):
        assert api.ping() == "OK"
    m = _scrape(port)
    info = m["engine_daemon_engine_info"]
    assert info["type"] == "gauge" and len(info["samples"]) == 1
    assert info["samples"][0][1]["os_type"] == "linux" and info["samples"][0][2] == 1
    states = {s[1]["state"]: s[2] for s in m["engine_daemon_container_states_containers"]["samples"]}
    assert states == {"running": 1, "paused": 0, "stopped": 1}
    assert m["conch_images"]["samples"][0][2] == 1
    reqs = m["conch_api_requests_total"]
    assert reqs["type"] == "counter"
    by = {(s[1]["method"], s[1]["route"], s[1]["code"]): s[2] for s in reqs["samples"]}
    assert by[("GET", "/_ping", "200")] >= 3
    assert by[("GET", "/containers/{id}/json", "404")] >= 1, by  # a route template, not the id
    assert not any(cid in k[1] for k in by)
    hist = m["conch_api_request_duration_seconds"]
    assert hist["type"] == "histogram"
    series: dict = {}
    for name, labels, value in hist["samples"]:
        key = (labels["method"], labels["route"])
        series.setdefault(key, {"buckets": []})
        if name.endswith("_bucket"):
            series[key]["buckets"].append((float(labels["le"].replace("Inf", "inf")), value))
        else:
            series[key][name.rsplit("_", 1)[1]] = value
    ping = series[("GET", "/_ping")]
    bounds = [b for b, _ in ping["buckets"]]
    counts = [c for _, c in ping["buckets"]]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    assert counts == sorted(counts) and counts[-1] == ping["count"] >= 3 and ping["sum"] > 0
    # counters only grow
    api.ping()
    again = {(s[1]["method"], s[1]["route"], s[1]["code"]): s[2]
             for s in _scrape(port)["conch_api_requests_total"]["samples"]}
    assert again[("GET", "/_ping", "200")] == by[("GET", "/_ping", "200")] + 1
    ok(d.conch("rm", "-f", cid))


def test_socket_activation_fd(make_daemon):
    """As systemd starts conchd.service: the API socket bound beforehand and passed as fd 3
    with LISTEN_FDS=1 and LISTEN_PID=conchd's pid; READY=1 on $NOTIFY_SOCKET; the socket
    stays systemd's (conchd does not remove it when it stops)."""
    import socket

    d = make_daemon()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        listener.bind(str(d.sock))
        listener.listen(64)
        notify_path = d.dir / "notify"
        notify.bind(str(notify_path))
        fd = listener.fileno()
        # what systemd does in the child: our socket moved to fd 3, LISTEN_PID set to the
        # pid that execs conchd, LISTEN_FDS=1
        d.wrap = [sys.executable, "-c",
                  "import os, sys; os.dup2(%d, 3); os.environ.update(LISTEN_PID=str(os.getpid()),"
                  " LISTEN_FDS='1'); os.execv(sys.argv[1], sys.argv[1:])" % fd]
        d.pass_fds = (fd,)
        d.daemon_env = {"NOTIFY_SOCKET": str(notify_path)}
        d.extra_args = ["-H", "fd://"]
        d.own_host = False  # conchd gets no unix:// of its own: the activated socket only
        d.start()
        notify.settimeout(30)
        assert notify.recv(64) == b"READY=1"
        d.import_busybox()
        assert ok(d.conch("run", "--rm", "busybox", "echo", "activated")).strip() == "activated"
        assert "API listening on fd://" in d.log()
        d.stop()
        notify.settimeout(10)
        assert notify.recv(64) == b"STOPPING=1"
        assert d.sock.exists()  # systemd's socket, not conchd's to remove
        d.start()  # a restarted conchd serves the same socket (systemd passes it again)
        assert d.api.ping() == "OK"
    finally:
        listener.close()
        notify.close()


def test_fd_without_activation_refused(tmp_path):
    r = subprocess.run([str(BIN / "conchd"), "--config-file", "/dev/null", "--data-root",
                        str(tmp_path / "d"), "--exec-root", str(tmp_path / "e"), "-H", "fd://"],
                       capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in __import__("os").environ.items()
                            if not k.startswith("LISTEN_")})
    assert r.returncode == 1
    assert "no sockets found via socket activation" in r.stderr
