"""BuildKit's Dockerfile syntax on conch's builder (issue 14): RUN --mount (cache kept
across builds, bind, tmpfs, secret never in a layer or the history), heredocs,
COPY --chmod/--link, ADD of a local http URL with --checksum, ``# syntax=`` and
FROM --platform; one Dockerfile combining cache mounts, heredocs, COPY --chmod, an
unused failing stage and two parallel stages.

One conchd for the module (conch.testing.daemon's; busybox imported; RUN on
``--network none``). Each test removes its images; the leak check runs after each.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading

import pytest

from conch.testing.build import images_fixture, write_context as _ctx
from conch.testing.daemon import BIN, daemon_fixture, ok

daemon = daemon_fixture("module")
images = images_fixture()


def _run(daemon, image: str, *cmd: str) -> str:
    return ok(daemon.conch("run", "--rm", "--network", "none", image, *cmd))


def _layer_files(daemon, image: str) -> list[tuple[str, bytes]]:
    """Every (name, content) in the image's saved layers, plus its config as text."""
    saved = subprocess.run([str(BIN / "conch"), "save", image], env=daemon.env,
                           capture_output=True, timeout=120, check=True).stdout
    outer = tarfile.open(fileobj=io.BytesIO(saved))
    out = []
    for m in outer.getmembers():
        if not m.isreg():
            continue
        data = outer.extractfile(m).read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                for im in inner.getmembers():
                    body = inner.extractfile(im).read() if im.isreg() else b""
                    out.append((im.name, body))
        except tarfile.TarError:
            out.append((m.name, data))  # config, manifest, index
    return out


COMBINED = """\
# syntax=docker/dockerfile:1.7
FROM busybox AS broken
RUN echo unused-stage-ran && exit 5

FROM busybox AS left
RUN --mount=type=cache,target=/cache,id=conch-e2e-cache <<EOF
set -e
echo run >> /cache/runs
wc -l < /cache/runs > /left-runs
EOF

FROM busybox AS right
ARG WHO=world
COPY <<EOT /greeting
hello $WHO
EOT
RUN echo right > /right

FROM busybox
COPY --chmod=0750 --link tool.sh /usr/local/bin/tool
COPY --from=left /left-runs /left-runs
COPY --from=right /greeting /right /
RUN <<EOF
cat /greeting /right > /combined
EOF
CMD ["cat", "/combined"]
"""


def test_combined_buildkit_dockerfile(daemon, images, tmp_path):
    ctx = _ctx(tmp_path, COMBINED, {"tool.sh": "#!/bin/sh\necho tool\n"})
    images.append("bk-combined:latest")
    out = ok(daemon.conch("build", "--no-cache", "--network", "none", "-t", "bk-combined", str(ctx),
                          timeout=120))
    assert "built-in Dockerfile frontend" in out  # the # syntax= note
    assert "unused-stage-ran" not in out
    assert _run(daemon, "bk-combined").splitlines() == ["hello world", "right"]
    assert _run(daemon, "bk-combined", "stat", "-c", "%a", "/usr/local/bin/tool").strip() == "750"
    assert _run(daemon, "bk-combined", "tool").strip() == "tool"
    first = int(_run(daemon, "bk-combined", "cat", "/left-runs"))
    # the cache mount is kept across builds: a second --no-cache build sees one more run
    ok(daemon.conch("build", "--no-cache", "--network", "none", "-t", "bk-combined", str(ctx),
                    timeout=120))
    assert int(_run(daemon, "bk-combined", "cat", "/left-runs")) == first + 1
    names = [n for n, _ in _layer_files(daemon, "bk-combined")]
    assert "cache" not in names and "cache/" not in names  # the mount point left no trace


def test_secret_bind_tmpfs_mounts(daemon, images, tmp_path):
    token = "s3cr3t-" + hashlib.sha256(os.urandom(8)).hexdigest()[:16]
    ctx = _ctx(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=tok,required=true "
        "sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha\n"
        "RUN --mount=type=bind,source=data,target=/mnt/data --mount=type=tmpfs,target=/scratch "
        "cat /mnt/data/x > /from-bind && echo t > /scratch/t && grep -q ' /scratch tmpfs' /proc/mounts\n"
    ), {"data/x": "bound\n"})
    (tmp_path / "tok.txt").write_text(token)
    images.append("bk-mounts:latest")
    ok(daemon.conch("build", "--network", "none", "--secret", f"id=tok,src={tmp_path / 'tok.txt'}",
                    "-t", "bk-mounts", str(ctx), timeout=120))
    assert _run(daemon, "bk-mounts", "cat", "/tok.sha").strip() == hashlib.sha256(token.encode()).hexdigest()
    assert _run(daemon, "bk-mounts", "cat", "/from-bind") == "bound\n"
    files = _layer_files(daemon, "bk-mounts")
    assert all(token.encode() not in body for _, body in files)  # not in a layer, config or history
    names = {n.rstrip("/") for n, _ in files}
    assert not names & {"mnt", "mnt/data", "scratch", "run/secrets", "run/secrets/tok"}
    history = ok(daemon.conch("history", "--no-trunc", "bk-mounts"))
    assert token not in history
    # a required secret that is missing fails the step (a cached step does not need it)
    images.append("bk-mounts-missing:latest")
    p = daemon.conch("build", "--no-cache", "--network", "none", "-t", "bk-mounts-missing", str(ctx),
                     timeout=120)
    assert p.returncode != 0 and "secret tok: not found" in p.stderr


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"downloaded payload\n"

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/files/payload.txt"
    server.shutdown()
    server.server_close()


def test_add_url_checksum_and_platform(daemon, images, tmp_path, http_url):
    good = "sha256:" + hashlib.sha256(_Handler.body).hexdigest()
    ctx = _ctx(tmp_path, (
        "FROM --platform=$BUILDPLATFORM busybox\n"
        f"ADD --checksum={good} {http_url} /dl/\n"
        f"ADD {http_url} /named.txt\n"
    ))
    images.append("bk-add:latest")
    ok(daemon.conch("build", "--network", "none", "-t", "bk-add", str(ctx), timeout=120))
    assert _run(daemon, "bk-add", "cat", "/dl/payload.txt", "/named.txt") == "downloaded payload\n" * 2
    assert _run(daemon, "bk-add", "stat", "-c", "%a %Y", "/named.txt").split() == ["600", "1445412480"]
    bad = _ctx(tmp_path / "bad", f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {http_url} /x\n")
    p = daemon.conch("build", "-t", "bk-add-bad", str(bad), timeout=120)
    assert p.returncode != 0 and "digest mismatch" in p.stderr
    other = _ctx(tmp_path / "plat", "FROM --platform=linux/s390x busybox\n")
    p = daemon.conch("build", "-t", "bk-plat", str(other), timeout=120)
    assert p.returncode != 0 and "host's platform" in p.stderr


def test_docker_cli_classic_and_docker_py_get_the_same_semantics(daemon, images, tmp_path):
    """POST /build is Docker's API: the docker CLI (DOCKER_BUILDKIT=0) and docker-py build
    the BuildKit-syntax Dockerfile too, and with SOURCE_DATE_EPOCH give the same image."""
    import docker

    from conch.testing.daemon import DOCKER

    if DOCKER is None:
        pytest.skip("the docker CLI is not installed")
    ctx = _ctx(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/c,id=conch-e2e-clients echo x >> /c/log && echo made > /made\n"
        "COPY --chmod=700 <<EOF /run.sh\n"
        "echo from heredoc\n"
        "EOF\n"
        'CMD ["sh", "/run.sh"]\n'
    ))
    images += ["bk-clients:cli", "bk-clients:py"]
    epoch = {"SOURCE_DATE_EPOCH": "1600000000"}
    p = subprocess.run([DOCKER, "build", "--no-cache", "--network", "none", "--build-arg",
                        "SOURCE_DATE_EPOCH=1600000000", "-t", "bk-clients:cli", str(ctx)],
                       env={**daemon.env, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    client = docker.DockerClient(base_url=daemon.host, version="1.45", timeout=120)
    try:
        image, _ = client.images.build(path=str(ctx), tag="bk-clients:py", nocache=True,
                                       network_mode="none", buildargs=epoch)
    finally:
        client.close()
    cli_id = json.loads(ok(daemon.conch("image", "inspect", "bk-clients:cli")))[0]["Id"]
    assert image.id == cli_id
    assert _run(daemon, "bk-clients:cli") == "from heredoc\n"
    assert _run(daemon, "bk-clients:cli", "stat", "-c", "%a", "/run.sh").strip() == "700"
