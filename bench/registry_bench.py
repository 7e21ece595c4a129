#!/usr/bin/env python3
"""Blob throughput: conch's registry vs Debian's ``docker-registry`` (CNCF distribution).

Both registries run here on 127.0.0.1 with private temp roots and no auth:

- **conch**: ``python -m conch.registry.server serve --addr ... --root ...``
- **distribution**: ``docker-registry serve config.yml`` (``make bench-deps``), filesystem
  driver, log level error; skipped with the reason when it is not installed.

Each round makes a fresh random blob of ``--size-mb`` MB (so no run finds its blob
already stored), then, per registry in rotating order:

- **PUT**: ``POST /v2/bench/blobs/uploads/`` then ``PUT <location>?digest=`` with the
  whole blob as body (the monolithic two-step push both registries speak), timed around
  the PUT: streaming in, hashing, fsync (conch) and the rename into place;
- **GET**: ``GET /v2/bench/blobs/<digest>`` to /dev/null, 3 times, median.

The client is curl (C) for both, so the client is not what is measured. Output: medians
in MB/s (1 MB = 10^6 bytes) over ``--runs`` rounds and the conch/distribution ratio.

    .venv/bin/python bench/registry_bench.py --runs 5 --size-mb 200
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DIST_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def start_conch(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "conch.registry.server", "serve",
                             "--addr", f"127.0.0.1:{port}", "--root", str(tmp / "conch-root"),
                             "--log-level", "warning"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "conch.log", "wb"))
    wait_port(port, proc)
    return proc, port


def start_distribution(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = tmp / "distribution.yml"
    cfg.write_text(DIST_CONFIG.format(root=tmp / "dist-root", port=port))
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "distribution.log", "wb"))
    wait_port(port, proc)
    return proc, port


def curl(*args: str) -> str:
    out = subprocess.run(["curl", "-sS", "--fail", *args], check=True, capture_output=True,
                         text=True)
    return out.stdout


def put_blob(port: int, path: Path, digest: str) -> float:
    headers = curl("-X", "POST", "-D", "-", "-o", "/dev/null",
                   f"http://127.0.0.1:{port}/v2/bench/blobs/uploads/")
    location = next(line.split(":", 1)[1].strip() for line in headers.splitlines()
                    if line.lower().startswith("location:"))
    if location.startswith("/"):
        location = f"http://127.0.0.1:{port}{location}"
    sep = "&" if "?" in location else "?"
    t0 = time.perf_counter()
    curl("-X", "PUT", "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
         "--data-binary", f"@{path}", "-o", "/dev/null", f"{location}{sep}digest={digest}")
    return time.perf_counter() - t0


def get_blob(port: int, digest: str) -> float:
    t0 = time.perf_counter()
    curl("-o", "/dev/null", f"http://127.0.0.1:{port}/v2/bench/blobs/{digest}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=200)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print("curl is needed", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="regbench-"))
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        procs["conch"] = start_conch(tmp)
        if shutil.which("docker-registry"):
            procs["distribution"] = start_distribution(tmp)
        else:
            print("distribution: skipped (docker-registry not installed; make bench-deps)")
        size = args.size_mb * 1_000_000
        results = {name: {"put": [], "get": []} for name in procs}
        blob = tmp / "blob"
        for run in range(args.runs):
            with open(blob, "wb") as f:  # --data-binary reads it whole into curl's memory
                f.write(os.urandom(size))
            digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
            names = list(procs)
            names = names[run % len(names):] + names[:run % len(names)]
            for name in names:
                port = procs[name][1]
                results[name]["put"].append(size / put_blob(port, blob, digest) / 1e6)
                gets = [get_blob(port, digest) for _ in range(3)]
                results[name]["get"].append(size / statistics.median(gets) / 1e6)
        print(f"blob size {args.size_mb} MB, {args.runs} runs, medians (MB/s):")
        print(f"{'registry':<14}{'PUT':>10}{'GET':>10}")
        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
        for name, m in med.items():
            print(f"{name:<14}{m['put']:>10.0f}{m['get']:>10.0f}")
        if "distribution" in med:
            for k in ("put", "get"):
                print(f"conch/distribution {k.upper()}: {med['conch'][k] / med['distribution'][k]:.2f}x")
    finally:
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
