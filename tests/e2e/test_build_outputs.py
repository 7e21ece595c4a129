"""``conch build`` outputs and caches (issue 14): ``--output type=local|tar|oci``,
``--iidfile``, ``--progress=plain`` with per-step timings, and ``--cache-to/--cache-from
type=registry`` against conch's own registry (``conch registry serve`` on 127.0.0.1).

One conchd for the module (conch.testing.daemon's; busybox imported); each test removes
its images; the leak check runs after each.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from conch.testing.build import images_fixture, write_context
from conch.testing.daemon import daemon_fixture, ok
from conch.testing.registry_server import RegistryServer

daemon = daemon_fixture("module")
images = images_fixture()

DOCKERFILE = (
    "FROM busybox\n"
    "RUN echo made > /made && echo to-stderr >&2\n"
    "COPY data.txt /data.txt\n"
    'CMD ["cat", "/made"]\n'
)


def _ctx(tmp_path: Path) -> Path:
    return write_context(tmp_path / "ctx", DOCKERFILE, {"data.txt": "data\n"})


def test_outputs_local_tar_oci_and_iidfile(daemon, images, tmp_path):
    ctx = _ctx(tmp_path)
    images.append("out-a:latest")
    local, fs_tar, oci = tmp_path / "local", tmp_path / "fs.tar", tmp_path / "oci.tar"
    iid = tmp_path / "iid"
    ok(daemon.conch("build", "--network", "none", "-t", "out-a", "--iidfile", str(iid),
                    "--output", f"type=local,dest={local}", "--output", f"type=tar,dest={fs_tar}",
                    "-o", f"type=oci,dest={oci}", str(ctx), timeout=120))
    image_id = iid.read_text()
    assert image_id == json.loads(ok(daemon.conch("image", "inspect", "out-a")))[0]["Id"]
    assert (local / "made").read_text() == "made\n" and (local / "data.txt").read_text() == "data\n"
    assert (local / "bin" / "busybox").is_file()
    with tarfile.open(fs_tar) as t:
        assert t.extractfile("made").read() == b"made\n"
    with tarfile.open(oci) as t:
        index = json.load(t.extractfile("index.json"))
        assert index["manifests"] and "oci-layout" in t.getnames()
    assert daemon.container_ids() == []  # the export's container is gone


def test_progress_plain_has_step_timings(daemon, images, tmp_path):
    ctx = _ctx(tmp_path)
    images.append("out-p:latest")
    first = daemon.conch("build", "--network", "none", "--progress=plain", "-t", "out-p", str(ctx),
                         timeout=120)
    assert first.returncode == 0, first.stderr
    err = first.stderr
    assert "#1 [1/4] FROM busybox" in err and "#2 [2/4] RUN echo made" in err
    assert re.search(r"^#2 \d+\.\d{3} to-stderr$", err, re.M), err
    assert re.search(r"^#2 DONE \d+\.\ds$", err, re.M), err
    again = daemon.conch("build", "--network", "none", "--progress=plain", "-t", "out-p", str(ctx),
                         timeout=120)
    assert "#2 CACHED" in again.stderr and "#3 CACHED" in again.stderr, again.stderr


def test_cache_to_and_from_registry(daemon, images, tmp_path):
    ctx = _ctx(tmp_path)
    with RegistryServer(tmp_path / "registry") as reg:
        ref = f"{reg.host}/cache/app:buildcache"
        images += ["out-c:latest", "out-c2:latest", ref]
        ok(daemon.conch("build", "--network", "none", "-t", "out-c", "--cache-to",
                        f"type=registry,ref={ref}", str(ctx), timeout=120))
        built = json.loads(ok(daemon.conch("image", "inspect", "out-c")))[0]["Id"]
        # forget everything local: the image, its cache tag and the step cache
        ok(daemon.conch("rmi", "-f", "out-c", ref))
        ok(daemon.conch("builder", "prune", "-f"))
        out = ok(daemon.conch("build", "--network", "none", "-t", "out-c2", "--cache-from",
                              f"type=registry,ref={ref}", str(ctx), timeout=120))
        assert out.count("Using cache") == 3, out
        assert json.loads(ok(daemon.conch("image", "inspect", "out-c2")))[0]["Id"] == built
        # a cache that cannot be imported is a warning, not a failure
        p = daemon.conch("build", "--network", "none", "-t", "out-c2", "--cache-from",
                         f"type=registry,ref={reg.host}/cache/missing:x", str(ctx), timeout=120)
        assert p.returncode == 0 and "failed to import cache" in p.stderr, p.stderr
