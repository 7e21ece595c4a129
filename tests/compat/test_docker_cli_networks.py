"""Issue 5 "Proof", networks through the real ``docker`` CLI against conchd: network
create/ls/inspect/rm, containers that ping each other by name, connect/disconnect live,
--link, a published port serving a bind-mounted site, and a taken port. Skipped, with
the reason, when the docker CLI is not installed. Traffic: only to containers created
here and to 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import urllib.request

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture, free_subnet, ok

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def rede(d):
    name = "minha-rede"
    ok(d.docker("network", "create", "-d", "bridge", "--subnet", free_subnet(), name))
    yield name
    ids = d.container_ids()
    if ids:
        d.docker("rm", "-f", *ids)
    d.docker("network", "rm", name)


def test_network_ls_and_inspect(d, rede):
    lines = ok(d.docker("network", "ls")).splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    names = {line.split()[1]: line.split()[2] for line in lines[1:]}
    assert names == {"bridge": "bridge", "host": "host", "none": "null", rede: "bridge"}
    assert ok(d.docker("network", "ls", "-q", "--filter", f"name={rede}")).strip()
    (info,) = json.loads(ok(d.docker("network", "inspect", rede)))
    assert info["Driver"] == "bridge" and info["IPAM"]["Driver"] == "default"
    assert ok(d.docker("network", "inspect", "-f", "{{.Scope}} {{.Internal}}", rede)) == "local false\n"
    p = d.docker("network", "create", rede)
    assert p.returncode != 0 and "already exists" in p.stderr


def test_ping_by_name_and_connect_disconnect(d, rede):
    ok(d.docker("run", "-d", "--network", rede, "--name", "meu-container", "busybox", "sleep", "300"))
    ok(d.docker("run", "-d", "--network", rede, "--name", "outro", "busybox", "sleep", "300"))
    ok(d.docker("exec", "meu-container", "ping", "-c1", "-W2", "outro"))
    ok(d.docker("run", "-d", "--name", "fora", "busybox", "sleep", "300"))
    ok(d.docker("network", "connect", rede, "fora"))
    assert "eth1" in ok(d.docker("exec", "fora", "ip", "-o", "link"))
    ok(d.docker("exec", "outro", "ping", "-c1", "-W2", "fora"))
    (info,) = json.loads(ok(d.docker("network", "inspect", rede)))
    assert len(info["Containers"]) == 3
    ok(d.docker("network", "disconnect", rede, "fora"))
    assert "eth1" not in ok(d.docker("exec", "fora", "ip", "-o", "link"))
    ip = ok(d.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "fora")).strip()
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(d.bip, strict=False)


def test_link(d):
    ok(d.docker("run", "-d", "--name", "container1", "busybox", "sleep", "300"))
    ok(d.docker("run", "--rm", "--link", "container1", "--name", "container2", "busybox",
                 "ping", "-c1", "-W2", "container1"))


def test_published_site_and_taken_port(d, tmp_path):
    (tmp_path / "primeiro-teste.html").write_text("ola\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok(d.docker("run", "-d", "--name", "site", "-p", f"{port}:80", "-v", f"{tmp_path}:/www",
                 "busybox", "httpd", "-f", "-p", "80", "-h", "/www"))
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/primeiro-teste.html", timeout=2) as r:
                assert r.read() == b"ola\n"
                break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert ok(d.docker("port", "site", "80")).strip() == f"0.0.0.0:{port}"
    assert f"0.0.0.0:{port}->80/tcp" in ok(d.docker("ps", "--filter", "name=site"))
    p = d.docker("run", "--rm", "-p", f"{port}:80", "busybox", "true")
    assert p.returncode == 125 and "already allocated" in p.stderr
