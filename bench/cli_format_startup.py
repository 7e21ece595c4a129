"""Wall time of ``conch ps`` and ``conch ps --format '{{json .}}'`` (issue 17: the Go
template engine is imported only when a template needs it, so plain ``conch ps`` must not
get slower).

    .venv/bin/python bench/cli_format_startup.py                  # this tree
    .venv/bin/python bench/cli_format_startup.py --before REV     # and the tree at REV

The CLI runs as the ``.venv/bin/conch`` launcher does (``python -I -S``, the tree first on
sys.path) against an in-process aiohttp server (``conch.testing.fake_engine.ServerThread``)
answering ``--containers`` containers, so only the CLI is measured: no conchd, no root. ``--before REV`` exports REV with ``git archive`` to a temp dir and measures it the
same way, interleaved with this tree so load drift hits both alike. Prints the median and
p90 of each (ms) and writes nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LAUNCH = "import sys; sys.path.insert(0, {repo!r}); from conch.cli.main import run; run()"


def _app(n: int):
    """An API app answering /containers/json with ``n`` containers (all ps asks for)."""
    from aiohttp import web

    rows = [{"Id": f"{i:064x}", "Names": [f"/c{i}"], "Image": "busybox", "ImageID": "sha256:" + "a" * 64,
             "Command": "sleep 1000", "Created": 1_700_000_000, "Ports": [], "Labels": {"k": "v"},
             "State": "running", "Status": "Up 2 hours", "HostConfig": {"NetworkMode": "bridge"},
             "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": []} for i in range(n)]

    async def containers(request):
        return web.json_response(rows, headers={"Api-Version": "1.50"})

    app = web.Application()
    app.router.add_get("/v{version}/containers/json", containers)
    app.router.add_get("/containers/json", containers)
    return app


def _time(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{argv[-3:]} failed: {p.stderr.decode()[:500]}")
    return dt * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--containers", type=int, default=10)
    ap.add_argument("--before", help="a git revision to measure side by side")
    args = ap.parse_args()

    from conch.testing.fake_engine import ServerThread

    trees = {"now": str(REPO)}
    tmp = Path(tempfile.mkdtemp(prefix="cli-fmt-bench-"))
    try:
        if args.before:
            dest = tmp / "before"
            dest.mkdir()
            tar = subprocess.run(["git", "-C", str(REPO), "archive", args.before], check=True,
                                 capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
            trees = {f"before ({args.before})": str(dest), **trees}
        with ServerThread(_app(args.containers), tmp / "api.sock") as srv:
            env = dict(os.environ, CONCH_HOST=srv.host)
            cases = {f"{name}: {label}": [sys.executable, "-I", "-S", "-c", LAUNCH.format(repo=tree), *argv]
                     for name, tree in trees.items()
                     for label, argv in (("ps", ["ps"]), ("ps --format '{{json .}}'", ["ps", "--format", "{{json .}}"]))}
            times: dict[str, list[float]] = {k: [] for k in cases}
            for i in range(args.warmup + args.runs):
                for key, argv in cases.items():  # interleaved
                    dt = _time(argv, env)
                    if i >= args.warmup:
                        times[key].append(dt)
        print(f"{'case':<48} {'median':>9} {'p90':>9}  ({args.runs} runs, {args.containers} containers)")
        for key, ts in times.items():
            ts.sort()
            print(f"{key:<48} {statistics.median(ts):8.1f}ms {ts[int(len(ts) * 0.9) - 1]:8.1f}ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
