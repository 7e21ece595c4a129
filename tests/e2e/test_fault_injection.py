"""Issue 15 "fault-injection test": ``kill -9`` of conchd at random points under parallel
clients, a few cycles, then the invariants.

One private conchd. Before the kills a long-running container starts that prints a
numbered line every 50 ms. Then four client threads loop, each over: ``run -d`` a
container that prints ``0..N-1`` and exits 7, ``wait`` it, read its ``logs``, ``rm`` it.
Meanwhile the killer, every 1.5-3 s (seeded random; the seed is printed, set
``CONCH_FI_SEED`` to replay the schedule), ``kill -9``\\ s conchd and starts it again on
the same roots. A client step that fails while conchd is down (or dies mid-request) is
retried once conchd is back, idempotently: a ``run -d`` that failed is looked up by name
(and started if it was only created), ``wait``/``logs`` are simply asked again, an
``rm`` that already happened is fine.

Invariants, checked as the clients go and again once the kills stop:

- every ``wait`` answer is the command's code (7), never 0 or anything else;
- every finished container's log is exactly ``0..N-1``: no gap, no duplicate;
- the long-running container kept its pid across all kills, is still running, and its
  log is a gapless, duplicate-free ``0..k``;
- running ⇔ alive: every container conchd reports running has its pid alive (not a
  zombie), and every live process in one of our containers' cgroups belongs to a
  container conchd reports running;
- every blob in the content store hashes to its digest;
- after ``rm -f`` of everything and a SIGTERM of conchd, nothing is left: mounts,
  cgroups, veths, nft tables, processes (the :class:`Daemon` leak check).

The summary line (seed, cycles, iterations, checks, violations) is printed for quoting
(``pytest -s``). The whole test is bounded: at most 6 kill cycles, ~60 s on a loaded
2-core machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conch.testing.daemon import Daemon, _unavailable

N_LINES = 100  # lines each short container prints
EXIT_CODE = 7
CLIENTS = 4
CYCLES = 6
EXPECTED_LOG = "".join(f"{i}\n" for i in range(N_LINES))
SHORT_CMD = f"hostname > /fi-mark; i=0; while [ $i -lt {N_LINES} ]; do echo $i; i=$((i+1)); done; exit {EXIT_CODE}"
TICKER_CMD = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"
# The bug this test found first (issue 15), fixed by reconcile_interrupted_start: a start
# interrupted by kill -9 of conchd (after the runtime started the process, before the record
# said running) left the container 'created' after the restart although its process ran, so a
# client that started it again ran the command twice (its log held 0..N-1 twice; ~40% of runs).
KNOWN_BUG = (
    "a container whose start was interrupted by kill -9 of conchd ran its command twice: "
    "reconcile must adopt a created container's live task (running, or its exit recorded) "
    "or roll the task back")
STEP_RETRIES = 40  # per client step: far more than the kills can cause


class Run:
    """Shared state of one fault-injection run."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.up = threading.Event()  # set while conchd answers (between restarts)
        self.stop = threading.Event()  # clients finish their iteration and return
        self.lock = threading.Lock()
        self.checks = 0
        self.violations: list[str] = []
        self.iterations = 0
        self.retries = 0
        self.ids: set[str] = set()
        self.images: dict[str, str] = {}  # tag committed -> the container's hostname in it
        self.history: dict[str, list[str]] = {}  # container name -> its failed/retried steps
        self.known: list[str] = []  # the known conch bug below (KNOWN_BUG), seen

    def note(self, name: str, text: str) -> None:
        with self.lock:
            self.history.setdefault(name, []).append(f"{time.strftime('%H:%M:%S')} {text}")

    def check(self, ok: bool, what: str, name: str | None = None) -> None:
        with self.lock:
            self.checks += 1
            if not ok:
                steps = self.history.get(name) if name else None
                self.violations.append(what + (f" [its steps: {'; '.join(steps)}]" if steps else ""))

    def conch(self, *args, timeout: float = 45) -> subprocess.CompletedProcess:
        try:
            return self.d.conch(*args, timeout=timeout)
        except subprocess.TimeoutExpired as e:  # a request stuck past a kill: retried
            return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout}s")

    def retry(self, step: str, name: str, p: subprocess.CompletedProcess) -> None:
        """A failed client step: count it, give up (as a violation) after STEP_RETRIES,
        else wait for conchd to be up again before the caller retries."""
        with self.lock:
            self.retries += 1
        self.note(name, f"{step} failed: rc {p.returncode if p is not None else '?'} "
                        f"{(p.stderr or '').strip()[:100] if p is not None else ''}")
        if not self.up.wait(timeout=60):
            raise AssertionError(f"{name}: conchd not back within 60 s after {step} failed")
        time.sleep(0.05)

    # -- one client --------------------------------------------------------------------
    def step(self, step: str, name: str, fn):
        """Run ``fn`` until it returns a non-None result, retrying failures."""
        last = None
        for _ in range(STEP_RETRIES):
            p = fn()
            if p is not None and not isinstance(p, subprocess.CompletedProcess):
                return p
            last = p
            self.retry(step, name, p)
        detail = f"rc {last.returncode}: {last.stderr.strip()[:300]}" if last is not None else ""
        self.check(False, f"{name}: {step} failed {STEP_RETRIES} times ({detail})")
        return None

    def state(self, name: str) -> dict | None | subprocess.CompletedProcess:
        """The container's State; None when there is no such container; the failed
        process when conchd did not answer."""
        p = self.conch("inspect", "--type", "container", name)
        if p.returncode == 0:
            c = json.loads(p.stdout)[0]
            with self.lock:
                self.ids.add(c["Id"])
            return c["State"]
        if "No such" in p.stderr:
            return None
        return p

    def hostname(self, name: str) -> str | None:
        def get():
            p = self.conch("inspect", "--format", "{{.Config.Hostname}}", name)
            return p.stdout.strip() if p.returncode == 0 else p
        return self.step("inspect hostname", name, get)

    def client(self, k: int) -> None:
        i = 0
        while not self.stop.is_set():
            name = f"fi-{k}-{i}"
            i += 1
            self.one(name, commit=(k == 0 and i % 2 == 0))
            with self.lock:
                self.iterations += 1

    def one(self, name: str, commit: bool = False) -> None:
        restarted: list[bool] = []  # run -d failed and we started the "created" container
        def run():
            p = self.conch("run", "-d", "--name", name, "busybox", "sh", "-c", SHORT_CMD)
            if p.returncode == 0:
                return "ran"
            self.note(name, f"run -d: rc {p.returncode} {p.stderr.strip()[:160]}")
            st = self.state(name)
            if isinstance(st, subprocess.CompletedProcess):
                return st  # conchd is down: ask again later
            if st is None:
                return p  # not created: run again
            self.note(name, f"run -d failed; the container is {st['Status']} (pid {st['Pid']})")
            if st["Status"] == "created":
                restarted.append(True)
                s = self.conch("start", name)
                return "ran" if s.returncode == 0 else s
            return "ran"  # started (running or already exited) before the failure surfaced

        if self.step("run -d", name, run) is None:
            return

        def wait():
            p = self.conch("wait", name)
            if p.returncode != 0:
                return p
            return p.stdout.strip()

        code = self.step("wait", name, wait)
        if code is not None:
            self.check(code == str(EXIT_CODE), f"{name}: wait said {code!r}, the command exits {EXIT_CODE}", name)

        def inspect_exit():
            st = self.state(name)
            return "gone" if st is None else st

        st = self.step("inspect", name, inspect_exit)
        if isinstance(st, dict):
            self.check((st["Status"], st["ExitCode"], st["Running"]) == ("exited", EXIT_CODE, False),
                       f"{name}: after wait, State is {st['Status']} exit {st['ExitCode']} "
                       f"running {st['Running']}", name)

        def logs():
            p = self.conch("logs", name)
            return p if p.returncode != 0 else p.stdout

        out = self.step("logs", name, logs)
        if out is not None and out != EXPECTED_LOG and restarted and twice(out):
            with self.lock:
                self.checks += 1
                self.known.append(f"{name}: {describe(out)} [its steps: {'; '.join(self.history[name])}]")
        elif out is not None:
            self.check(out == EXPECTED_LOG, f"{name}: log is not 0..{N_LINES - 1}: {describe(out)}", name)

        if commit:  # new blobs (layer, config, manifest) written while conchd may die
            tag = f"fi-img:{name}"

            def do_commit():
                p = self.conch("commit", name, tag)
                return "committed" if p.returncode == 0 else p

            if self.step("commit", name, do_commit) is not None:
                hostname = self.hostname(name)
                if hostname:
                    with self.lock:
                        self.images[tag] = hostname

        def rm():
            p = self.conch("rm", name)
            if p.returncode == 0 or "No such container" in p.stderr:
                return "removed"
            return p

        self.step("rm", name, rm)

    # -- the killer ----------------------------------------------------------------------
    def kill_loop(self, rng: random.Random, cycles: int, log: list[str]) -> int:
        done = 0
        for _ in range(cycles):
            pause = rng.uniform(1.5, 3.0)
            time.sleep(pause)
            self.up.clear()
            self.d.kill9()
            time.sleep(rng.uniform(0.0, 0.3))  # clients hit a dead socket meanwhile
            t0 = time.monotonic()
            self.d.start(timeout=60)
            self.up.set()
            done += 1
            log.append(f"cycle {done} at {time.strftime('%H:%M:%S')}: killed after {pause:.2f}s, back in {time.monotonic() - t0:.2f}s")
        return done


def describe(out: str) -> str:
    """A short account of how a numbered log differs from 0..n: gaps, duplicates, junk."""
    lines = out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    nums, junk = [], []
    for line in lines:
        (nums if line.isdigit() else junk).append(line)
    nums_i = [int(x) for x in nums]
    dups = sorted({n for n in nums_i if nums_i.count(n) > 1})
    gaps = sorted(set(range(max(nums_i, default=-1) + 1)) - set(nums_i))
    return (f"{len(lines)} lines, first {nums[:3]}, last {nums[-3:]}, gaps {gaps[:10]}, "
            f"duplicates {dups[:10]}, junk {junk[:3]}")


def twice(out: str) -> bool:
    """The log of two whole runs: every line of 0..N-1 exactly twice (see KNOWN_BUG)."""
    return sorted(out.split(), key=int) == sorted([str(i) for i in range(N_LINES)] * 2, key=int)


def sequence_ok(out: str) -> bool:
    nums = out.split()
    return bool(nums) and nums == [str(i) for i in range(len(nums))] and out.endswith("\n")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_CG = re.compile(r"/conch/([0-9a-f]{64})(?:/|$)")


def processes_in_containers(ids: set[str]) -> dict[str, list[int]]:
    """Live (non-zombie) processes whose cgroup is one of ``ids``' (``/conch/<id>``)."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cg = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        for m in _CG.finditer(cg):
            if m.group(1) in ids and alive(int(entry)):
                found.setdefault(m.group(1), []).append(int(entry))
                break
    return found


def verify_blobs(r: Run, data_root: Path) -> int:
    """sha256 every committed blob under the data root; returns how many."""
    n = 0
    for blobs in data_root.rglob("blobs"):
        algo_dir = blobs / "sha256"
        if not algo_dir.is_dir():
            continue
        for f in sorted(algo_dir.iterdir()):
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            r.check(h.hexdigest() == f.name, f"blob {f} hashes to sha256:{h.hexdigest()}")
            n += 1
    return n


def test_kill_9_under_parallel_clients():
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    seed = int(os.environ.get("CONCH_FI_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\nfault injection: seed {seed} (CONCH_FI_SEED={seed} replays the kill schedule)")
    rng = random.Random(seed)
    t_start = time.monotonic()
    d = Daemon()
    r = Run(d)
    threads: list[threading.Thread] = []
    cycles, log = 0, []
    try:
        d.start(timeout=60)
        d.import_busybox()
        r.up.set()
        d.conch("run", "-d", "--name", "fi-ticker", "busybox", "sh", "-c", TICKER_CMD, check=True)
        ticker = json.loads(d.conch("inspect", "fi-ticker", check=True).stdout)[0]
        ticker_pid = ticker["State"]["Pid"]
        r.ids.add(ticker["Id"])

        errors: list[BaseException] = []

        def guarded(k):
            try:
                r.client(k)
            except BaseException as e:  # noqa: BLE001 - reported after the join
                errors.append(e)

        threads = [threading.Thread(target=guarded, args=(k,), name=f"fi-client-{k}", daemon=True)
                   for k in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            cycles = r.kill_loop(rng, CYCLES, log)
            time.sleep(1.0)  # a last stretch of clients against a stable daemon
        finally:
            r.stop.set()
            r.up.set()  # a client waiting for a restart that failed: let it fail fast
            for t in threads:
                t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a client thread is stuck"
        assert not errors, errors

        # -- invariants once the kills are over ----------------------------------------
        # the ticker: same process all along, running, and a gapless log
        st = r.state("fi-ticker")
        r.check(isinstance(st, dict) and st["Running"] and st["Pid"] == ticker_pid and alive(ticker_pid),
                f"fi-ticker: not the same running process after the kills: {st} (was pid {ticker_pid})")
        out = d.conch("logs", "fi-ticker", check=True).stdout
        r.check(sequence_ok(out), f"fi-ticker: log not a gapless 0..k: {describe(out)}")
        ticker_lines = len(out.split())

        # running <=> alive, both ways, for whatever is left (clients rm what they ran)
        ids = d.container_ids()
        r.ids.update(ids)
        running = set()
        for cid in ids:
            c = json.loads(d.conch("inspect", cid, check=True).stdout)[0]
            s = c["State"]
            if s["Running"]:
                running.add(cid)
                r.check(s["Pid"] > 0 and alive(s["Pid"]),
                        f"{c['Name']}: conchd says running, pid {s['Pid']} is not alive")
            elif s["Status"] == "exited" and c["Name"] != "/fi-ticker":
                r.check(s["ExitCode"] == EXIT_CODE, f"{c['Name']}: exited {s['ExitCode']}, not {EXIT_CODE}")
        for cid, pids in processes_in_containers(r.ids | d.ids).items():
            r.check(cid in running, f"container {cid[:12]} has live processes {pids} but conchd "
                                    f"does not report it running")

        nblobs = verify_blobs(r, d.data_root)
        r.check(nblobs > 0, f"no blobs found under {d.data_root}")
        # the images committed under the kills hold what their container wrote
        r.check(len(r.images) > 0, "no image was committed")
        for tag in sorted(r.images)[-3:]:
            p = d.conch("run", "--rm", tag, "cat", "/fi-mark", timeout=60)
            r.check((p.returncode, p.stdout) == (0, r.images[tag] + "\n"),
                    f"{tag}: run cat /fi-mark -> {p.returncode} {p.stdout!r} {p.stderr.strip()[:200]!r}, "
                    f"expected {r.images[tag]!r}")

        elapsed = time.monotonic() - t_start
        print(f"fault injection summary: seed {seed}, {cycles} kill -9 cycles, {r.iterations} client "
              f"iterations ({CLIENTS} clients), {r.retries} retried steps, ticker {ticker_lines} lines, "
              f"{len(r.images)} images committed, {nblobs} blobs verified, {r.checks} checks, {len(r.violations)} violations, "
              f"{len(r.known)} double runs after an interrupted start, "
              f"{elapsed:.1f}s")
        for line in log:
            print("  " + line)
        assert cycles == CYCLES
        assert r.iterations >= CLIENTS, "the clients did not get through even one iteration each"
        assert not r.violations, "\n".join(r.violations)
    finally:
        r.stop.set()
        # the restarted conchd collects what the killed one left (shims, containers);
        # close() then removes every container, stops conchd and runs the leak check
        if d.proc is None:
            d.start(timeout=60)
        d.close()
    # checked after the cleanup so that a failure here still leaves nothing behind
    assert not r.known, KNOWN_BUG + ". Seen: " + " | ".join(r.known)
