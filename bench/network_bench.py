#!/usr/bin/env python3
"""conch networking: published-port and container-to-container throughput, and
``network create`` / ``network connect`` times, side by side with podman where it runs.

Issue 5's benchmark. A private conchd (own roots, bridge ``cbbench``, nft table
``conch_bench``, default bridge 10.251.0.1/24; reuses bench/daemon_bench.py's helpers)
serves a 100 MiB file with busybox httpd:

- **published**: ``curl`` on the host to ``127.0.0.1:<published port>`` (kernel DNAT, no
  proxy process);
- **direct**: ``curl`` on the host straight to the container's address (the baseline the
  goal compares with: published >= direct);
- **ctr->ctr**: ``wget`` in a second container on the same user network, by name.

Then ``network create`` + ``rm`` (``--rounds`` times, median) and ``network connect`` +
``disconnect`` of a running container; podman's ``network create`` is timed on its own
private root (goal: conch <= podman). Docker would need its own iptables setup on this
machine; it is left out (issue 5 quotes docker 1464 MB/s published, 81 ms create).

    .venv/bin/python bench/network_bench.py [--rounds 10] [--size-mib 100]

Output: a table and JSON in bench/results/.
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
import daemon_bench as db  # noqa: E402

IMAGE = db.IMAGE


class BenchConch(db.Conch):
    def start(self) -> None:
        log = self.work / "conchd.log"
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                [str(db.VENV_BIN / "conchd"), "--data-root", str(self.work / "data"),
                 "--exec-root", str(self.work / "exec"), "-H", f"unix://{self.sock}",
                 "--bridge-name", "cbbench", "--nft-table", "conch_bench", "--bip", "10.251.0.1/24"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
        db.wait_socket(self.sock, self.proc, log, 30)


def curl_mbps(url: str) -> float:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return float(out) / 1e6


def median_mbps(url: str, n: int = 3) -> float:
    return statistics.median(curl_mbps(url) for _ in range(n))


def interleaved_mbps(urls: dict[str, str], n: int) -> dict[str, list[float]]:
    """``n`` rounds; each round fetches every URL once, the order rotating from round to
    round, so that a burst of load elsewhere on the machine hits every path alike."""
    keys = list(urls)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(n):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            samples[k].append(curl_mbps(urls[k]))
    return samples


def host_address() -> str | None:
    """The host's first global IPv4 address on a non-bridge interface (eth0 here)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        dev, addr = line.split()[1], line.split()[3].split("/")[0]
        if not os.path.exists(f"/sys/class/net/{dev}/bridge"):
            return addr
    return None


def timed(fn, rounds: int) -> float:
    samples = []
    for i in range(rounds):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def bench_conch(work: Path, rounds: int, size_mib: int, samples_n: int = 9,
                only_throughput: bool = False) -> dict:
    conch = BenchConch(work)
    conch.start()
    out: dict = {}
    site = work / "site"
    site.mkdir()
    with open(site / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * size_mib)
    try:
        conch.import_image(db.rootfs_tarball(work))
        conch.cli("network", "create", "benchnet")
        conch.cli("run", "-d", "--name", "srv", "--network", "benchnet", "-p", "18881:80",
                  "-v", f"{site}:/www", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
        ip = json.loads(conch.cli("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                  "srv").stdout)["benchnet"]["IPAddress"]
        time.sleep(0.3)
        urls = {"published_MBps": "http://127.0.0.1:18881/big",
                "direct_MBps": f"http://{ip}:80/big"}
        host_ip = host_address()
        if host_ip:
            urls["published_hostaddr_MBps"] = f"http://{host_ip}:18881/big"
        for url in urls.values():  # warm-up: page cache, conntrack, ARP
            curl_mbps(url)
        # which path the published port took: the bridge's address when conchd's socket
        # LB rewrote the connect (conch.network.socklb), 127.0.0.1 through the nft DNAT
        out["published_local_ip"] = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{local_ip}", urls["published_MBps"]],
            capture_output=True, text=True, timeout=120).stdout
        samples = interleaved_mbps(urls, samples_n)
        out["samples"] = samples
        out.update({k: statistics.median(v) for k, v in samples.items()})
        if only_throughput:
            return out
        conch.cli("run", "-d", "--name", "cli", "--network", "benchnet", IMAGE, "sleep", "600")
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            conch.cli("exec", "cli", "wget", "-q", "-O", "/dev/null", "http://srv/big")
            samples.append(size_mib * (1 << 20) / (time.perf_counter() - t0) / 1e6)
        out["ctr_to_ctr_MBps"] = statistics.median(samples)
        out["network_create_ms"] = timed(lambda i: conch.cli("network", "create", f"n{i}"), rounds)
        out["network_rm_ms"] = timed(lambda i: conch.cli("network", "rm", f"n{i}"), rounds)

        def connect(i):
            conch.cli("network", "connect", "bridge", "cli")
            conch.cli("network", "disconnect", "bridge", "cli")

        out["connect_plus_disconnect_ms"] = timed(connect, rounds)
    finally:
        conch.cli("rm", "-f", "srv", "cli", check=False)
        conch.cli("network", "rm", "benchnet", check=False)
        conch.stop()
        db.umount_under(conch.work)
    return out


def bench_podman(work: Path, rounds: int) -> dict:
    try:
        podman = db.Podman(work)
    except db.Skip as exc:
        return {"skipped": str(exc)}
    try:
        ms = timed(lambda i: podman.cli("network", "create", f"pn{i}"), rounds)
        rm = timed(lambda i: podman.cli("network", "rm", f"pn{i}"), rounds)
    except RuntimeError as exc:
        return {"skipped": str(exc)[:300]}
    return {"network_create_ms": ms, "network_rm_ms": rm}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--size-mib", type=int, default=100)
    p.add_argument("--samples", type=int, default=9, help="interleaved curl rounds per path")
    p.add_argument("--only-throughput", action="store_true", help="skip the create/connect timings")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("network_bench: needs root", file=sys.stderr)
        return 1
    if not shutil.which("curl"):
        print("network_bench: needs curl (make bench-deps)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="netbench-"))
    try:
        results = {"conch": bench_conch(work, args.rounds, args.size_mib, args.samples,
                                         args.only_throughput),
                   "podman": {"skipped": "--only-throughput"} if args.only_throughput
                   else bench_podman(work, args.rounds)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    c, pm = results["conch"], results["podman"]
    print(f"{'':28}{'conch':>12}{'podman':>12}")
    for key in ("published_MBps", "published_hostaddr_MBps", "direct_MBps", "ctr_to_ctr_MBps",
                "network_create_ms", "network_rm_ms", "connect_plus_disconnect_ms"):
        if key not in c:
            continue
        pv = pm.get(key)
        print(f"{key:28}{c[key]:12.1f}{(f'{pv:12.1f}' if pv is not None else '           -')}")
    if "skipped" in pm:
        print(f"podman skipped: {pm['skipped']}")
    print(f"goal published >= direct: {'met' if c['published_MBps'] >= c['direct_MBps'] else 'NOT met'}")
    if "samples" in c:  # both fetched in the same round: the ratio cancels load bursts
        ratios = [p / d for p, d in zip(c["samples"]["published_MBps"], c["samples"]["direct_MBps"])]
        print(f"published/direct, median of per-round ratios: {statistics.median(ratios):.2f} "
              f"(published path: local address {c.get('published_local_ip') or '?'}; the "
              "bridge's = socket LB, 127.0.0.1 = nft DNAT)")
    if "network_create_ms" in pm:
        print(f"goal create <= podman: {'met' if c['network_create_ms'] <= pm['network_create_ms'] else 'NOT met'}")
    out = Path(__file__).resolve().parent / "results" / f"network-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
