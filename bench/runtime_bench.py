#!/usr/bin/env python3
"""conch-runtime vs runc vs crun: container start-up cost, side by side.

Three scenarios, each running busybox's ``/bin/true``:

- ``run``: one foreground ``run`` (create + start + wait + delete in one process);
- ``create+start+delete``: three CLI calls, waiting for the process to exit (state
  "stopped") before ``delete``, as a shim would;
- ``run (docker config)``: ``run`` again, but of the config.json an engine really sends
  (conch.runtime.presets.docker_spec, as conch's engine builds it): Docker's default
  seccomp profile, its mounts and masked paths, the /etc/hostname, /etc/hosts and
  /etc/resolv.conf binds, a memory and a pids limit, an empty network namespace (as
  ``--network none``). The first two use runc's-spec-shaped bundle only
  (conch.testing.bundles: no seccomp), which flatters whoever skips work a real
  engine asks for.

conch-runtime's front takes ``create``/``run`` in C only when it can do everything the
config asks; which path it took for each ``run`` scenario is recorded (one extra,
unmeasured run with CONCH_RUNTIME_FRONT_DEBUG=1) in the JSON as ``conch_front``.

Each runtime that is installed *and* passes a one-off probe (crun 1.8 refuses this
machine's v1-hybrid cgroups, for one) gets ``--warmup`` unmeasured rounds, then
``--runs`` measured rounds; runtimes are interleaved within each round so drift in
machine load hits all of them alike. Times are wall clock from time.perf_counter
around subprocess.run. Results: a table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conch.testing.bundles import make_bundle  # noqa: E402
import timing  # noqa: E402  (bench/timing.py: waits that do not round times up)

RESULTS = REPO / "bench" / "results"


def candidates() -> dict[str, str]:
    found = {}
    conch = Path(sys.prefix) / "bin" / "conch-runtime"
    if not conch.exists():
        conch = REPO / ".venv" / "bin" / "conch-runtime"
    if conch.exists():
        found["conch"] = str(conch)
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            found[name] = path
    return found


def docker_bundle(workdir: Path) -> Path:
    """A bundle whose config.json is what conch's engine sends for
    ``docker run --network none --memory 64m --pids-limit 100 busybox /bin/true``."""
    from conch.runtime.presets import docker_spec

    files = {}
    for name, text in (("hostname", "bench\n"), ("hosts", "127.0.0.1\tlocalhost\n"),
                       ("resolv.conf", "nameserver 127.0.0.1\n")):
        (workdir / f"etc-{name}").write_text(text)
        files[f"/etc/{name}"] = str(workdir / f"etc-{name}")
    mounts = [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}
              for dst, src in files.items()]
    spec = docker_spec(
        args=["/bin/true"], rootfs="rootfs", hostname="bench",
        env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=bench"],
        mounts=mounts, memory=64 << 20, pids_limit=100, cgroups_path="/conch-test/bench-docker")

    def replace(old: dict) -> dict:
        return spec

    return make_bundle(workdir / "bundle-docker", ["/bin/true"], replace)


class Bench:
    def __init__(self, name: str, binary: str, workdir: Path, bundle: Path,
                 docker: Path | None = None):
        self.name, self.binary, self.bundle = name, binary, bundle
        self.docker = docker or bundle
        self.root = workdir / f"root-{name}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # stderr goes to a file, not a pipe: after `create` the container's init holds
        # the runtime's stdio, and a pipe would make us wait for its EOF.
        with tempfile.TemporaryFile() as err:
            proc = timing.run([self.binary, "--root", str(self.root), *args],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, timeout=60)
            if check and proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{self.name} {' '.join(args)}: exit {proc.returncode}: "
                                   f"{err.read().decode(errors='replace').strip()}")
        return proc

    def run_once(self, bundle: Path | None = None) -> float:
        cid = f"bench-{uuid.uuid4().hex[:10]}"
        t0 = time.perf_counter()
        self.cli("run", "--bundle", str(bundle or self.bundle), cid)
        return time.perf_counter() - t0

    def run_docker(self) -> float:
        return self.run_once(self.docker)

    def front_path(self, bundle: Path) -> str:
        """The line conch-runtime's front prints with CONCH_RUNTIME_FRONT_DEBUG=1 for a
        ``run`` of ``bundle`` ("... run in C" or "... python: <reason>")."""
        cid = f"bench-{uuid.uuid4().hex[:10]}"
        env = dict(os.environ, CONCH_RUNTIME_FRONT_DEBUG="1")
        env.pop("CONCH_RUNTIME_FRONT", None)
        proc = subprocess.run([self.binary, "--root", str(self.root), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        lines = [l for l in proc.stderr.splitlines() if l.startswith("conch-runtime front: ")]
        if proc.returncode != 0:
            return f"run failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}"
        return lines[0] if lines else "(no front line: the front predates CONCH_RUNTIME_FRONT_DEBUG)"

    def create_start_delete(self) -> float:
        cid = f"bench-{uuid.uuid4().hex[:10]}"
        t0 = time.perf_counter()
        self.cli("create", "--bundle", str(self.bundle), cid)
        self.cli("start", cid)
        while True:  # wait for /bin/true to exit; the polls are part of the cost
            # no timeout: with one, CPython polls the exit with a back-off (see timing.py)
            state = subprocess.run([self.binary, "--root", str(self.root), "state", cid],
                                   capture_output=True, text=True)
            if state.returncode != 0 or json.loads(state.stdout)["status"] == "stopped":
                break
            time.sleep(0.001)
        self.cli("delete", cid)
        return time.perf_counter() - t0


SCENARIOS = {"run": Bench.run_once, "create+start+delete": Bench.create_start_delete,
             "run (docker config)": Bench.run_docker}


def summarise(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"runs": len(samples), "median_ms": statistics.median(samples) * 1e3,
            "p90_ms": p90 * 1e3, "min_ms": ordered[0] * 1e3, "max_ms": ordered[-1] * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runtimes", default="conch,runc,crun")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="conch-bench-"))
    bundle = make_bundle(workdir / "bundle", ["/bin/true"],
                         lambda s: s["linux"].__setitem__("cgroupsPath",
                                                          "/conch-test/bench"))
    docker = docker_bundle(workdir)
    wanted = args.runtimes.split(",")
    benches, skipped = [], {}
    for name, binary in candidates().items():
        if name not in wanted:
            continue
        bench = Bench(name, binary, workdir, bundle, docker)
        try:
            bench.run_once()  # probe: can it run a container here at all?
            bench.run_docker()
            benches.append(bench)
        except Exception as exc:  # noqa: BLE001 - report and go on without it
            skipped[name] = str(exc)[:300]
    for name in wanted:
        if name not in [b.name for b in benches] and name not in skipped:
            skipped[name] = "not installed"
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    if not benches:
        print("no runtime could run a container", file=sys.stderr)
        return 1

    front = {}
    for bench in benches:
        if bench.name == "conch":
            front = {"run": bench.front_path(bench.bundle),
                     "run (docker config)": bench.front_path(bench.docker)}
            for scenario, line in front.items():
                print(f"conch {scenario}: {line}", file=sys.stderr)

    results: dict[str, dict[str, dict]] = {}
    for scenario, fn in SCENARIOS.items():
        samples: dict[str, list[float]] = {b.name: [] for b in benches}
        for round_ in range(args.warmup + args.runs):
            for bench in benches:  # interleaved: each round runs every runtime once
                elapsed = fn(bench)
                if round_ >= args.warmup:
                    samples[bench.name].append(elapsed)
        results[scenario] = {name: summarise(s) for name, s in samples.items()}

    ratios = {}
    for scenario, per in results.items():
        for ref in ("runc", "crun"):
            if "conch" in per and ref in per:
                ratios[f"{scenario} conch/{ref}"] = per["conch"]["median_ms"] / per[ref]["median_ms"]

    print(f"\n{'scenario':<22}{'runtime':<8}{'median ms':>11}{'p90 ms':>10}{'runs':>6}")
    for scenario, per in results.items():
        for name, s in per.items():
            print(f"{scenario:<22.22}{name:<8}{s['median_ms']:>11.1f}{s['p90_ms']:>10.1f}{s['runs']:>6}")
    for label, ratio in ratios.items():
        print(f"{label:<30}{ratio:>8.2f}x (median)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"runtime-{stamp}.json"
    out.write_text(json.dumps({
        "when": stamp, "host": platform.node(), "kernel": platform.release(),
        "runs": args.runs, "warmup": args.warmup,
        "binaries": {b.name: b.binary for b in benches}, "skipped": skipped,
        "results": results, "ratios_median": ratios, "conch_front": front,
    }, indent=2) + "\n")
    print(f"\nJSON: {out.relative_to(REPO)}")
    shutil.rmtree(workdir, ignore_errors=True)
    for leaf in [*Path("/sys/fs/cgroup").glob("*/conch-test/bench"),
                 *Path("/sys/fs/cgroup").glob("*/conch-test/bench-docker")]:
        for d in (leaf, leaf.parent):  # the shared parent only if nothing else uses it
            try:
                d.rmdir()
            except OSError:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
