"""Push and pull of a ~200 MB image through a loopback registry: conch vs podman vs skopeo.

    .venv/bin/python bench/pull_push_bench.py [--runs 3] [--mb 200] [--tools conch,podman,skopeo]

The image (made here, once): four layers, half incompressible (random bytes) and half
compressible (repeated text), saved as a docker-save tar with *uncompressed* layers, so
every tool compresses on push, as a freshly built image needs. Each tool loads it into
its own private store, then per run, against a fresh Debian ``docker-registry`` on
127.0.0.1 (so no run finds blobs of an earlier one):

* push: ``conch push`` (conchd on private roots) / ``podman push --tls-verify=false`` /
  ``skopeo copy docker-archive:… docker://…`` (skopeo reads the tar: no store);
* pull: remove the image, then ``conch pull`` / ``podman pull`` (both download, verify
  and unpack into their overlay stores) / ``skopeo copy docker://… dir:…`` (download and
  verify only: skopeo has no store to unpack into, so its pull does less work).
  Each tool pulls what it pushed, so each inflates its own gzip;
* pull-same: the same bytes for everyone: skopeo pushes the image (Go's gzip, as podman
  and docker would) to a fresh registry, and conch and podman each pull it into an
  empty store.

Wall clock around each CLI call; medians over ``--runs``; MB/s over the image's
uncompressed size; ratios against podman. JSON in ``bench/results/pull-push-<ts>.json``.
Not a test: numbers are only comparable on one quiet machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conch.testing.podman import PodmanStore  # noqa: E402
from conch.testing.registry import DistributionRegistry  # noqa: E402


def make_image(work: Path, total_mb: int) -> tuple[Path, int]:
    """A docker-save tar of 4 uncompressed layers; (path, uncompressed bytes)."""
    per = total_mb * (1 << 20) // 4
    layers, diff_ids, size = [], [], 0
    for i in range(4):
        root = work / f"layer{i}"
        root.mkdir(parents=True)
        chunk = (1 << 20) * 4
        for j in range(per // chunk):
            data = os.urandom(chunk) if i % 2 == 0 else (f"line {i} {j} " * 400).encode()[:chunk] * (
                chunk // len((f"line {i} {j} " * 400).encode()[:chunk]) + 1)
            (root / f"f{j}").write_bytes(data[:chunk])
        tar_path = work / f"layer{i}.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(root, arcname=f"data{i}")
        shutil.rmtree(root)
        layers.append(tar_path)
        diff_ids.append("sha256:" + _sha256(tar_path))
        size += tar_path.stat().st_size
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_hex = hashlib.sha256(config).hexdigest()
    out = work / "image.tar"
    with tarfile.open(out, "w") as tar:
        _add_bytes(tar, f"{cfg_hex}.json", config)
        names = []
        for i, path in enumerate(layers):
            name = f"{diff_ids[i][7:]}/layer.tar"
            tar.add(path, arcname=name)
            names.append(name)
            path.unlink()
        manifest = [{"Config": f"{cfg_hex}.json", "RepoTags": ["bench/big:latest"], "Layers": names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    return out, size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _run(argv, env=None, timeout=900) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return dt


class Conch:
    """conchd on private roots; the image is (re)loaded before each push so that every
    push starts from uncompressed layers, as podman's does."""

    name = "conch"

    def __init__(self, image: Path) -> None:
        from conch.testing.daemon import BIN, Daemon

        self.cli = str(BIN / "conch")
        self.image = image
        self.d = Daemon().start()

    def push(self, reg: str) -> float:
        ref = f"{reg}/bench/big:latest"
        self.d.conch("load", "-i", str(self.image), check=True, timeout=900)
        self.d.conch("tag", "bench/big:latest", ref, check=True)
        return _run([self.cli, "push", ref], env=self.d.env)

    def pull(self, reg: str) -> float:
        ref = f"{reg}/bench/big:latest"
        img = json.loads(self.d.conch("image", "inspect", ref, check=True).stdout)[0]
        self.d.conch("rmi", "-f", img["Id"], check=True, timeout=300)
        t = _run([self.cli, "pull", ref], env=self.d.env)
        self.d.conch("rmi", "-f", ref, check=True, timeout=300)
        return t

    def pull_same(self, reg: str) -> float:
        ids = self.d.conch("images", "-q", check=True).stdout.split()
        if ids:  # or the layers' snapshots (same diff_ids) would be found and kept
            self.d.conch("rmi", "-f", *ids, check=True, timeout=300)
        return _run([self.cli, "pull", f"{reg}/bench/same:latest"], env=self.d.env)

    def close(self) -> None:
        self.d.close(check_leaks=False)


class Podman:
    name = "podman"

    def __init__(self, image: Path, work: Path) -> None:
        self.store = PodmanStore(work, root=work / "podman-storage", runroot_prefix="bpr-")
        self.base, self.env = self.store.argv, self.store.env
        self.image = image

    def push(self, reg: str) -> float:
        _run([*self.base, "load", "-i", str(self.image)], env=self.env)
        return _run([*self.base, "push", "--tls-verify=false", "localhost/bench/big:latest",
                     f"docker://{reg}/bench/big:latest"], env=self.env)

    def pull(self, reg: str) -> float:
        ref = f"{reg}/bench/big:latest"
        # every image goes, or podman would find the layers (by diff_id) and skip them
        _run([*self.base, "rmi", "--all", "--force"], env=self.env)
        t = _run([*self.base, "pull", "--tls-verify=false", ref], env=self.env)
        _run([*self.base, "rmi", "--all", "--force"], env=self.env)
        return t

    def pull_same(self, reg: str) -> float:
        _run([*self.base, "rmi", "--all", "--force"], env=self.env)
        return _run([*self.base, "pull", "--tls-verify=false", f"{reg}/bench/same:latest"],
                    env=self.env)

    def close(self) -> None:
        self.store.close()


class Skopeo:
    name = "skopeo"

    def __init__(self, image: Path, work: Path) -> None:
        self.image, self.work = image, work

    def push(self, reg: str) -> float:
        return _run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{self.image}",
                     f"docker://{reg}/bench/big:latest"])

    def pull(self, reg: str) -> float:
        dest = self.work / "skopeo-dir"
        shutil.rmtree(dest, ignore_errors=True)
        return _run(["skopeo", "copy", "--src-tls-verify=false",
                     f"docker://{reg}/bench/big:latest", f"dir:{dest}"])

    def close(self) -> None:
        shutil.rmtree(self.work / "skopeo-dir", ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--tools", default="conch,podman,skopeo")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pp-bench-"))
    tools = []
    try:
        image, size = make_image(work / "img", args.mb)
        print(f"image: {size / 1e6:.0f} MB uncompressed, 4 layers", flush=True)
        for name in args.tools.split(","):
            if name == "conch":
                tools.append(Conch(image))
            elif name == "podman" and shutil.which("podman"):
                tools.append(Podman(image, work))
            elif name == "skopeo" and shutil.which("skopeo"):
                tools.append(Skopeo(image, work))
        times: dict[str, dict[str, list[float]]] = {
            t.name: {"push": [], "pull": [], "pull-same": []} for t in tools}
        for run in range(args.runs):
            for tool in tools:  # interleaved, a fresh registry per tool and run
                with DistributionRegistry() as reg:
                    times[tool.name]["push"].append(tool.push(reg.addr))
                    times[tool.name]["pull"].append(tool.pull(reg.addr))
                print(f"run {run + 1}: {tool.name} push {times[tool.name]['push'][-1]:.2f}s "
                      f"pull {times[tool.name]['pull'][-1]:.2f}s", flush=True)
            if shutil.which("skopeo"):
                with DistributionRegistry() as reg:
                    _run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{image}",
                          f"docker://{reg.addr}/bench/same:latest"])
                    for tool in tools:
                        if hasattr(tool, "pull_same"):
                            times[tool.name]["pull-same"].append(tool.pull_same(reg.addr))
                            print(f"run {run + 1}: {tool.name} pull-same "
                                  f"{times[tool.name]['pull-same'][-1]:.2f}s", flush=True)
        report(times, size)
    finally:
        for tool in tools:
            tool.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(times: dict, size: int) -> None:
    med = {t: {op: statistics.median(v) if v else float("nan") for op, v in ops.items()}
           for t, ops in times.items()}
    print("\n| tool | push median | push MB/s | pull median | pull MB/s | pull-same median | MB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t, m in med.items():
        print(f"| {t} | {m['push']:.2f} s | {size / 1e6 / m['push']:.0f} | "
              f"{m['pull']:.2f} s | {size / 1e6 / m['pull']:.0f} | "
              f"{m['pull-same']:.2f} s | {size / 1e6 / m['pull-same']:.0f} |")
    if "podman" in med and "conch" in med:
        print(f"\nconch vs podman (podman time / conch time): push "
              f"{med['podman']['push'] / med['conch']['push']:.2f}x, pull "
              f"{med['podman']['pull'] / med['conch']['pull']:.2f}x, pull-same "
              f"{med['podman']['pull-same'] / med['conch']['pull-same']:.2f}x")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"pull-push-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({"size": size, "times": times, "medians": med}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
