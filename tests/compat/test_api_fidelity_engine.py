"""Issue 10 (Docker API fidelity), the engine-side items, through real clients: docker-py
(``docker`` from the venv) and the docker CLI, against a private conchd.

Items covered here: 11 (inspect shapes), 12 (anonymous volumes, prune's space), 10
(image load errors, imported Config, GraphDriver data), 9 (archive sees mounts), 5
(applied HostConfig fields). Each test names the item it proves.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from conch.runtime.presets import MASKED_PATHS, READONLY_PATHS
from conch.testing.daemon import DOCKER, clean_after, daemon_fixture, ok

docker = pytest.importorskip("docker", reason="docker-py is not installed in this venv")

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def client(d):
    c = docker.DockerClient(base_url=d.host, timeout=60)
    yield c
    c.close()


def _cli(d, *args, **kw):
    if not DOCKER:
        pytest.skip("the docker CLI is not installed")
    return d.docker(*args, **kw)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _untar(stream) -> dict[str, bytes]:
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


# -- item 11: inspect shapes ------------------------------------------------------------

def test_inspect_host_config_defaults_cli(d):
    """11: CgroupnsMode set (what conch applies: the host's on this cgroup v1 machine, as
    dockerd's default there), MemorySwappiness null (the CLI sends -1), MaskedPaths and
    ReadonlyPaths as applied, Tmpfs absent when empty."""
    cid = ok(_cli(d, "create", "busybox", "true")).strip()
    hc = json.loads(ok(_cli(d, "inspect", cid)))[0]["HostConfig"]
    assert hc["CgroupnsMode"] in ("host", "private")
    assert hc["MemorySwappiness"] is None
    assert hc["MaskedPaths"] == list(MASKED_PATHS)
    assert hc["ReadonlyPaths"] == list(READONLY_PATHS)
    assert "Tmpfs" not in hc
    # the CLI's --format reads them as docker's own templates do
    out = ok(_cli(d, "inspect", "-f", "{{.HostConfig.CgroupnsMode}} {{.HostConfig.MemorySwappiness}}", cid))
    assert out.split() in (["host", "<nil>"], ["private", "<nil>"])


def test_inspect_host_config_when_set(client):
    """11: a set MemorySwappiness is shown; Tmpfs when given; privileged: no masked or
    read-only paths (none are applied); CgroupnsMode private gives the container its own
    cgroup namespace."""
    c = client.containers.create("busybox", "true", mem_swappiness=10, tmpfs={"/scratch": "size=1m"})
    hc = client.api.inspect_container(c.id)["HostConfig"]
    assert hc["MemorySwappiness"] == 10
    assert hc["Tmpfs"] == {"/scratch": "size=1m"}
    p = client.containers.create("busybox", "true", privileged=True)
    hc = client.api.inspect_container(p.id)["HostConfig"]
    assert hc["MaskedPaths"] is None and hc["ReadonlyPaths"] is None
    with pytest.raises(docker.errors.APIError) as exc:
        client.containers.create("busybox", "true", mem_swappiness=101)
    assert exc.value.status_code == 400
    assert "valid memory swappiness range is 0-100" in str(exc.value)


def test_cgroupns_modes_applied(client):
    """11: CgroupnsMode host shares the host's cgroup namespace, private makes one."""
    host_ns = os.readlink("/proc/self/ns/cgroup")
    out = client.containers.run("busybox", "readlink /proc/self/ns/cgroup", remove=True,
                                cgroupns="host")
    assert out.decode().strip() == host_ns
    c = client.containers.run("busybox", "readlink /proc/self/ns/cgroup", detach=True,
                              cgroupns="private")
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs().decode().strip() != host_ns
    assert client.api.inspect_container(c.id)["HostConfig"]["CgroupnsMode"] == "private"
    c.remove()
    with pytest.raises(docker.errors.APIError) as exc:
        client.containers.create("busybox", "true", cgroupns="weird")
    assert exc.value.status_code == 400


def test_masked_paths_as_applied(client):
    """11: MaskedPaths given in the API body are what the runtime masks (and nothing else)."""
    cmd = ["sh", "-c", "head -c 10 /proc/timer_list | wc -c; head -c 10 /proc/interrupts | wc -c"]
    c = client.api.create_container("busybox", cmd, host_config={
        "MaskedPaths": ["/proc/timer_list"], "ReadonlyPaths": []})
    hc = client.api.inspect_container(c["Id"])["HostConfig"]
    assert hc["MaskedPaths"] == ["/proc/timer_list"] and hc["ReadonlyPaths"] == []
    client.api.start(c["Id"])
    assert client.api.wait(c["Id"], timeout=30)["StatusCode"] == 0
    # masked: an empty file; /proc/interrupts is masked by default but not here
    assert client.api.logs(c["Id"]).decode().split() == ["0", "10"]
    client.api.remove_container(c["Id"])
    default = client.containers.run("busybox", cmd, detach=True)
    assert default.wait(timeout=30)["StatusCode"] == 0
    assert default.logs().decode().split() == ["0", "0"]
    default.remove()


# -- item 12: volumes and prune -----------------------------------------------------------

def test_volume_without_name_is_anonymous_and_pruned(client, d):
    """12: POST /volumes/create without a name makes an anonymous volume (labelled
    com.docker.volume.anonymous), which the default prune removes; a named one stays."""
    anon = client.volumes.create()
    named = client.volumes.create("h10-named")
    try:
        assert anon.attrs["Labels"] == {"com.docker.volume.anonymous": ""}
        assert len(anon.name) == 64
        assert not named.attrs.get("Labels")
        cli_anon = ok(_cli(d, "volume", "create")).strip()
        labels = json.loads(ok(_cli(d, "volume", "inspect", cli_anon)))[0]["Labels"]
        assert labels == {"com.docker.volume.anonymous": ""}
        result = client.volumes.prune()
        assert set(result["VolumesDeleted"]) >= {anon.name, cli_anon}
        assert named.name not in result["VolumesDeleted"]
        names = [v.name for v in client.volumes.list()]
        assert named.name in names and anon.name not in names
    finally:
        named.remove(force=True)


def test_container_prune_space_reclaimed(client, d):
    """12: container prune reports the bytes of the removed containers' writable layers."""
    c = client.containers.run("busybox", "dd if=/dev/zero of=/big bs=1024 count=2048",
                              detach=True, labels={"h10": "prune"})
    assert c.wait(timeout=30)["StatusCode"] == 0
    result = client.containers.prune(filters={"label": "h10=prune"})
    assert result["ContainersDeleted"] == [c.id]
    assert 2 * 1024 * 1024 <= result["SpaceReclaimed"] < 3 * 1024 * 1024
    c2 = ok(_cli(d, "run", "-d", "--label", "h10=prune2", "busybox",
                 "dd", "if=/dev/zero", "of=/big", "bs=1024", "count=1024")).strip()
    ok(_cli(d, "wait", c2))
    out = ok(_cli(d, "container", "prune", "-f", "--filter", "label=h10=prune2"))
    assert c2 in out and "Total reclaimed space: 1.0" in out, out


# -- item 10: images -----------------------------------------------------------------

def test_load_bad_tar_is_an_in_stream_error(client, d, tmp_path):
    """10: POST /images/load with a bad tar answers 200 with errorDetail in the stream:
    docker-py raises ImageLoadError, the CLI exits 1 with the message."""
    resp = client.api._post(client.api._url("/images/load"), data=b"this is not a tar" * 100,
                            headers={"Content-Type": "application/x-tar"})
    assert resp.status_code == 200
    lines = [json.loads(x) for x in resp.text.splitlines() if x.strip()]
    assert lines and "errorDetail" in lines[-1] and lines[-1]["error"]
    with pytest.raises(docker.errors.ImageLoadError):
        client.images.load(b"garbage" * 300)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_tar({"hello.txt": b"no manifest here"}))
    p = _cli(d, "load", "-i", str(bad))
    assert p.returncode == 1 and p.stderr.strip(), (p.stdout, p.stderr)


def test_imported_image_config_is_an_object(client, d, tmp_path):
    """10: an image made by import (no --change) has Config as an object."""
    src = tmp_path / "root.tar"
    src.write_bytes(_tar({"etc/h10": b"x\n"}))
    ok(_cli(d, "import", str(src), "h10-imported:1"))
    try:
        info = client.api.inspect_image("h10-imported:1")
        cfg = info["Config"]
        assert isinstance(cfg, dict)
        assert cfg["Cmd"] is None and cfg["Env"] is None and cfg["Entrypoint"] is None
        assert cfg["Hostname"] == "" and cfg["WorkingDir"] == ""
        assert client.images.get("h10-imported:1").attrs["Config"]["Labels"] is None
    finally:
        client.images.remove("h10-imported:1", force=True)


def test_graphdriver_overlay2_data(client):
    """10: GraphDriver reports overlay2's LowerDir, UpperDir, MergedDir, WorkDir, as
    real directories of the snapshotter (container) and the image's top layer."""
    img = client.api.inspect_image("busybox")["GraphDriver"]
    assert img["Name"] == "overlay2"
    assert {"UpperDir", "MergedDir", "WorkDir"} <= set(img["Data"])
    assert os.path.isdir(img["Data"]["UpperDir"])
    c = client.containers.create("busybox", "true")
    gd = client.api.inspect_container(c.id)["GraphDriver"]
    assert gd["Name"] == "overlay2"
    data = gd["Data"]
    assert set(data) == {"LowerDir", "UpperDir", "MergedDir", "WorkDir"}
    for lower in data["LowerDir"].split(":"):
        assert os.path.isdir(lower), lower
    assert os.path.isdir(data["UpperDir"]) and os.path.isdir(data["WorkDir"])
    assert data["MergedDir"].endswith("rootfs") or data["MergedDir"].endswith("merged")
    assert img["Data"]["UpperDir"] in data["LowerDir"].split(":")
    c.remove()


# -- item 5: applied, not only recorded ---------------------------------------------------

def test_group_add_applied(client, d):
    """5: GroupAdd gives supplementary groups; names resolve in the container's /etc/group;
    an unknown name fails the start with docker's message."""
    # the test image's /etc/group: tty:x:5, conchextra:x:1001
    out = client.containers.run("busybox", "id -G", group_add=["tty", "1234"], user="1000:1000",
                                detach=True)
    assert out.wait(timeout=30)["StatusCode"] == 0
    gids = out.logs().decode().split()  # the kernel sorts them; 1001: uid 1000 is a member
    assert gids[0] == "1000" and sorted(gids[1:]) == ["1001", "1234", "5"]
    assert client.api.inspect_container(out.id)["HostConfig"]["GroupAdd"] == ["tty", "1234"]
    out.remove()
    cli = ok(_cli(d, "run", "--rm", "--group-add", "conchextra", "-u", "0", "busybox", "id", "-G"))
    assert cli.split() == ["0", "1001"]
    p = _cli(d, "run", "--rm", "--group-add", "nosuchgroup", "busybox", "true")
    assert p.returncode != 0 and "Unable to find group nosuchgroup" in p.stderr, p.stderr


# -- item 9: archive and cp see the container's mounts ---------------------------------

def test_archive_sees_volumes_binds_and_etc_files(client, d, tmp_path):
    """9: GET/PUT/HEAD /containers/{id}/archive go through the container's volumes and
    binds (before start, while running, after exit) and show the /etc files conch wrote;
    a PUT into a read-only mount is docker's 400."""
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "host.txt").write_bytes(b"from-host\n")
    vol = client.volumes.create("h10-cpvol")
    try:
        script = ("while [ ! -f /data/stop ]; do sleep 0.1; done; "
                  "cat /data/in.txt /data/run.txt; cat /b/host.txt")
        c = client.containers.create("busybox", ["sh", "-c", script], name="h10-cp",
                                     volumes={"h10-cpvol": {"bind": "/data", "mode": "rw"},
                                              str(bind): {"bind": "/b", "mode": "ro"}})
        # before start
        assert c.put_archive("/data", _tar({"in.txt": b"from-cp\n"}))
        assert (open(os.path.join(vol.attrs["Mountpoint"], "in.txt"), "rb").read() == b"from-cp\n")
        stream, st = c.get_archive("/b/host.txt")
        assert _untar(stream) == {"host.txt": b"from-host\n"} and st["name"] == "host.txt"
        assert client.api.head(client.api._url("/containers/{0}/archive", c.id),
                               params={"path": "/data/in.txt"}).status_code == 200
        with pytest.raises(docker.errors.APIError) as exc:
            c.put_archive("/b", _tar({"x": b"x"}))
        assert exc.value.status_code == 400 and "mounted volume is marked read-only" in str(exc.value)
        assert not (bind / "x").exists()
        # while running
        c.start()
        hostname = c.id[:12]
        stream, _ = c.get_archive("/etc/hostname")
        assert _untar(stream) == {"hostname": f"{hostname}\n".encode()}
        stream, _ = c.get_archive("/etc/hosts")
        assert hostname.encode() in _untar(stream)["hosts"]
        assert c.put_archive("/data", _tar({"run.txt": b"while-running\n"}))
        assert c.put_archive("/data", _tar({"stop": b""}))
        assert c.wait(timeout=30)["StatusCode"] == 0
        assert c.logs() == b"from-cp\nwhile-running\nfrom-host\n"
        # after exit
        stream, _ = c.get_archive("/data/run.txt")
        assert _untar(stream) == {"run.txt": b"while-running\n"}
        stream, _ = c.get_archive("/etc/hostname")
        assert _untar(stream) == {"hostname": f"{hostname}\n".encode()}
        (tmp_path / "cli.txt").write_bytes(b"by-cli\n")
        ok(_cli(d, "cp", str(tmp_path / "cli.txt"), "h10-cp:/data/cli.txt"))
        assert open(os.path.join(vol.attrs["Mountpoint"], "cli.txt"), "rb").read() == b"by-cli\n"
        out = _cli(d, "cp", "h10-cp:/b/host.txt", "-", text=False)
        assert out.returncode == 0 and _untar([out.stdout]) == {"host.txt": b"from-host\n"}
    finally:
        for ctr in client.containers.list(all=True, filters={"name": "h10-cp"}):
            ctr.remove(force=True)
        vol.remove(force=True)


@pytest.fixture
def host_mounts(tmp_path):
    """``mount(name, *flags)`` -> a fresh tmpfs under tmp_path with that propagation;
    all unmounted (deepest first) after the test."""
    import subprocess

    made = []

    def mount(name: str, *make: str):
        path = tmp_path / name
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "h10", str(path)], check=True)
        made.append(path)
        for flag in make:
            subprocess.run(["mount", flag, str(path)], check=True)
        return path

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_bind_propagation_applied(client, d, host_mounts):
    """5: -v src:dst:rshared is applied (a mount made on the host later shows inside),
    shown in Mounts; a source on a private mount gets docker's error."""
    shared = host_mounts("shared", "--make-shared")
    script = "while [ ! -f /s/inner/marker ]; do sleep 0.1; done; echo seen"
    cid = ok(_cli(d, "run", "-d", "-v", f"{shared}:/s:rshared", "busybox", "sh", "-c", script)).strip()
    mounts = json.loads(ok(_cli(d, "inspect", cid)))[0]["Mounts"]
    assert [(m["Destination"], m["Mode"], m["Propagation"]) for m in mounts] == [("/s", "rshared", "rshared")]
    inner = host_mounts("shared/inner")  # made after the container started
    (inner / "marker").write_text("x")
    assert client.containers.get(cid).wait(timeout=30)["StatusCode"] == 0
    assert ok(_cli(d, "logs", cid)) == "seen\n"
    ok(_cli(d, "rm", cid))
    private = host_mounts("private", "--make-private")
    (private / "src").mkdir()
    p = _cli(d, "run", "--rm", "-v", f"{private}/src:/x:rshared", "busybox", "true")
    assert p.returncode == 125, p
    assert f"path {private}/src is mounted on {private} but it is not a shared mount" in p.stderr
    p = _cli(d, "run", "--rm", "-v", f"{private}/src:/x:rslave", "busybox", "true")
    assert p.returncode == 125 and "but it is not a shared or slave mount" in p.stderr, p


def test_volume_subpath(client):
    """5: VolumeOptions.Subpath mounts the volume's sub-directory."""
    from docker.types import Mount

    vol = client.volumes.create("h10-subvol")
    try:
        client.containers.run("busybox", "sh -c 'mkdir -p /v/sub && echo inside > /v/sub/f'",
                              remove=True, volumes={"h10-subvol": {"bind": "/v"}})
        m = Mount("/only", "h10-subvol", type="volume")
        m["VolumeOptions"] = {"Subpath": "sub"}
        c = client.containers.run("busybox", "ls /only", detach=True, mounts=[m])
        assert c.wait(timeout=30)["StatusCode"] == 0
        assert c.logs() == b"f\n"
        c.remove()
        m["VolumeOptions"] = {"Subpath": "nope"}
        with pytest.raises(docker.errors.APIError) as exc:
            client.containers.run("busybox", "true", mounts=[m], remove=True)
        assert "nope" in str(exc.value)
        for c in client.containers.list(all=True, filters={"volume": "h10-subvol"}):
            c.remove(force=True)
    finally:
        vol.remove(force=True)


# -- item 13: POST /build ------------------------------------------------------------------

def _build(client, files: dict[str, bytes], **kw) -> tuple[list[dict], str | None]:
    """docker-py's low-level build of a raw context tar (the daemon applies .dockerignore);
    (every JSON line, the image ID or None)."""
    lines = list(client.api.build(fileobj=io.BytesIO(_tar(files)), custom_context=True,
                                  decode=True, rm=True, **kw))
    errors = [x for x in lines if "errorDetail" in x]
    assert not errors, errors
    image = next((x["aux"]["ID"] for x in lines if "aux" in x), None)
    return lines, image


def _stream(lines) -> str:
    return "".join(x.get("stream", "") for x in lines)


def test_build_run_stderr_framed_as_classic_builder(client):
    """13: RUN's stderr comes as the classic builder's red-wrapped stream lines."""
    lines, image = _build(client, {"Dockerfile": b"FROM busybox\nRUN echo to-out; echo to-err >&2\n"})
    try:
        assert {"stream": "to-out\n"} in lines
        assert {"stream": "\x1b[91mto-err\n\x1b[0m"} in lines
    finally:
        client.images.remove(image, force=True)


def test_build_network_and_extra_hosts(client, d):
    """13: RUN is on the default bridge (an eth0 and a default route), --network none
    leaves it only lo, extrahosts reach RUN's /etc/hosts."""
    df = (b"FROM busybox\nRUN echo IFACES $(ls /sys/class/net | tr '\\n' ' '); "
          b"echo ROUTE $(ip route | grep -c default); grep h10host /etc/hosts || true\n")
    made = []
    try:
        lines, image = _build(client, {"Dockerfile": df}, nocache=True,
                              extra_hosts={"h10host": "10.9.8.7"})
        made.append(image)
        out = _stream(lines)
        assert "IFACES eth0 lo" in out and "ROUTE 1" in out, out
        assert "10.9.8.7\th10host" in out, out
        lines, image = _build(client, {"Dockerfile": df}, nocache=True, network_mode="none")
        made.append(image)
        out = _stream(lines)
        assert "IFACES lo" in out and "ROUTE 0" in out, out
    finally:
        for image in made:
            client.images.remove(image, force=True)


def test_build_dockerignore_reinclude_under_excluded_dir(client):
    """13: on the daemon side, "!dir/keep" brings a file back from an excluded folder
    (the folder walked, its other files left out); COPY of the folder works too."""
    files = {"Dockerfile": b"FROM busybox\nCOPY . /ctx\nCOPY dir /only\n",
             ".dockerignore": b"dir\n!dir/keep\n",
             "dir/keep": b"kept\n", "dir/drop": b"dropped\n", "dir/sub/deep": b"no\n",
             "top": b"top\n"}
    _, image = _build(client, files)
    try:
        out = client.containers.run(image, "find /ctx /only", remove=True).decode().split()
        assert sorted(out) == ["/ctx", "/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/dir",
                               "/ctx/dir/keep", "/ctx/top", "/only", "/only/keep"]
    finally:
        client.images.remove(image, force=True)


def test_build_cache_from(client, d):
    """13: cachefrom: after the step cache is gone (builder prune), a build naming an
    earlier image reuses its steps (same image); without it, the steps run again."""
    df = {"Dockerfile": b"FROM busybox\nENV H10=1\nRUN echo cached-run > /f\nCOPY Dockerfile /df\n"}
    _, first = _build(client, df, tag="h10-cachefrom:1")
    try:
        client.api.prune_builds()
        lines, again = _build(client, df, cache_from=["h10-cachefrom:1"])
        assert again == first
        assert _stream(lines).count("Using cache") == 3, _stream(lines)
        client.api.prune_builds()
        env = dict(d.env, DOCKER_BUILDKIT="0")
        import subprocess

        if DOCKER:
            proc = subprocess.run([DOCKER, "build", "--cache-from", "h10-cachefrom:1", "-"],
                                  input=df["Dockerfile"], env=env, capture_output=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            out = proc.stdout.decode()  # the CLI sends a stdin Dockerfile as the context
            assert out.count("Using cache") == 3 and f"Successfully built {first[7:19]}" in out, out
        client.api.prune_builds()
        lines, fresh = _build(client, df)
        assert "Using cache" not in _stream(lines) and fresh != first
        client.images.remove(fresh, force=True)
    finally:
        client.images.remove("h10-cachefrom:1", force=True)


def test_runtime_per_container(client, d):
    """5: HostConfig.Runtime: /info lists the runtimes; a container asking for runc is
    run (and exec'd, stopped) by runc; an unknown name is docker's error."""
    import shutil
    import subprocess

    runtimes = client.info()["Runtimes"]
    assert "conch" in runtimes
    p = _cli(d, "run", "--rm", "--runtime", "nope", "busybox", "true")
    assert p.returncode == 125 and "unknown or invalid runtime name: nope" in p.stderr, p
    runc = shutil.which("runc")
    if runc is None or "runc" not in runtimes:
        pytest.skip("runc is not installed (make test-deps)")
    c = client.containers.run("busybox", "sleep 60", detach=True, runtime="runc")
    try:
        assert client.api.inspect_container(c.id)["HostConfig"]["Runtime"] == "runc"
        state = subprocess.run([runc, "--root", str(d.exec_root / "runtime"), "state", c.id],
                               capture_output=True, text=True, timeout=30)
        assert state.returncode == 0 and json.loads(state.stdout)["status"] == "running", state
        assert c.exec_run("echo via-runc").output == b"via-runc\n"
        c.stop(timeout=2)
        assert c.wait(timeout=30)["StatusCode"] == 137
    finally:
        c.remove(force=True)
    assert _cli(d, "run", "--rm", "--runtime", "conch", "busybox", "echo", "ok").stdout == "ok\n"


# -- item 6 (and 5's MacAddress): networks --------------------------------------------

def test_endpoint_settings_kept_and_mac_applied(client, d):
    """5/6: endpoint settings given at create and at connect are kept and shown
    (Aliases, Links, DriverOpts, IPAMConfig, MacAddress); MacAddress (the endpoint's and
    the deprecated Config.MacAddress) is the interface's address."""
    from conch.testing.daemon import free_subnet
    import ipaddress

    subnet = ipaddress.ip_network(free_subnet())
    net = client.networks.create("h10-eps", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=str(subnet))]))
    try:
        ip = str(subnet.network_address + 10)
        other = client.containers.run("busybox", "sleep 60", detach=True, name="h10-other",
                                      network="h10-eps")
        other_ip = client.api.inspect_container(other.id)["NetworkSettings"]["Networks"]["h10-eps"]["IPAddress"]
        cfg = client.api.create_networking_config({"h10-eps": client.api.create_endpoint_config(
            aliases=["al1"], links={"h10-other": "ln"}, ipv4_address=ip, link_local_ips=["169.254.9.9"],
            mac_address="02:aa:bb:cc:dd:01", driver_opt={"k": "v"})})
        c = client.api.create_container("busybox", ["sh", "-c", "cat /sys/class/net/eth0/address; "
                                                  "ip -o -4 addr show eth0 | grep -c 169.254.9.9/16; "
                                                  f"nslookup ln | grep -c {other_ip}"],
                                        networking_config=cfg,
                                        host_config=client.api.create_host_config(network_mode="h10-eps"))
        ep = client.api.inspect_container(c["Id"])["NetworkSettings"]["Networks"]["h10-eps"]
        assert ep["Aliases"] == ["al1"] and ep["Links"] == ["h10-other:ln"]
        assert ep["IPAMConfig"] == {"IPv4Address": ip, "LinkLocalIPs": ["169.254.9.9"]}
        assert ep["MacAddress"] == "02:aa:bb:cc:dd:01" and ep["DriverOpts"] == {"k": "v"}
        client.api.start(c["Id"])
        assert client.api.wait(c["Id"], timeout=30)["StatusCode"] == 0
        # LinkLocalIPs applied; the link's alias resolves (for this container) to its target
        assert client.api.logs(c["Id"]) == b"02:aa:bb:cc:dd:01\n1\n1\n"
        client.api.remove_container(c["Id"])
        # the CLI's --mac-address on the default bridge
        out = ok(_cli(d, "run", "--rm", "--mac-address", "02:aa:bb:cc:dd:02", "busybox",
                      "cat", "/sys/class/net/eth0/address"))
        assert out == "02:aa:bb:cc:dd:02\n"
        # connect keeps its EndpointConfig too
        c2 = client.containers.create("busybox", "sleep 60")
        net.connect(c2, aliases=["al2"], links={"x": "y"}, ipv4_address=str(subnet.network_address + 11),
                    driver_opt={"a": "b"}, mac_address="02:aa:bb:cc:dd:03")
        ep = client.api.inspect_container(c2.id)["NetworkSettings"]["Networks"]["h10-eps"]
        assert ep["Aliases"] == ["al2"] and ep["Links"] == ["x:y"] and ep["DriverOpts"] == {"a": "b"}
        assert ep["IPAMConfig"] == {"IPv4Address": str(subnet.network_address + 11)}
        assert ep["MacAddress"] == "02:aa:bb:cc:dd:03"
        c2.start()
        assert c2.exec_run("cat /sys/class/net/eth1/address").output == b"02:aa:bb:cc:dd:03\n"
        assert c2.exec_run("nslookup ln").exit_code != 0  # another container's link alias
        c2.remove(force=True)
        with pytest.raises(docker.errors.APIError) as exc:
            client.api.create_container("busybox", "true", networking_config=client.api.create_networking_config(
                {"h10-eps": client.api.create_endpoint_config(mac_address="nope")}),
                host_config=client.api.create_host_config(network_mode="h10-eps"))
        assert exc.value.status_code == 400 and "invalid MAC address nope" in str(exc.value)
    finally:
        for ctr in client.containers.list(all=True, filters={"network": "h10-eps"}):
            ctr.remove(force=True)
        net.remove()


def test_network_names_and_ipam_shapes(client, d):
    """6: a network name with spaces works as Docker's; IPAM.Options is null unless
    given (docker-py sends none, the CLI {}); AuxiliaryAddresses are shown and never
    given to a container."""
    from conch.testing.daemon import free_subnet
    import ipaddress

    subnet = ipaddress.ip_network(free_subnet())
    aux = str(subnet.network_address + 2)
    made = []
    try:
        pool = docker.types.IPAMPool(subnet=str(subnet), aux_addresses={"router": aux})
        net = client.networks.create("h10 spaced net", ipam=docker.types.IPAMConfig(pool_configs=[pool]))
        made.append(net)
        ipam = client.api.inspect_network(net.id)["IPAM"]
        assert ipam["Options"] is None
        assert ipam["Config"] == [{"Subnet": str(subnet), "Gateway": str(subnet.network_address + 1),
                                   "AuxiliaryAddresses": {"router": aux}}]
        out = ok(_cli(d, "run", "--rm", "--network", "h10 spaced net", "busybox",
                      "ip", "-o", "-4", "addr", "show", "eth0"))
        assert f"{subnet.network_address + 3}/" in out, out  # .2 is the router's
        assert client.networks.get("h10 spaced net").name == "h10 spaced net"
        ok(_cli(d, "network", "create", "h10-cli-net"))
        made.append(client.networks.get("h10-cli-net"))
        assert client.api.inspect_network("h10-cli-net")["IPAM"]["Options"] == {}
        bridge = client.api.inspect_network("bridge")["IPAM"]
        assert bridge["Options"] is None
        with pytest.raises(docker.errors.APIError) as exc:
            client.networks.create("   ")
        assert exc.value.status_code == 400
    finally:
        for net in made:
            net.remove()


def test_remove_legacy_link(client, d):
    """6: DELETE /containers/{parent}/{alias}?link=1 (docker rm --link) removes the link:
    inspect no longer lists it, the running parent's /etc/hosts loses the alias."""
    db = client.containers.run("busybox", "sleep 60", detach=True, name="h10-db")
    web = client.containers.run("busybox", "sleep 60", detach=True, name="h10-web",
                                links={"h10-db": "dbalias"})
    try:
        assert client.api.inspect_container(web.id)["HostConfig"]["Links"] == ["/h10-db:/h10-web/dbalias"]
        assert b"dbalias" in web.exec_run("cat /etc/hosts").output
        ok(_cli(d, "rm", "--link", "/h10-web/dbalias"))
        assert client.api.inspect_container(web.id)["HostConfig"]["Links"] is None
        assert b"dbalias" not in web.exec_run("cat /etc/hosts").output
        p = _cli(d, "rm", "--link", "/h10-web/dbalias")
        assert p.returncode != 0 and "No such container: h10-web/dbalias" in p.stderr, p
        db.reload()
        assert db.status == "running"  # the link went, not the container
    finally:
        web.remove(force=True)
        db.remove(force=True)


def _ipv6_usable() -> str | None:
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
            if f.read().strip() != "0":
                return "IPv6 is disabled on this host"
    except OSError:
        return "no IPv6 in this kernel"
    return None


def test_ipv6_network(client, d):
    """6: EnableIPv6 with a v6 IPAM pool: containers get an IPv6 address (the pool's or
    IPAMConfig.IPv6Address), a default v6 route and the inspect fields; two containers
    talk over IPv6; a port published on every address answers on "::" too (DNAT to the
    container's v6 address); the subnet is masqueraded (ip6 table)."""
    import random
    import socket
    import subprocess

    why = _ipv6_usable()
    if why:
        pytest.skip(why)
    subnet = f"fd{random.randint(0x10, 0xff):02x}:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}::/64"
    prefix = subnet[:-3]  # "fdxx:y:z::"
    pool = docker.types.IPAMPool(subnet=subnet)
    net = client.networks.create("h10-v6", enable_ipv6=True,
                                 ipam=docker.types.IPAMConfig(pool_configs=[pool]))
    try:
        info = client.api.inspect_network(net.id)
        assert info["EnableIPv6"] is True
        assert {"Subnet": subnet, "Gateway": prefix + "1"} in info["IPAM"]["Config"]
        port = __import__("conch.testing.daemon", fromlist=["free_port"]).free_port()
        srv = client.containers.run(
            "busybox", ["sh", "-c", "echo v6-hello > /www/index.html 2>/dev/null || "
                        "(mkdir -p /www && echo v6-hello > /www/index.html); httpd -f -p 80 -h /www"],
            detach=True, network="h10-v6", ports={"80/tcp": port}, name="h10-srv6")
        srv.reload()
        ep = srv.attrs["NetworkSettings"]["Networks"]["h10-v6"]
        assert ep["GlobalIPv6Address"].startswith(prefix) and ep["GlobalIPv6PrefixLen"] == 64
        assert ep["IPv6Gateway"] == prefix + "1"
        assert {"HostIp": "::", "HostPort": str(port)} in srv.attrs["NetworkSettings"]["Ports"]["80/tcp"]
        members = client.api.inspect_network(net.id)["Containers"]
        assert members[srv.id]["IPv6Address"] == ep["GlobalIPv6Address"] + "/64"
        # a fixed address from the endpoint config, and v6 traffic between containers
        cfg = client.api.create_networking_config({"h10-v6": client.api.create_endpoint_config(
            ipv6_address=prefix + "99")})
        cli = client.api.create_container(
            "busybox", ["sh", "-c", f"ip -6 route | grep default; grep {prefix}99 /etc/hosts; "
                        f"nslookup -type=AAAA h10-srv6; "
                        f"wget -q -O - http://[{ep['GlobalIPv6Address']}]/"],
            networking_config=cfg, host_config=client.api.create_host_config(network_mode="h10-v6"))
        client.api.start(cli["Id"])
        assert client.api.wait(cli["Id"], timeout=30)["StatusCode"] == 0
        out = client.api.logs(cli["Id"]).decode()
        assert f"default via {prefix}1" in out and "v6-hello" in out, out
        assert f"{prefix}99\t{cli['Id'][:12]}" in out, out  # /etc/hosts names its v6 address
        assert f"Address: {ep['GlobalIPv6Address']}" in out, out  # the embedded DNS's AAAA
        ep2 = client.api.inspect_container(cli["Id"])["NetworkSettings"]["Networks"]["h10-v6"]
        assert ep2["IPAMConfig"] == {"IPv6Address": prefix + "99"}
        client.api.remove_container(cli["Id"])
        # the host reaches the published port over IPv6 (its own address on the bridge)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection((prefix + "1", port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    body = b""
                    while chunk := s.recv(4096):
                        body += chunk
                assert b"v6-hello" in body, body
                break
            except OSError:
                assert time.monotonic() < deadline, "no answer on the IPv6 published port"
                time.sleep(0.2)
        table = subprocess.run(["nft", "list", "table", "ip6", d.nft_table], capture_output=True,
                               text=True, timeout=30).stdout
        assert subnet in table and "masquerade" in table, table
        srv.remove(force=True)
        # no v6 pool given: a unique-local /64 of its own
        auto = client.networks.create("h10-v6-auto", enable_ipv6=True)
        try:
            v6 = [c for c in client.api.inspect_network(auto.id)["IPAM"]["Config"] if ":" in c["Subnet"]]
            assert len(v6) == 1 and v6[0]["Subnet"].startswith("fd") and v6[0]["Subnet"].endswith("::/64")
        finally:
            auto.remove()
    finally:
        for ctr in client.containers.list(all=True, filters={"network": "h10-v6"}):
            ctr.remove(force=True)
        net.remove()
    table = subprocess.run(["nft", "list", "table", "ip6", d.nft_table], capture_output=True,
                           text=True, timeout=30).stdout
    assert subnet not in table


def test_dockerpy_run_keeps_the_last_lines(client):
    """docker-py's run() follows the logs from right after start: a container that exits
    at once must not lose its last lines (found while comparing item 11's output)."""
    cmd = ["sh", "-c", "echo one; echo two; echo three"]
    for _ in range(8):
        assert client.containers.run("busybox", cmd, remove=True) == b"one\ntwo\nthree\n"
