#!/usr/bin/env python3
"""What conch.network.netlink costs (root only): memory and per-call time.

- ``rss``: VmRSS (MiB) of a fresh ``python -I -S`` that imports ``aiohttp.web`` (the
  daemon's floor), then of one that also does netlink work (``link_exists``,
  ``list_links``, ``ensure_bridge`` of an existing bridge): the difference is what the
  netlink layer adds to conchd.
- ``ensure_bridge (new)``: create + address + up of a fresh bridge (deleted after).
- ``ensure_bridge (existing)``: the daemon-start path: the bridge is there already.
- ``plug_veth``: the container-start path: pair on the bridge, peer addressed inside a
  namespace made by ``netns.create(want_socket=True)`` (namespace creation not timed).

Median and p90 of ``--runs`` rounds after one warm-up. Names ``cnnb<hex>...``, addresses
10.219.0.0/24; everything is removed at the end.

    sudo .venv/bin/python bench/netlink_bench.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conch.network import netlink, netns  # noqa: E402

_RSS = """
import sys
sys.path[:0] = {paths!r}
import aiohttp.web
{work}
for line in open('/proc/self/status'):
    if line.startswith('VmRSS:'):
        print(int(line.split()[1]) / 1024)
"""

_WORK = """
from conch.network import netlink
netlink.link_exists('lo'); netlink.list_links('cn')
netlink.ensure_bridge({bridge!r}, '10.219.0.1/24')
"""


def rss(work: str) -> float:
    paths = [str(REPO)] + [p for p in sys.path if p.endswith("site-packages")]
    code = _RSS.format(paths=paths, work=work)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def summary(xs: list[float]) -> str:
    xs = sorted(xs[1:])  # the first round is the warm-up
    return f"median {statistics.median(xs):7.3f} ms   p90 {xs[int(len(xs) * 0.9) - 1]:7.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    runs = ap.parse_args().runs
    tag = uuid.uuid4().hex[:5]
    bridge = f"cnnb{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="conch-nlbench-"))
    try:
        netlink.ensure_bridge(bridge, "10.219.0.1/24")
        base = min(rss("") for _ in range(3))
        work = min(rss(_WORK.format(bridge=bridge)) for _ in range(3))
        print(f"rss: aiohttp.web {base:.1f} MiB, + netlink work {work:.1f} MiB "
              f"(+{work - base:.1f} MiB)")
        new, existing, plug = [], [], []
        for i in range(runs + 1):
            name = f"cnnb{tag}n{i}"
            new.append(timed(lambda: netlink.ensure_bridge(name, f"10.219.{i + 1}.1/24")))
            netlink.delete_link(name)
            existing.append(timed(lambda: netlink.ensure_bridge(bridge, "10.219.0.1/24")))
            path = tmp / f"ns{i}"
            sock = netns.create(path, want_socket=True)
            host = f"cnnb{tag}v{i}"
            plug.append(timed(lambda: netlink.plug_veth(
                host_name=host, peer_name="eth0", bridge=bridge, netns_path=str(path),
                address_cidr=f"10.219.0.{i + 2}/24", gateway="10.219.0.1", ns_socket=sock)))
            netlink.delete_link(host)
            netns.remove(path)
        print(f"ensure_bridge (new)      {summary(new)}")
        print(f"ensure_bridge (existing) {summary(existing)}")
        print(f"plug_veth                {summary(plug)}")
    finally:
        for name in netlink.list_links(f"cnnb{tag}"):
            netlink.delete_link(name)
        for path in tmp.iterdir():
            netns.remove(path)
        tmp.rmdir()


if __name__ == "__main__":
    main()
