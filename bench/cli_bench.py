"""The conch CLI's own latency (issue 3): wall time per call, import cost, request phases.

    .venv/bin/python bench/cli_bench.py                # private conchd, 21 runs each
    .venv/bin/python bench/cli_bench.py --runs 41 --host unix:///tmp/cd-x/s
    git archive HEAD conch | tar -x -C /tmp/base && .venv/bin/python -m compileall -q /tmp/base
    .venv/bin/python bench/cli_bench.py --baseline /tmp/base  # before/after, interleaved

Three views of the same commands (``conch --version``, ``conch ps``,
``conch run --rm --network none busybox true``):

1. wall time of ``.venv/bin/conch ...`` as a user runs it (median/min/p90 of N runs,
   interleaved, after 2 warm-up rounds), beside ``python -IS -c pass`` (the floor);
2. ``python -X importtime`` of the same call, summed (self times, microseconds);
3. the call made in-process with the client's requests timed: parse, each request
   (method, path, time to the response head), the rest (streams, output).

A private conchd (conch.testing.daemon: own roots, bridge, nft table) is started and
removed unless ``--host`` names one that has ``busybox:latest``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, ".venv", "bin")
COMMANDS = {
    "--version": ["--version"],
    "ps": ["ps"],
    "run --rm": ["run", "--rm", "--network", "none", "busybox", "true"],
}


def wall(host: str, runs: int, baseline: str | None = None) -> dict[str, list[float]]:
    env = dict(os.environ, CONCH_HOST=host)
    cmds = {k: [os.path.join(BIN, "conch"), *v] for k, v in COMMANDS.items()}
    if baseline:  # another conch tree, run by the same kind of lean launcher, interleaved
        launcher = [os.path.join(BIN, "python"), "-IS", "-c",
                    f"import sys; sys.path.insert(0, {baseline!r}); "
                    "from conch.cli.main import main; sys.exit(main())"]
        cmds.update({f"baseline {k}": [*launcher, *v] for k, v in COMMANDS.items()})
    cmds["python -IS -c pass"] = [os.path.join(BIN, "python"), "-IS", "-c", "pass"]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for i in range(runs + 2):
        for k, argv in cmds.items():
            t = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
            if i >= 2:
                times[k].append((time.perf_counter() - t) * 1000)
    return times


def import_cost(host: str, args: list[str]) -> int:
    """Summed self import time (us) of one CLI call, in a -IS interpreter as the launcher."""
    code = (f"import sys; sys.path.insert(0, {REPO!r}); from conch.cli.main import main; "
            f"main({args!r})")
    env = dict(os.environ, CONCH_HOST=host)
    p = subprocess.run([os.path.join(BIN, "python"), "-IS", "-X", "importtime", "-c", code],
                       env=env, capture_output=True, text=True)
    total = 0
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "self" not in line:
            total += int(line.split(":", 1)[1].split("|")[0])
    return total


def phases(host: str, args: list[str]) -> list[tuple[str, float]]:
    """One in-process call with the requests timed (ms from the call's start)."""
    sys.path.insert(0, REPO)
    from conch.cli import flags
    from conch.cli.main import main
    from conch.client import http

    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()

    def mark(what):
        marks.append((what, (time.perf_counter() - t0) * 1000))

    orig_send, orig_response, orig_parse = (http.Client.send_request, http.Pending.response,
                                            flags.Parser.parse)
    orig_hijack = http.Client.hijack

    def send_request(self, method, path, **kw):
        pending = orig_send(self, method, path, **kw)
        pending._what = f"{method} {path.split('?')[0]}"
        mark(f"sent {pending._what}")
        return pending

    def response(self, check=True):
        resp = orig_response(self, check)
        mark(f"head {getattr(self, '_what', '?')} {resp.status}")
        return resp

    def parse(self, argv, stop_after=0):
        ns = orig_parse(self, argv, stop_after)
        mark("parsed")
        return ns

    def hijack(self, method, path, body=None, **kw):
        sock = orig_hijack(self, method, path, body, **kw)
        mark(f"hijacked {method} {path}")
        return sock

    http.Client.send_request, http.Pending.response, flags.Parser.parse = (
        send_request, response, parse)
    http.Client.hijack = hijack
    os.environ["CONCH_HOST"] = host
    try:
        with open(os.devnull, "w") as null:
            t0 = time.perf_counter()
            main(list(args), stdout=null)
            mark("done")
    finally:
        http.Client.send_request, http.Pending.response, flags.Parser.parse = (
            orig_send, orig_response, orig_parse)
        http.Client.hijack = orig_hijack
    return marks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--host", help="an existing daemon (unix://...) with busybox:latest")
    ap.add_argument("--baseline", help="a directory holding another conch package (e.g. "
                    "`git archive HEAD conch | tar -x -C DIR`) to time side by side")
    opts = ap.parse_args()
    daemon = None
    host = opts.host
    if host is None:
        sys.path.insert(0, REPO)
        from conch.testing.daemon import Daemon

        daemon = Daemon().start()
        daemon.import_busybox()
        host = daemon.host
    try:
        print(f"wall time, {opts.runs} runs each (ms):")
        for k, v in wall(host, opts.runs, opts.baseline).items():
            v.sort()
            print(f"  {k:24s} median {statistics.median(v):6.1f}  min {v[0]:6.1f}  "
                  f"p90 {v[int(len(v) * 0.9) - 1]:6.1f}")
        print("import time, summed self (ms; -X importtime inflates it ~1.5x):")
        for k, args in COMMANDS.items():
            best = min(import_cost(host, args) for _ in range(5))
            print(f"  {k:24s} {best / 1000:6.1f}")
        for k in ("ps", "run --rm"):
            phases(host, COMMANDS[k])  # warm
            print(f"phases of `conch {' '.join(COMMANDS[k])}` in-process (ms since start):")
            for what, ms in phases(host, COMMANDS[k]):
                print(f"  {ms:7.2f}  {what}")
    finally:
        if daemon is not None:
            daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
