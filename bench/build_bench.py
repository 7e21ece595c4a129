"""Build benchmark (issue 14): the issue's multi-stage Dockerfile built cold
(``--no-cache``) and warm (all cached), conch against docker's classic builder,
BuildKit and ``podman build``, in one run; medians and ratios.

Engines (bench/daemon_bench.py's, each on private state, one busybox rootfs tarball
imported as ``busybox:latest`` into each):

- **conch**: a private conchd; ``conch build --network none``;
- **classic**: a private Debian dockerd 20.10 (``--bridge none --iptables=false``) with
  Debian's own CLI ``/usr/bin/docker``, ``DOCKER_BUILDKIT=0 docker build --network none``;
- **buildkit**: the same dockerd, ``DOCKER_BUILDKIT=1 docker build --network none``;
- **podman**: ``podman build --network none`` when podman can run here.

Rounds rotate which engine goes first (load drift hits all alike). Cold rounds use
``--no-cache``; warm rounds rebuild the same context with the cache. Output: a table,
the issue's ratios (goal: cold conch/buildkit <= 1.0, warm conch/classic <= 0.7) and
JSON in bench/results/build-<timestamp>.json.

    sudo .venv/bin/python bench/build_bench.py --runs 5

``--base-tree DIR`` adds ``conch-base``: conchd from another source tree (a ``git worktree``
of the base revision), so a change and its base are measured in the same run.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemon_bench as db  # noqa: E402  (the engines, daemons and the busybox tarball)

DOCKERFILE = """\
FROM busybox:latest AS build
RUN dd if=/dev/urandom of=/out bs=1M count=20
RUN echo hi > /x
RUN mkdir -p /gen && for i in $(seq 1 200); do echo $i > /gen/f$i; done && tar -cf /gen.tar /gen
FROM busybox:latest
COPY --from=build /out /out
COPY --from=build /x /x
COPY --from=build /gen.tar /gen.tar
CMD ["cat", "/x"]
"""


class Builder:
    """One way of building: an engine's CLI plus the flags and environment it needs."""

    def __init__(self, name: str, engine: db.Engine, env: dict[str, str] | None = None):
        self.name, self.engine = name, engine
        self.env = {**engine.env, **(env or {})}

    def build(self, ctx: Path, tag: str, cold: bool) -> float:
        args = ["build", "--network", "none", "-q", "-t", tag, *(["--no-cache"] if cold else []), str(ctx)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.run([*self.engine.argv, *args], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=err, env=self.env, timeout=300)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{self.name} build: exit {proc.returncode}: "
                                   f"{err.read().decode(errors='replace')[-600:]}")
        return elapsed


class ConchAt(db.Conch):
    """conchd from another source tree (``--base-tree``: a git worktree of the base
    revision) on its own state, to measure a change against its base in one run: the
    daemon runs that tree's code; the CLI, shim and runtime are this venv's."""

    name = "conch-base"

    def __init__(self, work: Path, tree: Path):
        super().__init__(work)
        self.tree = tree

    def start(self) -> None:
        import sysconfig

        log = self.work / "conchd.log"
        boot = (f"import sys; sys.path.insert(0, {str(self.tree)!r}); "
                f"sys.path.append({sysconfig.get_paths()['purelib']!r}); "
                "from conch.daemon.main import main; sys.exit(main())")
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                [str(db.VENV_BIN / "python3"), "-ISOO", "-c", boot, "--data-root", str(self.work / "data"),
                 "--exec-root", str(self.work / "exec"), "-H", f"unix://{self.sock}",
                 # its own bridge and nft table: two conchds on one host must not share them
                 "--bridge-name", "cbbase14", "--bip", "10.231.14.1/24", "--nft-table", "conch_base14"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
        db.wait_socket(self.sock, self.proc, log, 30)


def summarise(samples: list[float]) -> dict:
    return {"runs": len(samples), "median_ms": statistics.median(samples) * 1e3,
            "min_ms": min(samples) * 1e3, "max_ms": max(samples) * 1e3,
            "samples_ms": [round(s * 1e3, 1) for s in samples]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured rounds per mode")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--builders", default="conch,classic,buildkit,podman")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--base-tree", type=Path, default=None,
                    help="also build with conchd from this source tree (builder 'conch-base')")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("build_bench.py needs root (it runs container engines)", file=sys.stderr)
        return 1
    wanted = args.builders.split(",") + (["conch-base"] if args.base_tree is not None else [])
    work = Path(tempfile.mkdtemp(prefix="conch-build-bench-"))
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    cgroups_before = db.cgroup_dirs()
    engines: list[db.Engine] = []
    builders: list[Builder] = []
    skipped: dict[str, str] = {}
    results: dict[str, dict] = {}
    try:
        tarball = db.rootfs_tarball(work)

        def start(make):
            engine = make()
            engines.append(engine)
            engine.start()
            engine.import_image(tarball)
            return engine

        def add(name: str, make_builder) -> None:
            if name not in wanted:
                return
            try:
                b = make_builder()
                b.build(ctx, f"bench-{name}", cold=True)  # probe (and the first warm-up)
                builders.append(b)
            except (db.Skip, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                skipped[name] = str(exc)[:600]

        if "conch" in wanted:
            add("conch", lambda: Builder("conch", start(lambda: db.Conch(work))))
        if args.base_tree is not None:
            add("conch-base", lambda: Builder("conch-base", start(lambda: ConchAt(work, args.base_tree))))
        docker = None
        if "classic" in wanted or "buildkit" in wanted:
            try:
                docker = start(lambda: db.make_docker(work, "/usr/bin/docker"))
            except (db.Skip, RuntimeError, OSError) as exc:
                skipped["classic"] = skipped["buildkit"] = str(exc)[:600]
        if docker is not None:
            add("classic", lambda: Builder("classic", docker, {"DOCKER_BUILDKIT": "0"}))
            add("buildkit", lambda: Builder("buildkit", docker, {"DOCKER_BUILDKIT": "1"}))
        if "podman" in wanted:
            add("podman", lambda: Builder("podman", start(lambda: db.Podman(work))))
        for name, why in skipped.items():
            print(f"skipping {name}: {why}", file=sys.stderr)
        if not builders:
            return 1
        for mode in ("cold", "warm"):
            samples: dict[str, list[float]] = {b.name: [] for b in builders}
            for round_ in range(args.warmup + args.runs):
                k = round_ % len(builders)
                for b in builders[k:] + builders[:k]:
                    elapsed = b.build(ctx, f"bench-{b.name}", cold=(mode == "cold"))
                    if round_ >= args.warmup:
                        samples[b.name].append(elapsed)
                print(f"{mode} round {round_ + 1}/{args.warmup + args.runs}", file=sys.stderr)
            results[mode] = {name: summarise(s) for name, s in samples.items()}
    finally:
        for e in reversed(engines):
            e.stop()
        time.sleep(0.5)
        db.umount_under(work)
        for d in db.cgroup_dirs() - cgroups_before:
            try:
                d.rmdir()
            except OSError:
                pass
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def med(mode: str, name: str) -> float | None:
        return results.get(mode, {}).get(name, {}).get("median_ms")

    print(f"\nissue 14 Dockerfile, {args.runs} rounds after {args.warmup} warm-up (medians)")
    print(f"  {'builder':<10}{'cold ms':>10}{'warm ms':>10}")
    for b in builders:
        print(f"  {b.name:<10}{med('cold', b.name):>10.1f}{med('warm', b.name):>10.1f}")
    ratios = {}
    for label, mode, other, goal in (("cold conch/buildkit", "cold", "buildkit", 1.0),
                                     ("cold conch/classic", "cold", "classic", None),
                                     ("warm conch/classic", "warm", "classic", 0.7),
                                     ("warm conch/buildkit", "warm", "buildkit", None),
                                     ("cold conch/conch-base", "cold", "conch-base", None),
                                     ("warm conch/conch-base", "warm", "conch-base", None)):
        a, b_ = med(mode, "conch"), med(mode, other)
        if a and b_:
            ratios[label] = a / b_
            mark = "" if goal is None else (" (goal <= %.1f: %s)" % (goal, "met" if a / b_ <= goal else "NOT met"))
            print(f"  {label}: {a / b_:.2f}x{mark}")
    for name, why in skipped.items():
        print(f"  skipped {name}: {why[:200]}")
    db.RESULTS.mkdir(parents=True, exist_ok=True)
    out = db.RESULTS / f"build-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"results": results, "ratios": ratios, "skipped": skipped}, indent=2))
    print(f"  json: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
