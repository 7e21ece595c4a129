"""Time to scale a compose service from 1 to 10 replicas and back to 1 (issue 12):
conch compose and docker-compose 1.29 (PyPI) on a private conchd, podman-compose (PyPI)
on a private podman, in one run, rounds interleaved so load drift hits all alike.

    .venv/bin/python bench/compose_scale_bench.py [--rounds 3] [--tools conch,v1,podman]

The project (same file for all three): one busybox ``httpd`` service, no published port
(podman cannot share one between replicas), ``stop_signal: SIGKILL`` (no 10 s grace:
what is timed is the tool and the engine, not busybox ignoring SIGTERM as PID 1). Each
round per tool: ``up -d`` with 1 replica (untimed), then timed ``up -d --scale web=10``
and ``up -d --scale web=1``, then ``down`` (untimed). Wall-clock of the CLI call, median
over rounds; ratios conch/other (below 1: conch is faster). JSON in
``bench/results/compose-scale-<timestamp>.json``.

docker-compose 1.29 and podman-compose live in cached throwaway venvs
(``conch.testing.compose_v1``; podman-compose 1.6.0 beside it, made here); podman is
Debian's with ``conch.testing.podman``'s private store and runc (crun 1.8 refuses this
machine's cgroup layout). A tool that cannot run is reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conch.testing.compose_v1 import ComposeUnavailable, cache_root, compose_v1_binary  # noqa: E402
from conch.testing.daemon import BIN, Daemon, busybox_tar  # noqa: E402

PODMAN_COMPOSE = "podman-compose==1.6.0"
PROJECT = """\
services:
  web:
    image: docker.io/library/busybox:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/"]
    stop_signal: SIGKILL
"""


class Skip(Exception):
    pass


def podman_compose_binary() -> Path:
    final = cache_root() / "podman-compose-1.6.0"
    binary = final / "bin" / "podman-compose"
    if binary.exists():
        return binary
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".podman-compose-", dir=final.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(final)], check=True, capture_output=True)
        r = subprocess.run([str(final / "bin" / "pip"), "install", "-q", PODMAN_COMPOSE],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            shutil.rmtree(final, ignore_errors=True)
            raise Skip(f"pip install {PODMAN_COMPOSE}: {r.stderr.strip()[-300:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return binary


def timed(argv, env, cwd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:6]))}...: exit {r.returncode}\n{r.stderr[-800:]}")
    return dt


class Tool:
    scales_down = True

    def __init__(self, name, prefix, env, count):
        self.name, self.prefix, self.env, self.count = name, prefix, env, count

    def run(self, cwd, *args) -> float:
        return timed([*self.prefix, *args], self.env, cwd)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tools", default="conch,v1,podman")
    args = ap.parse_args()
    wanted = args.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="csb-"))
    (work / "compose.yaml").write_text(PROJECT)
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    d = store = None
    try:
        d = Daemon().start()
        d.import_busybox("docker.io/library/busybox:latest")

        def conch_count(project):
            return len(d.api.get("/containers/json", filters={
                "label": [f"com.docker.compose.project={project}"]}))

        if "conch" in wanted:
            tools.append(Tool("conch compose", [str(BIN / "conch"), "compose", "-f", "compose.yaml"],
                              d.env, conch_count))
        if "v1" in wanted:
            try:
                v1 = compose_v1_binary()
                tools.append(Tool("docker-compose 1.29 (conchd)", [str(v1), "-f", "compose.yaml"],
                                  d.env, conch_count))
            except ComposeUnavailable as exc:
                skipped["docker-compose 1.29"] = str(exc)
        if "podman" in wanted:
            try:
                tools.append(podman_tool(work))
                store = tools[-1].store
            except (Skip, AssertionError, OSError, subprocess.SubprocessError) as exc:
                skipped["podman-compose"] = str(exc)[-400:]
        results: dict[str, dict[str, list[float]]] = {t.name: {"up 1->10": [], "down 10->1": []} for t in tools}
        for rnd in range(args.rounds):
            for t in tools:
                project = f"csb{rnd}{tools.index(t)}"
                pflag = ["-p", project]
                t.run(work, *pflag, "up", "-d")
                results[t.name]["up 1->10"].append(t.run(work, *pflag, "up", "-d", "--scale", "web=10"))
                n = t.count(project)
                assert n == 10, f"{t.name}: {n} running after scale to 10"
                if t.scales_down:
                    results[t.name]["down 10->1"].append(
                        t.run(work, *pflag, "up", "-d", "--scale", "web=1"))
                    n = t.count(project)
                    assert n == 1, f"{t.name}: {n} running after scale to 1"
                t.run(work, *pflag, "down")
                down = results[t.name]["down 10->1"]
                print(f"round {rnd + 1}: {t.name}: up {results[t.name]['up 1->10'][-1]:.2f}s, "
                      f"down {f'{down[-1]:.2f}s' if down else 'n/a'}", flush=True)
        report(results, skipped, args.rounds)
    finally:
        if store is not None:
            store.close()
        if d is not None:
            d.close(check_leaks=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def podman_tool(work: Path) -> Tool:
    from conch.testing.podman import PodmanStore

    if not shutil.which("podman"):
        raise Skip("podman is not installed (`make test-deps` installs it)")
    binary = podman_compose_binary()
    (work / "podman").mkdir(exist_ok=True)
    store = PodmanStore(work / "podman", runtime="runc")
    store.run("import", "--change", 'CMD ["sh"]', str(busybox_tar()), "docker.io/library/busybox:latest")
    probe = store.run("run", "--rm", "docker.io/library/busybox:latest", "true", check=False)
    if probe.returncode != 0:
        store.close()
        raise Skip(f"podman cannot run a container here: {probe.stderr.strip()[-300:]}")
    wrapper = work / "podman-wrap"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in store.argv) + ' "$@"\n')
    wrapper.chmod(0o755)

    def count(project):
        r = store.run("ps", "-q", "--filter", f"label=io.podman.compose.project={project}")
        return len(r.stdout.split())

    tool = Tool("podman-compose 1.6 (podman)", [str(binary), "--podman-path", str(wrapper),
                                                 "-f", "compose.yaml"], store.env, count)
    tool.store = store
    # podman-compose 1.6 has no `scale` verb and its `up --scale web=1` leaves all ten
    # running (checked by this bench): only 1 -> 10 is comparable
    tool.scales_down = False
    return tool


def report(results, skipped, rounds) -> None:
    med = {t: {k: statistics.median(v) for k, v in r.items() if v} for t, r in results.items()}
    print(f"\nscale a service 1 -> 10 -> 1 ({rounds} rounds, median seconds)")
    print(f"{'tool':<32}{'up 1->10':>10}{'down 10->1':>12}{'total':>9}")
    for t, m in med.items():
        down = f"{m['down 10->1']:.2f}" if "down 10->1" in m else "n/a"
        total = f"{sum(m.values()):.2f}" if "down 10->1" in m else "n/a"
        print(f"{t:<32}{m['up 1->10']:>10.2f}{down:>12}{total:>9}")
    base = med.get("conch compose")
    ratios = {}
    if base:
        for t, m in med.items():
            if t == "conch compose":
                continue
            ratios[t] = {k: base[k] / m[k] for k in m}
            if "down 10->1" in m:
                ratios[t]["total"] = sum(base.values()) / sum(m.values())
            print(f"conch / {t}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios[t].items()))
    for t, why in skipped.items():
        print(f"skipped {t}: {why}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"compose-scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"rounds": rounds, "raw": results, "median": med, "ratios": ratios,
                                "skipped": skipped}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
