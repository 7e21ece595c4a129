#!/usr/bin/env python3
"""conch vs Docker vs Podman, whole engine: CLI -> daemon -> shim -> runtime -> container.

Issue 3's benchmark. Every engine gets private state under one temp dir and the same
busybox image (one rootfs tarball, imported with each engine's ``import``):

- **conch**: a private ``conchd --data-root/--exec-root -H unix://...`` started here;
- **docker**: Debian's docker.io (``make bench-deps``), a private ``dockerd --data-root
  --exec-root -H --pidfile --bridge none --iptables=false`` (it starts its own containerd);
  skipped with the reason when it is not installed or cannot start;
- **podman**: Debian's, ``--root/--runroot/--tmpdir`` private, with conch.testing.podman's
  containers.conf (lowered ulimits: root has no CAP_SYS_RESOURCE here; cgroupfs; file
  events) and ``--runtime runc`` (crun 1.8 refuses this machine's cgroup v1-hybrid layout);
- **docker->conchd**: the docker CLI against the private conchd (latency only).

Scenarios, all with ``--network none`` (bridge networks and -p are issue 5):

1. ``run --rm busybox true``, wall clock from CLI start to CLI exit: ``--warmup`` rounds,
   then ``--runs`` rounds; each round runs every engine once, in a rotating order, so
   drift in machine load hits all of them alike. Median and p90.
2. ``--containers`` x ``run -d busybox sleep 1000`` in a row, per engine (``--batch-rounds``
   times): time per container = total / N; then, with all of them running, memory per
   container = sum of PSS (/proc/PID/smaps_rollup) of what the engine adds per container
   (conch: conch-shim; docker: containerd-shim-runc-v2 + docker-proxy; podman: conmon) / N;
   then one ``rm -f`` of all N (timed too).
3. Idle daemon RSS (VmRSS) after warm-up with no container: conchd; dockerd + containerd;
   podman has no daemon (0).
4. exec (issue 15 item 8), in one running ``sleep 1000`` container per engine: ``exec CTR
   true`` wall clock (``--warmup`` + ``--runs`` rounds; median and p90), then the memory
   cost of a running exec'd process: ``--exec-procs`` x ``exec -d CTR sleep 1000``, and
   the growth of the PSS (and RSS) summed over every process whose command line names
   the engine's private state dir (daemon, shims, runtimes, conmon; not the exec'd
   sleeps themselves), divided by their number.

Output: a table, the ratios against issue 3's goals, and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conch.testing.podman import PodmanStore  # noqa: E402
from conch.testing.rootfs import busybox_rootfs  # noqa: E402
import timing  # noqa: E402  (bench/timing.py: waits that do not round times up)

RESULTS = REPO / "bench" / "results"
VENV_BIN = REPO / ".venv" / "bin"
IMAGE = "busybox:latest"

class Skip(Exception):
    """This engine cannot be measured here; the message says why."""


# -- processes -----------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def processes(comms: tuple[str, ...], needle: str) -> list[int]:
    """Pids whose comm is one of ``comms`` and whose command line mentions ``needle``
    (our private state dir: that tells our shims from anybody else's)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _comm(int(entry)) in comms and needle in _cmdline(int(entry)):
            found.append(int(entry))
    return found


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def socket_alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_socket(path: Path, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip(f"daemon exited with {proc.returncode}: {tail(log)}")
        if socket_alive(path):
            return
        time.sleep(0.05)
    raise Skip(f"no socket {path} after {timeout:.0f}s: {tail(log)}")


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-600:]
    except OSError:
        return "(no log)"


def stop_daemon(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def umount_under(root: Path) -> None:
    """Lazily unmount whatever an engine left mounted under our temp dir (podman's
    storage bind-mounts its overlay home, for one), deepest first, before rmtree."""
    prefix = str(root) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


# -- engines ---------------------------------------------------------------------------------


class Engine:
    """One engine's CLI, its private state and the processes it adds per container."""

    name = ""
    shim_comms: tuple[str, ...] = ()
    can_batch = True

    def __init__(self, work: Path):
        self.work = work / self.name.replace(">", "")
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.cli_version = ""

    argv: list[str] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def daemon_pids(self) -> list[int]:
        return []

    def cli(self, *args: str, check: bool = True, stdin=None) -> subprocess.CompletedProcess:
        # stdout and stderr to files, not pipes: nothing the container inherits can
        # keep us waiting for an EOF.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = timing.run([*self.argv, *args], stdin=stdin or subprocess.DEVNULL,
                              stdout=out, stderr=err, env=self.env, timeout=120)
            out.seek(0)
            err.seek(0)
            proc.stdout, proc.stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: exit {proc.returncode}: "
                               f"{proc.stderr.strip()[-400:]}")
        return proc

    def import_image(self, tarball: Path) -> None:
        with open(tarball, "rb") as f:
            self.cli("import", "-", IMAGE, stdin=f)

    def run_rm(self) -> float:
        t0 = time.perf_counter()
        self.cli("run", "--rm", "--network", "none", IMAGE, "true")
        return time.perf_counter() - t0

    def run_d(self, name: str) -> None:
        self.cli("run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "1000")

    def rm_f(self, names: list[str]) -> None:
        self.cli("rm", "-f", *names)

    def shim_pids(self) -> list[int]:
        return processes(self.shim_comms, str(self.work))


class Conch(Engine):
    name = "conch"
    shim_comms = ("conch-shim",)

    def __init__(self, work: Path):
        super().__init__(work)
        self.sock = self.work / "conch.sock"
        self.argv = [str(VENV_BIN / "conch"), "-H", f"unix://{self.sock}"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.work / "conchd.log"
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "conchd"), "--data-root", str(self.work / "data"),
                 "--exec-root", str(self.work / "exec"), "-H", f"unix://{self.sock}"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
        wait_socket(self.sock, self.proc, log, 30)
        self.cli_version = self.cli("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()

    def stop(self) -> None:
        stop_daemon(self.proc)

    def _waiting(self) -> list[int]:
        """Warm shims not yet given a container (conch.engine.containers.warmpool): their child is
        the waiting `conch-runtime warm 3`. A warm shim that took a container keeps its
        command line but parents the container instead."""
        return [p for p in super().shim_pids()
                if any(_cmdline(c).rstrip().endswith(" warm 3") for c in children(p))]

    def shim_pids(self) -> list[int]:
        waiting = set(self._waiting())
        return [p for p in super().shim_pids() if p not in waiting]

    def daemon_pids(self) -> list[int]:
        """conchd, and the warm shim it keeps for the next start with its waiting
        conch-runtime: daemon overhead, not per-container."""
        if not self.proc:
            return []
        warm = self._waiting()
        return [self.proc.pid, *warm, *(c for w in warm for c in children(w))]


class Docker(Engine):
    name = "docker"
    shim_comms = ("containerd-shim", "docker-proxy")  # comm is cut at 15 characters

    def __init__(self, work: Path, docker_cli: str):
        super().__init__(work)
        self.sock = self.work / "docker.sock"
        self.argv = [docker_cli]
        self.env["DOCKER_HOST"] = f"unix://{self.sock}"
        self.env["DOCKER_CONFIG"] = str(self.work / "config")  # not ~/.docker
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise Skip("dockerd not installed (`make bench-deps` installs Debian's docker.io)")
        log = self.work / "dockerd.log"
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                [dockerd, "--data-root", str(self.work / "data"),
                 "--exec-root", str(self.work / "exec"), "-H", f"unix://{self.sock}",
                 "--pidfile", str(self.work / "docker.pid"), "--bridge", "none",
                 "--iptables=false"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
        wait_socket(self.sock, self.proc, log, 60)
        # The socket answers a little before the API does: wait for `version`.
        deadline = time.monotonic() + 30
        while True:
            v = self.cli("version", "--format", "{{.Server.Version}}", check=False)
            if v.returncode == 0:
                self.cli_version = v.stdout.strip()
                return
            if time.monotonic() > deadline:
                raise Skip(f"dockerd does not answer: {v.stderr.strip()[-300:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_daemon(self.proc, timeout=60)  # dockerd stops its containerd itself

    def daemon_pids(self) -> list[int]:
        if not self.proc:
            return []
        return [self.proc.pid] + [p for p in children(self.proc.pid) if _comm(p) == "containerd"]


class DockerOnConch(Engine):
    """The docker CLI against conch's daemon: latency only (the daemon is conch's)."""

    name = "docker>conchd"
    shim_comms = ("conch-shim",)  # the same daemon as "conch": the same shims

    def __init__(self, work: Path, docker_cli: str, conch: Conch):
        super().__init__(work)
        self.argv = [docker_cli]
        self.env["DOCKER_HOST"] = f"unix://{conch.sock}"
        self.env["DOCKER_CONFIG"] = str(self.work / "config")

    def start(self) -> None:
        self.cli_version = self.cli("version", "--format", "{{.Client.Version}}", check=False).stdout.strip()

    def import_image(self, tarball: Path) -> None:
        pass  # conch's engine already has it


class Podman(Engine):
    name = "podman"
    shim_comms = ("conmon",)

    def __init__(self, work: Path):
        super().__init__(work)
        podman = shutil.which("podman")
        if not podman:
            raise Skip("podman not installed (`make test-deps` installs it)")
        # crun 1.8 refuses cgroup v1-hybrid: runc, as dockerd (conch.testing.podman says why)
        store = PodmanStore(self.work, root=self.work / "root", runroot=self.work / "run",
                            tmpdir=self.work / "tmp", runtime="runc", storage_driver=None,
                            binary=podman)
        self.env, self.argv = store.env, store.argv

    def start(self) -> None:
        self.cli_version = self.cli("version", "--format", "{{.Client.Version}}", check=False).stdout.strip()

    def rm_f(self, names: list[str]) -> None:
        # podman's rm -f stops first and waits --time (10 s) for SIGTERM, which `sleep`
        # as PID 1 ignores; docker's and conch's rm -f send SIGKILL at once: -t 0 does too.
        self.cli("rm", "-f", "-t", "0", *names)

    def stop(self) -> None:
        self.cli("rm", "-af", "-t", "0", check=False)


# -- measuring -------------------------------------------------------------------------------


def summarise(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"runs": len(samples), "median_ms": statistics.median(samples) * 1e3,
            "p90_ms": p90 * 1e3, "min_ms": ordered[0] * 1e3, "max_ms": ordered[-1] * 1e3}


def bench_run_rm(engines: list[Engine], warmup: int, runs: int) -> dict[str, dict]:
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    for round_ in range(warmup + runs):
        k = round_ % len(engines)
        for engine in engines[k:] + engines[:k]:  # rotate who goes first
            elapsed = engine.run_rm()
            if round_ >= warmup:
                samples[engine.name].append(elapsed)
    return {name: summarise(s) for name, s in samples.items()}


def bench_batch(engine: Engine, n: int, round_: int) -> dict:
    names = [f"bench-{round_}-{i}" for i in range(n)]
    t0 = time.perf_counter()
    for name in names:
        engine.run_d(name)
    start_s = time.perf_counter() - t0
    time.sleep(1.0)  # let every shim settle into its steady state
    shims = engine.shim_pids()
    pss = sum(pss_kib(p) for p in shims)
    t0 = time.perf_counter()
    engine.rm_f(names)
    rm_s = time.perf_counter() - t0
    return {"containers": n, "start_total_s": start_s, "start_per_container_ms": start_s / n * 1e3,
            "shim_processes": len(shims), "shim_pss_total_kib": pss,
            "pss_per_container_kib": pss / n, "rm_total_s": rm_s,
            "rm_per_container_ms": rm_s / n * 1e3}


def engine_memory(engine: Engine) -> tuple[int, int, set[int]]:
    """(PSS KiB, RSS KiB, pids) of every process whose command line names the engine's
    private state dir: its daemon, shims and any runtime process it keeps."""
    needle = str(engine.work)
    pids = {int(e) for e in os.listdir("/proc") if e.isdigit() and needle in _cmdline(int(e))}
    pids.discard(os.getpid())
    return sum(pss_kib(p) for p in pids), sum(rss_kib(p) for p in pids), pids


def bench_exec(engine: Engine, warmup: int, runs: int, procs: int) -> dict:
    name = "bench-exec"
    engine.run_d(name)
    try:
        samples = []
        for round_ in range(warmup + runs):
            t0 = time.perf_counter()
            engine.cli("exec", name, "true")
            if round_ >= warmup:
                samples.append(time.perf_counter() - t0)
        time.sleep(1.0)
        pss0, rss0, pids0 = engine_memory(engine)
        for _ in range(procs):
            engine.cli("exec", "-d", name, "sleep", "1000")
        time.sleep(1.0)  # a detached exec returns before its helpers settle
        pss1, rss1, pids1 = engine_memory(engine)
    finally:
        engine.rm_f([name])
    return {**summarise(samples), "exec_procs": procs,
            "pss_per_exec_kib": (pss1 - pss0) / procs, "rss_per_exec_kib": (rss1 - rss0) / procs,
            "processes_per_exec": len(pids1 - pids0) / procs}


def rootfs_tarball(work: Path) -> Path:
    rootfs = busybox_rootfs(work / "rootfs")
    tarball = work / "busybox-rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    shutil.rmtree(rootfs)
    return tarball


def pick_docker_cli(given: str) -> str | None:
    if given:
        return given
    # Debian's docker.io CLI matches its dockerd; any other docker on PATH otherwise.
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def make_docker(work: Path, docker_cli: str | None) -> Docker:
    if not docker_cli:
        raise Skip("no docker CLI (`make bench-deps` installs Debian's docker.io)")
    return Docker(work, docker_cli)


def cgroup_dirs() -> set[Path]:
    return {d for name in ("docker", "libpod_parent") for d in Path("/sys/fs/cgroup").glob(f"*/{name}")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="measured run --rm rounds (>= 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--containers", type=int, default=50, help="run -d per batch")
    ap.add_argument("--batch-rounds", type=int, default=3, help="batches per engine (median)")
    ap.add_argument("--engines", default="conch,docker,podman,docker>conchd")
    ap.add_argument("--docker-cli", default="", help="docker CLI (default: /usr/bin/docker)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs)")
    ap.add_argument("--exec-procs", type=int, default=10,
                    help="running exec'd processes for the exec memory cost (0: no exec scenario)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("daemon_bench.py needs root (it runs three container engines)", file=sys.stderr)
        return 1

    wanted = args.engines.split(",")
    work = Path(tempfile.mkdtemp(prefix="conch-daemon-bench-"))
    cgroups_before = cgroup_dirs()
    engines: list[Engine] = []
    skipped: dict[str, str] = {}
    conch: Conch | None = None
    try:
        tarball = rootfs_tarball(work)
        docker_cli = pick_docker_cli(args.docker_cli)

        def add(name: str, make) -> None:
            if name not in wanted:
                return
            engine = None
            try:
                engine = make()
                engines.append(engine)  # before start: stop() runs for it whatever happens
                engine.start()
                engine.import_image(tarball)
                engine.run_rm()  # probe: can it run a container here at all?
            except (Skip, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                skipped[name] = str(exc)[:600]
                if engine is not None:
                    engines.remove(engine)
                    engine.stop()

        if "conch" in wanted or "docker>conchd" in wanted:
            add("conch", lambda: Conch(work))
            conch = next((e for e in engines if e.name == "conch"), None)
        add("docker", lambda: make_docker(work, docker_cli))
        add("podman", lambda: Podman(work))
        if conch and docker_cli:
            # the docker CLI the issue names (/usr/local/bin/docker, 28.x) when present
            on_conch = "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else docker_cli
            add("docker>conchd", lambda: DockerOnConch(work, on_conch, conch))
        for name, why in skipped.items():
            print(f"skipping {name}: {why}", file=sys.stderr)
        if not engines:
            print("no engine could run a container", file=sys.stderr)
            return 1
        if "conch" not in wanted and conch is not None:
            engines.remove(conch)  # started only for docker>conchd
        names = [e.name for e in engines]
        print(f"engines: {', '.join(names)}; {args.warmup} warm-up + {args.runs} rounds", file=sys.stderr)

        run_rm = bench_run_rm(engines, args.warmup, args.runs)

        time.sleep(2.0)  # idle: the warm-up's containers are gone, nothing is running
        idle = {}
        for e in engines:
            if e.can_batch:
                pids = e.daemon_pids()
                idle[e.name] = {"rss_kib": sum(rss_kib(p) for p in pids),
                                "processes": {f"{_comm(p)}[{p}]": rss_kib(p) for p in pids}}

        batches: dict[str, list[dict]] = {e.name: [] for e in engines if e.can_batch}
        for r in range(args.batch_rounds):
            for e in engines:
                if e.can_batch:
                    print(f"batch {r + 1}/{args.batch_rounds}: {e.name} {args.containers} x run -d",
                          file=sys.stderr)
                    batches[e.name].append(bench_batch(e, args.containers, r))
        batch = {}
        for name, rounds in batches.items():
            batch[name] = {
                key: statistics.median(b[key] for b in rounds)
                for key in ("start_per_container_ms", "pss_per_container_kib",
                            "rm_per_container_ms", "shim_processes")
            }
            batch[name]["rounds"] = rounds

        execs = {}
        if args.exec_procs > 0:
            for e in engines:
                if e.can_batch and not isinstance(e, DockerOnConch):
                    print(f"exec: {e.name} {args.runs} x exec, {args.exec_procs} x exec -d",
                          file=sys.stderr)
                    execs[e.name] = bench_exec(e, args.warmup, args.runs, args.exec_procs)
    finally:
        for e in reversed(engines):
            e.stop()
        if conch is not None and conch not in engines:
            conch.stop()
        time.sleep(0.5)
        umount_under(work)
        for d in cgroup_dirs() - cgroups_before:  # only ours, and only when empty
            try:
                d.rmdir()
            except OSError:
                pass
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(args, engines, skipped, run_rm, idle, batch, docker_cli, execs)
    return 0


GOALS = [
    # label, numerator, denominator, limit
    ("run --rm latency: conch / docker (goal <= 0.25)", ("run", "conch"), ("run", "docker"), 0.25),
    ("run -d per container: conch / podman (goal <= 0.5)", ("start", "conch"), ("start", "podman"), 0.5),
    ("memory per container: conch / podman (goal <= 1.0)", ("pss", "conch"), ("pss", "podman"), 1.0),
    ("idle daemon RSS: conchd / dockerd+containerd (goal <= 0.5)", ("idle", "conch"), ("idle", "docker"), 0.5),
]


def report(args, engines, skipped, run_rm, idle, batch, docker_cli, execs=None) -> None:
    def value(kind: str, name: str) -> float | None:
        try:
            return {"run": lambda: run_rm[name]["median_ms"],
                    "start": lambda: batch[name]["start_per_container_ms"],
                    "pss": lambda: batch[name]["pss_per_container_kib"],
                    "idle": lambda: idle[name]["rss_kib"]}[kind]()
        except KeyError:
            return None

    print(f"\nrun --rm busybox true ({args.runs} rounds after {args.warmup} warm-up)")
    print(f"  {'engine':<15}{'median ms':>10}{'p90 ms':>9}{'min ms':>9}")
    for name, s in run_rm.items():
        print(f"  {name:<15}{s['median_ms']:>10.1f}{s['p90_ms']:>9.1f}{s['min_ms']:>9.1f}")
    print(f"\n{args.containers} x run -d busybox sleep 1000 (median of {args.batch_rounds} batches)"
          " and idle daemons")
    print(f"  {'engine':<9}{'ms/container':>13}{'PSS KiB/container':>19}{'shims':>7}"
          f"{'rm -f ms/ctr':>13}{'idle daemon RSS MiB':>21}")
    for name, b in batch.items():
        print(f"  {name:<9}{b['start_per_container_ms']:>13.1f}{b['pss_per_container_kib']:>19.0f}"
              f"{b['shim_processes']:>7.0f}{b['rm_per_container_ms']:>13.1f}"
              f"{idle[name]['rss_kib'] / 1024:>21.1f}")
    if execs:
        print(f"\nexec CTR true ({args.runs} rounds after {args.warmup} warm-up); "
              f"{args.exec_procs} x exec -d CTR sleep 1000: what each adds")
        print(f"  {'engine':<9}{'median ms':>10}{'p90 ms':>9}{'PSS KiB/exec':>14}"
              f"{'RSS KiB/exec':>14}{'procs/exec':>12}")
        for name, x in execs.items():
            print(f"  {name:<9}{x['median_ms']:>10.1f}{x['p90_ms']:>9.1f}"
                  f"{x['pss_per_exec_kib']:>14.0f}{x['rss_per_exec_kib']:>14.0f}"
                  f"{x['processes_per_exec']:>12.1f}")
    goals = {}
    print("\nissue 3's goals (conch vs the others)")
    for label, num, den, limit in GOALS:
        a, b = value(*num), value(*den)
        if a is None or b is None:
            print(f"  {label}: n/a ({num[1] if a is None else den[1]} not measured)")
            continue
        ratio = a / b if b else float("inf")
        goals[label] = {"ratio": ratio, "limit": limit, "met": ratio <= limit}
        print(f"  {label}: {ratio:.2f}x {'MET' if ratio <= limit else 'NOT MET'}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"daemon-{stamp}.json"
    out.write_text(json.dumps({
        "when": stamp, "host": platform.node(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "runs": args.runs, "warmup": args.warmup,
        "containers": args.containers, "batch_rounds": args.batch_rounds,
        "docker_cli": docker_cli,
        "versions": {e.name: e.cli_version for e in engines}, "skipped": skipped,
        "run_rm": run_rm, "batch": batch, "idle_daemon": idle, "goals": goals,
        "exec": execs or {},
    }, indent=2) + "\n")
    print(f"\nJSON: {out.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
