#!/usr/bin/env python3
"""Micro-bench of conch.network's kernel-facing libraries (issue 5), root only; the
whole-engine numbers are bench/network_bench.py's.

Times, each the median (and p90) of ``--runs`` rounds after one warm-up round:

- ``nft floor``: one ``nft -f -`` process running ``list tables`` (the floor of every
  firewall mutation, which is exactly one such process);
- ``bridge``: ``netlink.ensure_bridge`` (create + address + up) of a fresh bridge;
- ``add_network`` / ``publish`` / ``unpublish`` / ``remove_network``: Firewall calls;
- ``bridge+add_network``: the two together, the kernel part of ``network create``;
- ``dns A (udp)``: one query answered from the lookup, client round trip on loopback.

Everything lives in a private table ``conch_b<hex>`` and bridges ``cnbn<hex><n>`` with
10.218.<n>.0/24, removed at the end. Output: a table, and JSON in
bench/results/network-micro-<stamp>.json.

    .venv/bin/python bench/network_micro_bench.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conch.network import netlink  # noqa: E402
from conch.network.dns import DnsServer  # noqa: E402
from conch.network.firewall import Firewall  # noqa: E402
from conch.testing.fakedns import ask_udp, free_port  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bench_firewall(runs: int, tag: str) -> dict[str, list[float]]:
    fw = Firewall(f"conch_b{tag}")
    names = ("nft floor", "bridge", "add_network", "bridge+add_network", "publish",
             "unpublish", "remove_network")
    out: dict[str, list[float]] = {k: [] for k in names}
    bridges = []
    try:
        fw.ensure()
        for i in range(runs + 1):
            br, subnet = f"cnbn{tag}{i}", f"10.218.{i}.0/24"
            bridges.append(br)
            t_floor = timed(lambda: subprocess.run(["nft", "-f", "-"], input=b"list tables\n",
                                                   capture_output=True, check=True))
            t_bridge = timed(lambda: netlink.ensure_bridge(br, f"10.218.{i}.1/24"))
            t_add = timed(lambda: fw.add_network(bridge=br, subnet=subnet))
            t_pub = timed(lambda: fw.publish(bridge=br, proto="tcp", host_ip="0.0.0.0",
                                             host_port=20000 + i, container_ip=f"10.218.{i}.2",
                                             container_port=80))
            t_unpub = timed(lambda: fw.unpublish(proto="tcp", host_ip="0.0.0.0",
                                                 host_port=20000 + i))
            t_rm = timed(lambda: fw.remove_network(bridge=br))
            netlink.delete_link(br)
            if i:  # round 0 is the warm-up
                for key, value in zip(names, (t_floor, t_bridge, t_add, t_bridge + t_add,
                                              t_pub, t_unpub, t_rm)):
                    out[key].append(value)
    finally:
        fw.destroy()
        for br in bridges:
            netlink.delete_link(br)
    return out


def bench_dns(runs: int) -> list[float]:
    from dnslib import DNSRecord

    async def main() -> list[float]:
        address = "127.0.0.61"
        port = free_port(address)
        server = DnsServer(lookup=lambda n, c, name: ["10.0.0.2"] if name == "web" else None,
                           upstreams=[])
        await server.add_listener(network_id="n", address=address, port=port)
        query = DNSRecord.question("web").pack()
        times = []
        try:
            for i in range(runs + 1):
                start = time.perf_counter()
                assert await ask_udp(query, address, port) is not None
                if i:
                    times.append((time.perf_counter() - start) * 1000)
        finally:
            await server.close()
        return times

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("network_micro_bench needs root (bridges, nftables)")
    results = bench_firewall(args.runs, uuid.uuid4().hex[:6])
    results["dns A (udp)"] = bench_dns(args.runs)
    print(f"{'operation':24} {'median ms':>10} {'p90 ms':>8}  runs")
    summary = {}
    for name, values in results.items():
        values = sorted(values)
        med, p90 = statistics.median(values), values[max(0, int(len(values) * 0.9) - 1)]
        summary[name] = {"median_ms": round(med, 3), "p90_ms": round(p90, 3), "runs": len(values)}
        print(f"{name:24} {med:10.2f} {p90:8.2f}  {len(values)}")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"network-micro-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
