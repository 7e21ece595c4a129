"""Networks end to end (conch CLI -> conchd -> kernel), replaying the seed's lesson with
busybox: the default bridge, user networks where containers find each other by name,
connect/disconnect live, none/host, --link, published ports (the httpd site), isolation,
--internal, a crash and restart, and no leftovers.

Safety: the daemon's default bridge is a random 10.x.y.0/24 (conch.testing.daemon), user
networks get explicit 10.x subnets chosen free here; traffic goes only to containers
these tests create and to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import time
import urllib.request

import pytest

from conch.testing.daemon import clean_after, daemon_fixture, free_port, free_subnet, ok

pytestmark = pytest.mark.root

daemon = daemon_fixture()


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _run_d(d, *args) -> str:
    return ok(d.conch("run", "-d", *args)).strip()


def _sh(d, container: str, script: str):
    return d.conch("exec", container, "sh", "-c", script)


def _fetch(url: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def net(d):
    """A user network (`network create -d bridge minha-rede`), removed afterwards."""
    made = []

    def make(name="minha-rede", *extra):
        ok(d.conch("network", "create", "-d", "bridge", "--subnet", free_subnet(), *extra, name))
        made.append(name)
        return name

    yield make
    ids = d.container_ids()
    if ids:
        d.conch("rm", "-f", *ids, timeout=120)
    for name in made:
        d.conch("network", "rm", name)


def test_default_networks_listed(d):
    out = ok(d.conch("network", "ls"))
    lines = out.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {line.split()[1]: line.split()[2:] for line in lines[1:]}
    assert rows["bridge"] == ["bridge", "local"]
    assert rows["host"] == ["host", "local"]
    assert rows["none"] == ["null", "local"]


def test_default_bridge_address_route_and_etc_files(d):
    gw = d.bip.split("/")[0]
    out = ok(d.conch("run", "--rm", "-h", "web1", "--add-host", "db.local:10.9.9.9",
                      "--dns-search", "example.test", "busybox", "sh", "-c",
                      f"ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; "
                      f"hostname; ping -c1 -W2 {gw} >/dev/null && echo GW-OK"))
    subnet = ipaddress.ip_network(d.bip, strict=False)
    addr = out.split("inet ")[1].split()[0]
    assert ipaddress.ip_interface(addr).ip in subnet
    assert f"default via {gw} dev eth0" in out
    assert "10.9.9.9\tdb.local" in out
    assert f"{addr.split('/')[0]}\tweb1" in out
    assert "search example.test" in out
    assert "nameserver 127." not in out
    assert "GW-OK" in out and "web1" in out


def test_dns_flag_written(d):
    out = ok(d.conch("run", "--rm", "--dns", "10.1.2.3", "--dns-option", "ndots:2", "busybox",
                      "cat", "/etc/resolv.conf"))
    assert "nameserver 10.1.2.3" in out and "options ndots:2" in out


def test_user_network_ping_by_name_and_inspect(d, net):
    name = net()
    a = _run_d(d, "--network", name, "--name", "meu-container", "busybox", "sleep", "300")
    b = _run_d(d, "--network", name, "--name", "other", "--network-alias", "apelido", "busybox",
               "sleep", "300")
    ok(_sh(d, "meu-container", "ping -c1 -W2 other"))
    ok(_sh(d, "other", "ping -c1 -W2 meu-container"))
    ok(_sh(d, "meu-container", f"ping -c1 -W2 apelido && ping -c1 -W2 {b[:12]}"))
    (info,) = json.loads(ok(d.conch("network", "inspect", name)))
    assert info["Name"] == name and info["Driver"] == "bridge" and info["Scope"] == "local"
    assert info["IPAM"]["Config"][0]["Subnet"] and info["IPAM"]["Config"][0]["Gateway"]
    assert set(info["Containers"]) == {a, b}
    ep = info["Containers"][a]
    assert ep["Name"] == "meu-container" and ep["IPv4Address"].endswith("/24")
    assert ep["MacAddress"].startswith("02:42:")
    (c,) = json.loads(ok(d.conch("inspect", a)))
    n = c["NetworkSettings"]["Networks"][name]
    assert n["NetworkID"] == info["Id"] and n["IPAddress"] == ep["IPv4Address"].split("/")[0]
    assert n["MacAddress"] == ep["MacAddress"] and "meu-container" in n["DNSNames"]
    assert c["HostConfig"]["NetworkMode"] == name
    assert c["NetworkSettings"]["SandboxKey"]
    # in use: refused like docker (403)
    p = d.conch("network", "rm", name)
    assert p.returncode != 0 and "has active endpoints" in p.stderr


def test_connect_disconnect_live(d, net):
    name = net()
    _run_d(d, "--network", name, "--name", "server", "busybox", "sleep", "300")
    _run_d(d, "--name", "meu-container", "busybox", "sleep", "300")
    assert "eth1" not in ok(_sh(d, "meu-container", "ip -o link"))
    ok(d.conch("network", "connect", "--alias", "cliente", name, "meu-container"))
    assert "eth1" in ok(_sh(d, "meu-container", "ip -o link"))
    ok(_sh(d, "meu-container", "ping -c1 -W2 server"))
    ok(_sh(d, "server", "ping -c1 -W2 cliente"))
    (c,) = json.loads(ok(d.conch("inspect", "meu-container")))
    assert set(c["NetworkSettings"]["Networks"]) == {"bridge", name}
    ok(d.conch("network", "disconnect", name, "meu-container"))
    assert "eth1" not in ok(_sh(d, "meu-container", "ip -o link"))
    assert _sh(d, "server", "ping -c1 -W1 cliente").returncode != 0
    (c,) = json.loads(ok(d.conch("inspect", "meu-container")))
    assert set(c["NetworkSettings"]["Networks"]) == {"bridge"}


def test_disconnected_from_its_only_network_then_connected_again(d, net):
    """A container disconnected from the network it was run on has no network: connect
    puts it back (it did not, once: the run's plan was read again), and a restart
    without any network gives it loopback only, as docker."""
    name = net()
    _run_d(d, "--network", name, "--name", "solo", "busybox", "sleep", "300")
    ok(d.conch("network", "disconnect", name, "solo"))
    (c,) = json.loads(ok(d.conch("inspect", "solo")))
    assert c["NetworkSettings"]["Networks"] == {}
    ok(d.conch("network", "connect", name, "solo"))
    assert "eth0" in ok(_sh(d, "solo", "ls /sys/class/net"))
    ok(d.conch("network", "disconnect", name, "solo"))
    ok(d.conch("restart", "-t", "0", "solo"))
    assert ok(_sh(d, "solo", "ls /sys/class/net")).split() == ["lo"]
    (c,) = json.loads(ok(d.conch("inspect", "solo")))
    assert c["NetworkSettings"]["Networks"] == {}


def test_none_has_only_loopback(d):
    out = ok(d.conch("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"))
    assert out.split() == ["lo"]


def test_host_sees_host_interfaces(d):
    out = ok(d.conch("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"))
    assert set(out.split()) >= set(os.listdir("/sys/class/net")) & {"lo", "eth0", d.bridge}
    assert d.bridge in out.split()


def test_link_on_default_bridge(d):
    _run_d(d, "--name", "container1", "busybox", "sleep", "300")
    out = ok(d.conch("run", "--rm", "--link", "container1", "--name", "container2", "busybox",
                      "sh", "-c", "ping -c1 -W2 container1 && cat /etc/hosts"))
    assert "container1" in out
    # without --link there is no name on the default bridge
    assert d.conch("run", "--rm", "busybox", "ping", "-c1", "-W1", "container1").returncode != 0


def test_link_environment_variables(d):
    """docker's legacy --link variables (moby daemon/links/links.go): the link's name,
    its exposed ports (the lowest as <ALIAS>_PORT) and its environment but HOME/PATH."""
    _run_d(d, "--name", "lk-db", "--expose", "80", "--expose", "5432/udp", "-e", "FOO=bar",
           "busybox", "sleep", "300")
    ip = json.loads(ok(d.conch("inspect", "lk-db")))[0]["NetworkSettings"]["IPAddress"]
    env = dict(line.split("=", 1) for line in ok(d.conch(
        "run", "--rm", "--name", "lk-web", "--link", "lk-db:db-1", "busybox", "env")).splitlines())
    assert env["DB_1_NAME"] == "/lk-web/db-1"
    assert env["DB_1_PORT"] == f"tcp://{ip}:80"
    assert env["DB_1_PORT_80_TCP"] == f"tcp://{ip}:80"
    assert (env["DB_1_PORT_80_TCP_ADDR"], env["DB_1_PORT_80_TCP_PORT"],
            env["DB_1_PORT_80_TCP_PROTO"]) == (ip, "80", "tcp")
    assert env["DB_1_PORT_5432_UDP"] == f"udp://{ip}:5432"
    assert env["DB_1_ENV_FOO"] == "bar" and "DB_1_ENV_PATH" not in env


def test_published_port_serves_bind_mounted_site(d, tmp_path):
    site = tmp_path / "www"
    site.mkdir()
    (site / "primeiro-teste.html").write_text("<h1>primeiro teste</h1>\n")
    port = 8881 if _port_free(8881) else free_port()
    _run_d(d, "--name", "site", "-p", f"{port}:80", "-v", f"{site}:/www", "busybox",
           "httpd", "-f", "-p", "80", "-h", "/www")
    url = f"http://127.0.0.1:{port}/primeiro-teste.html"
    assert "primeiro teste" in _fetch(url)
    (site / "primeiro-teste.html").write_text("<h1>mudou</h1>\n")
    assert "mudou" in _fetch(url)
    assert ok(d.conch("port", "site")).strip() == f"80/tcp -> 0.0.0.0:{port}"
    ps = ok(d.conch("ps", "--format", "{{.Ports}}", "--filter", "name=site"))
    assert f"0.0.0.0:{port}->80/tcp" in ps
    # the same port again: a clear error, nothing left behind
    p = d.conch("run", "-d", "-p", f"{port}:80", "busybox", "sleep", "30")
    assert p.returncode != 0 and "already allocated" in p.stderr


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def test_publish_random_and_all(d):
    _run_d(d, "--name", "rand", "-p", "80", "--expose", "81", "-P", "busybox", "httpd", "-f", "-p", "80")
    out = ok(d.conch("port", "rand"))
    ports = dict(line.split(" -> ") for line in out.splitlines())
    assert set(ports) == {"80/tcp", "81/tcp"}
    host_port = int(ports["80/tcp"].rpartition(":")[2])
    assert host_port > 0
    with socket.create_connection(("127.0.0.1", host_port), timeout=5):
        pass


def test_taken_host_port_is_a_clear_error(d):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        p = d.conch("run", "--rm", "-p", f"{port}:80", "busybox", "true")
    assert p.returncode == 125, p.stderr
    assert str(port) in p.stderr and "already" in p.stderr


def test_networks_are_isolated_and_internal_has_no_way_out(d, net):
    a, b = net("rede-a"), net("rede-b")
    inner = net("rede-interna", "--internal")
    _run_d(d, "--network", a, "--name", "ca", "busybox", "sleep", "300")
    _run_d(d, "--network", b, "--name", "cb", "busybox", "sleep", "300")
    ip_b = json.loads(ok(d.conch("inspect", "cb")))[0]["NetworkSettings"]["Networks"][b]["IPAddress"]
    assert _sh(d, "ca", f"ping -c1 -W1 {ip_b}").returncode != 0
    out = ok(d.conch("run", "--rm", "--network", inner, "busybox", "ip", "route"))
    assert "default" not in out


def test_restart_after_kill9_keeps_published_port(d):
    port = free_port()
    site = "/tmp/" + os.urandom(4).hex()
    os.makedirs(site)
    try:
        with open(f"{site}/index.html", "w") as f:
            f.write("still here\n")
        _run_d(d, "--name", "durable", "-p", f"{port}:80", "-v", f"{site}:/www", "busybox",
               "httpd", "-f", "-p", "80", "-h", "/www")
        dies = _run_d(d, "--name", "dies", "busybox", "sleep", "300")
        pid = json.loads(ok(d.conch("inspect", "dies")))[0]["State"]["Pid"]
        url = f"http://127.0.0.1:{port}/index.html"
        assert "still here" in _fetch(url)
        d.kill9()
        assert "still here" in _fetch(url)  # the rule is in the kernel, no proxy process
        os.kill(pid, 9)  # a container dies while conchd is away
        time.sleep(0.5)
        d.start()
        assert "still here" in _fetch(url)
        # reconciled: the dead one's sandbox is gone, the live one's kept
        assert not os.path.exists(d.exec_root / "netns" / dies)
        (c,) = json.loads(ok(d.conch("inspect", "durable")))
        assert c["State"]["Running"] and c["NetworkSettings"]["IPAddress"]
        # the port is held again: another container cannot take it
        p = d.conch("run", "--rm", "-p", f"{port}:80", "busybox", "true")
        assert p.returncode != 0
    finally:
        d.conch("rm", "-f", "durable", "dies")
        import shutil

        shutil.rmtree(site, ignore_errors=True)


def test_nothing_left_after_rm(d, net):
    name = net("efemera")
    cid = _run_d(d, "--network", name, "-p", f"{free_port()}:80", "busybox", "sleep", "300")
    assert os.path.exists(d.exec_root / "netns" / cid)
    ok(d.conch("rm", "-f", cid))
    assert not os.path.exists(d.exec_root / "netns" / cid)
    assert not any(n.startswith("v" + cid[:12]) for n in os.listdir("/sys/class/net"))
    ok(d.conch("network", "rm", name))
    (info,) = [n for n in d.api.get("/networks") if n["Name"] == "bridge"]
    assert info["Containers"] == {}


def test_two_starts_racing_for_one_host_port(d):
    """Exactly one wins; the loser's cleanup must not release the winner's reservation
    (a reservation is idempotent inside one conchd, so claims are checked under a lock)."""
    port = free_port()
    names = ["race-a", "race-b", "race-c"]
    for n in names:
        ok(d.conch("create", "--name", n, "-p", f"{port}:80", "busybox", "sleep", "300"))
    results = {}

    def start(n):
        results[n] = d.conch("start", n)

    threads = [threading.Thread(target=start, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, p in results.items() if p.returncode == 0]
    assert len(winners) == 1, {n: (p.returncode, p.stderr) for n, p in results.items()}
    for n, p in results.items():
        if n not in winners:
            assert "already allocated" in p.stderr or "published by another" in p.stderr, p.stderr
    # the winner still holds the host port: nothing else on the host may bind it
    with socket.socket() as s:
        with pytest.raises(OSError):
            s.bind(("0.0.0.0", port))
