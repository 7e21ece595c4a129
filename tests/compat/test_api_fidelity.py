"""Issue 10: what real clients send gets what dockerd answers (docker-py, docker CLI, raw
HTTP for the garbage sweep).

The sweep (``test_no_5xx_for_garbage_*``) enumerates every route from the API router (the
same ``routes_*`` modules conchd serves), fills path parameters with live objects this
module made (a running container, an exec, an image tag, a volume, a network), and sends
garbage to each query parameter the route's module reads and to the JSON body (bad JSON,
wrong top-level types, a wrong type in every field of the route's body schema). No
answer may be a 5xx, except dockerd's own 503s (swarm mode, unreachable registries).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

docker = pytest.importorskip("docker", reason="docker-py is not installed in this venv")

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
                 'join" to connect this node to swarm and try again.')


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def client(d):
    c = docker.DockerClient(base_url=d.host, timeout=60)
    yield c
    c.close()


# --- raw HTTP over the unix socket ------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def request(daemon, method: str, path: str, *, body: bytes | None = None,
            timeout: float = 30, read_body: bool = True,
            read_stream: bool = False) -> tuple[int | None, bytes]:
    """(status, body) for one request; (None, b"") when no status line came in time (a
    stream that waits before answering). Streams are not read: the status decides."""
    conn = _UnixConnection(str(daemon.sock), timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        streaming = (resp.getheader("Content-Length") is None
                     or resp.status == 101
                     or "stream" in (resp.getheader("Content-Type") or ""))
        data = resp.read() if read_body and (read_stream or not streaming) else b""
        return resp.status, data
    except (TimeoutError, socket.timeout):
        return None, b""
    finally:
        conn.close()


# --- item 1: swarm, plugins, search -----------------------------------------------------


def test_swarm_routes_answer_dockers_503(d, client):
    for path in ("/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs"):
        status, body = request(d, "GET", "/v1.50" + path)
        assert (status, json.loads(body)["message"]) == (503, NOT_A_MANAGER), path
    status, body = request(d, "POST", "/v1.50/swarm/leave")
    assert (status, json.loads(body)) == (503, {"message": "This node is not part of a swarm"})
    # docker-py: the high-level API raises APIError with dockerd's status and text
    with pytest.raises(docker.errors.APIError) as exc:
        client.nodes.list()
    assert exc.value.status_code == 503 and NOT_A_MANAGER in str(exc.value)
    with pytest.raises(docker.errors.APIError) as exc:
        client.swarm.leave()
    assert exc.value.status_code == 503
    assert client.plugins.list() == []
    # the docker CLI prints dockerd's text
    for argv in (("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls")):
        proc = d.docker(*argv)
        assert proc.returncode == 1 and NOT_A_MANAGER in proc.stderr, (argv, proc.stderr)
    proc = d.docker("swarm", "leave")
    assert proc.returncode == 1 and "This node is not part of a swarm" in proc.stderr
    proc = d.docker("plugin", "ls", "--format", "{{.Name}}")
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    status, body = request(d, "GET", "/v1.50/plugins/nope/json")
    assert (status, json.loads(body)) == (404, {"message": 'plugin "nope" not found'})


def test_search_uses_the_registrys_catalog(d):
    from conch.testing.registry import DistributionRegistry, available

    reason = available()
    if reason:
        pytest.skip(reason)
    with DistributionRegistry() as reg:
        for name in ("busybox", "team/busybox-tools", "other"):
            ref = f"{reg.addr}/{name}:latest"
            assert d.docker("tag", "busybox:latest", ref).returncode == 0
            proc = d.docker("push", ref, timeout=120)
            assert proc.returncode == 0, proc.stderr
            d.docker("rmi", ref)
        proc = d.docker("search", "--format", "{{.Name}}", f"{reg.addr}/busybox")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [f"{reg.addr}/busybox", f"{reg.addr}/team/busybox-tools"]
        c = docker.APIClient(base_url=d.host, timeout=60)
        try:
            found = c.search(f"{reg.addr}/tools")
            assert found == [{"star_count": 0, "is_official": False,
                              "name": f"{reg.addr}/team/busybox-tools", "is_automated": False,
                              "description": ""}]
            assert c.search(f"{reg.addr}/nothing-like-this") == []
        finally:
            c.close()
        status, body = request(d, "GET", f"/v1.50/images/search?term={reg.addr}/b&limit=500")
        assert (status, json.loads(body)) == (400, {"message": "limit 500 is outside the range of [1, 100]"})
        status, body = request(d, "GET", f"/v1.50/images/search?term={reg.addr}/b&limit=abc")
        assert status == 400
    # Docker Hub is out of reach here: a clear error naming what was asked, not a 404
    status, body = request(d, "GET", "/v1.50/images/search?term=busybox")
    assert status == 503 and "index.docker.io/v1/search" in json.loads(body)["message"]


# --- item 2: per-version shapes ---------------------------------------------------------


def test_image_inspect_follows_the_requested_version(d):
    shapes = {}
    for version in ("1.43", "1.44", "1.45", "1.50"):
        c = docker.APIClient(base_url=d.host, version=version, timeout=60)
        try:
            shapes[version] = c.inspect_image("busybox:latest")
        finally:
            c.close()
    old = shapes["1.43"]
    assert old["VirtualSize"] == old["Size"]
    assert old["Container"] == ""
    # docker-compose 1.29 reads ContainerConfig["Volumes"] when it recreates a container
    assert isinstance(old["ContainerConfig"], dict) and "Volumes" in old["ContainerConfig"]
    assert "VirtualSize" not in shapes["1.44"] and "ContainerConfig" in shapes["1.44"]
    for version in ("1.45", "1.50"):
        assert not {"VirtualSize", "Container", "ContainerConfig"} & set(shapes[version])


def test_untagged_images_show_none_placeholders_before_1_43(d):
    proc = d.docker("commit", d.docker("create", "busybox", "true").stdout.strip())
    image_id = proc.stdout.strip()
    try:
        for version, tags in (("1.42", ["<none>:<none>"]), ("1.43", [])):
            status, body = request(d, "GET", f"/v{version}/images/json")
            mine = [i for i in json.loads(body) if i["Id"] == image_id]
            assert status == 200 and [m["RepoTags"] for m in mine] == [tags], version
    finally:
        d.docker("rmi", image_id)


def test_other_version_gates(d, client):
    """moby's gates beyond image inspect: /info, /system/df, /events, container inspect."""
    new = json.loads(request(d, "GET", "/v1.50/info")[1])
    old = json.loads(request(d, "GET", "/v1.43/info")[1])
    assert "AllowNondistributableArtifactsCIDRs" not in new["RegistryConfig"]
    assert old["RegistryConfig"]["AllowNondistributableArtifactsCIDRs"] is None
    assert new["RuncCommit"] == {"ID": ""} and old["RuncCommit"] == {"ID": "", "Expected": ""}
    assert "BridgeNfIptables" not in new and old["BridgeNfIptables"] is False
    assert "FirewallBackend" in new and "FirewallBackend" not in old
    df = json.loads(request(d, "GET", "/v1.50/system/df?type=volume")[1])
    assert df["Images"] is None and df["Containers"] is None and isinstance(df["Volumes"], list)
    status, body = request(d, "GET", "/v1.50/system/df?type=nope")
    assert (status, json.loads(body)) == (400, {"message": "unknown object type: nope"})
    images = json.loads(request(d, "GET", "/v1.43/system/df")[1])["Images"]
    assert images and all(i["VirtualSize"] == i["Size"] for i in images)
    status, body = request(d, "GET", "/v1.50/events?since=20&until=10")
    assert status == 400 and "cannot be after `until`" in json.loads(body)["message"]
    net = client.networks.create(f"gates-{int(time.time() * 1000) % 10**6}")
    try:
        c = client.containers.create("busybox", "true", hostname="h1", network=net.name)
        for version, extra in (("1.44", [c.id[:12], "h1"]), ("1.45", [])):
            doc = json.loads(request(d, "GET", f"/v{version}/containers/{c.id}/json")[1])
            aliases = doc["NetworkSettings"]["Networks"][net.name]["Aliases"] or []
            assert [a for a in aliases if a in (c.id[:12], "h1")] == extra, (version, aliases)
        c.remove()
    finally:
        net.remove()


# --- item 3: malformed parameters -------------------------------------------------------


def test_logs_tail_garbage_is_all_lines(d, client):
    c = client.containers.run("busybox", ["sh", "-c", "echo one; echo two"], detach=True)
    c.wait(timeout=30)
    status, body = request(d, "GET", f"/v1.50/containers/{c.id}/logs?stdout=1&tail=abc",
                           read_stream=True)
    assert status == 200 and b"one" in body and b"two" in body
    proc = d.docker("logs", "--tail", "abc", c.id)  # the CLI passes it through, as dockerd reads it
    assert (proc.returncode, proc.stdout) == (0, "one\ntwo\n"), proc.stderr
    assert c.logs(tail=1) == b"two\n"


def test_bad_bodies_are_400_in_gos_words(d):
    status, body = request(d, "POST", "/v1.50/containers/create",
                           body=json.dumps({"Image": "busybox", "HostConfig": {"Memory": "1g"}}).encode())
    assert status == 400
    assert json.loads(body)["message"] == ("invalid JSON: json: cannot unmarshal string into Go "
                                           "struct field CreateRequest.HostConfig.Memory of type int64")
    status, body = request(d, "POST", "/v1.50/containers/create", body=b"{")
    assert (status, json.loads(body)) == (400, {"message": "invalid JSON: unexpected EOF"})


ALLOWED_503 = re.compile(r"^/(swarm|nodes|services|tasks|secrets|configs|plugins)\b|^/images/search"
                         r"|^/distribution/|^/images/create|^/images/\{name\}/push|^/auth")
_QUERY_NAME = re.compile(r"""(?:query|\bq)\.get(?:all|one)?\(\s*["']([A-Za-z0-9_-]+)["']"""
                         r"""|parse_\w+\(\s*(?:request\.)?(?:query|q)\s*,\s*["']([A-Za-z0-9_-]+)["']""")


def _route_modules():
    import importlib
    import pkgutil

    import conch.api

    return [importlib.import_module(f"conch.api.{m.name}") for m in pkgutil.iter_modules(conch.api.__path__)
            if m.name.startswith("routes_")]


def _routes() -> list[tuple[str, str, set[str], object]]:
    """(method, path template, query names its module reads, module) for every route."""
    out = []
    for module in _route_modules():
        source = Path(module.__file__).read_text()
        names = {a or b for a, b in _QUERY_NAME.findall(source)}
        added: list[tuple[str, str]] = []
        module.register(lambda method, path, handler: added.append((method, path)))
        out += [(m, p, names, module) for m, p in added]
    return out


def _schemas():
    from conch.api import body as b

    return {("POST", "/containers/create"): b.CREATE_REQUEST,
            ("POST", "/containers/{id}/update"): b.UPDATE_CONFIG,
            ("POST", "/containers/{id}/exec"): b.EXEC_CONFIG,
            ("POST", "/exec/{id}/start"): b.EXEC_START,
            ("POST", "/networks/create"): b.NETWORK_CREATE,
            ("POST", "/networks/{id}/connect"): b.NETWORK_CONNECT,
            ("POST", "/networks/{id}/disconnect"): b.NETWORK_DISCONNECT,
            ("POST", "/volumes/create"): b.VOLUME_CREATE,
            ("POST", "/auth"): b.AUTH_CONFIG,
            ("POST", "/commit"): b.COMMIT_CONFIG}


def _wrong(t) -> list:
    """JSON values of the wrong type for schema type ``t``."""
    from conch.api.body import Struct

    if isinstance(t, Struct) or t == "object" or (isinstance(t, tuple) and t[0] == "map"):
        return ["garbage", [1]]
    if isinstance(t, tuple):
        return [{"x": 1}, 7, [{"x": 1}]]
    if t == "string":
        return [{"x": 1}, 5]
    if t == "bool":
        return ["yes", 2]
    if t == "any":
        return []
    return ["abc", 1.5, 1 << 70]


def _garbage_bodies(schema) -> list[bytes]:
    from conch.api.body import Struct

    bodies = [b"{", b"[]", b'"x"', b"null", b"\xff\xfe", b'{"Image": "busybox"} trailing']
    if schema is None:
        return bodies

    def walk(struct: Struct, prefix: list[str]):
        for key, t in struct.fields.items():
            for bad in _wrong(t):
                doc: dict = {"Image": "busybox:latest"} if not prefix else {}
                cur = doc
                for p in prefix:
                    cur = cur.setdefault(p, {})
                cur[key] = bad
                bodies.append(json.dumps(doc).encode())
            if isinstance(t, Struct) and len(prefix) < 2:
                walk(t, prefix + [key])
            if isinstance(t, tuple) and t[0] == "slice" and isinstance(t[1], Struct):
                for key2, t2 in t[1].fields.items():
                    for bad in _wrong(t2)[:1]:
                        doc = {"Image": "busybox:latest"} if not prefix else {}
                        cur = doc
                        for p in prefix:
                            cur = cur.setdefault(p, {})
                        cur[key] = [{key2: bad}]
                        bodies.append(json.dumps(doc).encode())

    walk(schema, [])
    return bodies


# semantic garbage of the right JSON types, where conch parses further than Go's decoder
_CREATE_SEMANTIC = [
    {"Image": "busybox", "HostConfig": {"Ulimits": [{"Name": "nofile"}]}},
    {"Image": "busybox", "HostConfig": {"PortBindings": {"abc": [{"HostPort": "x"}]}}},
    {"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}},
    {"Image": "busybox", "ExposedPorts": {"80/xyz": {}}},
    {"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}},
    {"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "weird", "Target": "/x"}]}},
    {"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "bind"}]}},
    {"Image": "busybox", "HostConfig": {"Binds": ["::::"]}},
    {"Image": "busybox", "HostConfig": {"Tmpfs": {"relative": "size=abc"}}},
    {"Image": "busybox", "HostConfig": {"Memory": -5, "CpuShares": -1, "ShmSize": -1}},
    {"Image": "busybox", "HostConfig": {"NetworkMode": "container:nope"}},
    {"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "abc"}}}},
    {"Image": "busybox", "HostConfig": {"Devices": [{"PathOnHost": "/nonexistent"}]}},
    {"Image": "busybox", "HostConfig": {"ExtraHosts": ["nocolon"]}, "Env": ["=x"]},
    {"Image": "busybox", "Healthcheck": {"Test": ["WEIRD"]}, "StopSignal": "SIGNOPE"},
    {"Image": "busybox", "User": "a:b:c", "HostConfig": {"Sysctls": {"kernel.nope": "1"}}},
    {"Image": "no such image!!"},
    {"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"nonet": {}}}},
]


class _Objects:
    """The live objects path parameters point at (re-made when a route removed one)."""

    def __init__(self, d) -> None:
        self.d = d
        self.suffix = f"{int(time.time() * 1000) % 10**8}"

    def ensure(self) -> dict[str, str]:
        d = self.d
        if request(d, "GET", "/images/fuzzimg:latest/json")[0] != 200:
            assert d.docker("tag", "busybox:latest", "fuzzimg:latest").returncode == 0
        name = f"fuzz-{self.suffix}"
        status, body = request(d, "GET", f"/containers/{name}/json")
        running = status == 200 and json.loads(body)["State"]["Running"]
        if not running:
            d.docker("rm", "-f", name)
            # --init: a TERM that comes before the trap is set still ends it (not PID 1)
            proc = d.docker("run", "-d", "--init", "--name", name, "busybox", "sh", "-c",
                            "trap 'exit 0' TERM; while :; do sleep 0.1; done")
            assert proc.returncode == 0, proc.stderr
        status, body = request(d, "GET", f"/containers/{name}/json")
        assert status == 200, (status, body, proc.stdout if not running else "")
        cid = json.loads(body)["Id"]
        status, body = request(d, "POST", f"/containers/{cid}/exec",
                               body=json.dumps({"Cmd": ["true"]}).encode())
        exec_id = json.loads(body)["Id"] if status == 201 else "noexec"
        vol = f"fuzzvol-{self.suffix}"
        if request(d, "GET", f"/volumes/{vol}")[0] != 200:
            d.docker("volume", "create", vol)
        net = f"fuzznet-{self.suffix}"
        if request(d, "GET", f"/networks/{net}")[0] != 200:
            d.docker("network", "create", net)
        return {"container": cid, "exec": exec_id, "image": "fuzzimg:latest", "volume": vol,
                "network": net}

    def close(self) -> None:
        d = self.d
        d.docker("rm", "-f", f"fuzz-{self.suffix}")
        d.docker("volume", "rm", "-f", f"fuzzvol-{self.suffix}")
        d.docker("network", "rm", f"fuzznet-{self.suffix}")
        d.docker("rmi", "fuzzimg:latest")


def _fill(path: str, objs: dict[str, str]) -> str:
    if path.startswith("/containers/") or path == "/commit":
        value = objs["container"]
    elif path.startswith("/exec/"):
        value = objs["exec"]
    elif path.startswith("/images/") or path.startswith("/distribution/"):
        value = objs["image"]
    elif path.startswith("/volumes/"):
        value = objs["volume"]
    elif path.startswith("/networks/"):
        value = objs["network"]
    else:
        value = "fuzz"
    return re.sub(r"\{[a-z_]+(?::[^}]*)?\}", urllib.parse.quote(value, safe=":"), path)


GARBAGE_VALUES = ("abc{", "-1", "99999999999999999999999", "")


def _inventory(d) -> tuple[set[str], set[str], set[str]]:
    tags = {t for i in json.loads(request(d, "GET", "/images/json?all=1")[1]) for t in i["RepoTags"] or ()}
    tags |= {i["Id"] for i in json.loads(request(d, "GET", "/images/json?all=1")[1])}
    vols = {v["Name"] for v in json.loads(request(d, "GET", "/volumes")[1])["Volumes"] or ()}
    nets = {n["Id"] for n in json.loads(request(d, "GET", "/networks")[1])}
    return tags, vols, nets


def _remove_new(d, before) -> None:
    """Whatever the sweep made (tags, commits, anonymous volumes, networks) goes."""
    after = _inventory(d)
    for tag in sorted(after[0] - before[0], key=lambda t: t.startswith("sha256:")):
        d.docker("rmi", "-f", tag)
    for vol in after[1] - before[1]:
        d.docker("volume", "rm", "-f", vol)
    for net in after[2] - before[2]:
        d.docker("network", "rm", net)


def test_no_5xx_for_garbage_parameters(d):
    """Garbage in every query parameter of every route."""
    _sweep(d, queries=True, bodies=False)


def test_no_5xx_for_garbage_bodies(d):
    """Garbage JSON bodies (and wrong types in every schema field) to every POST/PUT."""
    _sweep(d, queries=False, bodies=True)


def _sweep(d, *, queries: bool, bodies: bool) -> None:
    before = _inventory(d)
    objs_maker = _Objects(d)
    schemas = _schemas()
    failures: list[str] = []
    sent = 0
    deadline = time.monotonic() + 150
    try:
        for method, template, names, _module in _routes():
            objs = objs_maker.ensure()
            path = _fill(template, objs)
            base_query = {"container": objs["container"]} if template == "/commit" else {}
            attempts: list[tuple[dict, bytes | None]] = []
            for name in sorted(names) if queries else ():
                attempts.append(({**base_query, name: "abc{"}, None))
            for value in GARBAGE_VALUES[1:] if queries else ():
                attempts.append(({**base_query, **{n: value for n in names}}, None))
            if bodies and method in ("POST", "PUT"):
                bodies = _garbage_bodies(schemas.get((method, template)))
                if template == "/containers/create":
                    bodies += [json.dumps(b).encode() for b in _CREATE_SEMANTIC]
                attempts += [(base_query, b) for b in bodies]
            for query, body in attempts:
                assert time.monotonic() < deadline, f"sweep too slow; at {method} {template}"
                url = "/v1.50" + path + ("?" + urllib.parse.urlencode(query) if query else "")
                status, data = request(d, method, url, body=body, timeout=5)
                sent += 1
                if status is not None and status >= 500:
                    allowed = status == 503 and ALLOWED_503.search(template)
                    if not allowed:
                        failures.append(f"{method} {url} body={body!r:.120}: {status} {data[:300]!r}")
                if template == "/containers/create" and status == 201:
                    d.docker("rm", "-f", json.loads(data)["Id"])
    finally:
        objs_maker.close()
        for cid in d.container_ids():
            d.docker("rm", "-f", cid)
        _remove_new(d, before)
    assert sent > 300
    assert not failures, f"{len(failures)} of {sent} requests got a 5xx:\n" + "\n".join(failures[:40])
