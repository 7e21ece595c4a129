"""What a running container uses and may use: ``top`` (its processes), ``stats`` (its
cgroup's counters) and ``update`` (cgroup limits applied live, restart policy). A mixin
of :class:`conch.engine.containers.service.ContainerService`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

from conch.engine.model import CreateSpec
from conch.errors import Conflict, InvalidArgument


class Resources:
    async def top(self, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
        c = self.get(ref)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        import json

        pids = set(json.loads(await self._runtime("ps", "--format", "json", c.id)))
        proc = await asyncio.create_subprocess_exec(
            "ps", *ps_args.split(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidArgument(f"ps: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError as exc:
            raise InvalidArgument("Couldn't find PID field in ps output") from exc
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                rows.append(fields)
        return titles, rows

    def stats(self, ref: str) -> dict:
        from conch.cgroups import open_manager

        c = self.get(ref)
        if not c.state.running:
            return {}
        out = open_manager(f"/conch/{c.id}", container_id=c.id).stats()
        # no limit: docker shows the host's memory as the limit
        out.setdefault("memory", {})["host_total"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        out["system_cpu_ns"] = system_cpu_ns()
        out["online_cpus"] = os.cpu_count() or 1
        return out

    async def update(self, ref: str, **changes) -> None:
        """``docker update``: resources (applied live to the cgroup) and restart policy.
        ``changes`` are CreateSpec field names (memory, memory_swap, nano_cpus, cpu_shares,
        cpu_quota, cpu_period, cpuset_cpus, pids_limit, memory_reservation, restart_policy)."""
        allowed = {"memory", "memory_swap", "memory_reservation", "nano_cpus", "cpu_shares",
                   "cpu_quota", "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit",
                   "restart_policy"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}")
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            spec = dataclasses.replace(c.spec, **changes)
            if spec.nano_cpus and (spec.cpu_quota or spec.cpu_period):
                raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
            if c.state.running and set(changes) - {"restart_policy"}:
                await asyncio.to_thread(apply_resources, c.id, spec)
            self._save(dataclasses.replace(c, spec=spec))
        self.events.publish("container", "update", c.id, name=c.name, image=c.image)

    async def set_labels(self, ref: str, labels: dict[str, str]) -> None:
        """Merge ``labels`` into the record (conch's own state labels, such as the
        autoscaler's ``io.conch.autoscale.desired``: docker's labels are fixed at create,
        these are conch's to keep current)."""
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            spec = dataclasses.replace(c.spec, labels={**c.spec.labels, **labels})
            self._save(dataclasses.replace(c, spec=spec))


def apply_resources(cid: str, spec: CreateSpec) -> None:
    from conch.cgroups import open_manager

    res: dict = {}
    if spec.memory:
        res["memory"] = {"limit": spec.memory}
        if spec.memory_swap:
            res["memory"]["swap"] = spec.memory_swap
    if spec.memory_reservation:
        res.setdefault("memory", {})["reservation"] = spec.memory_reservation
    cpu: dict = {}
    if spec.nano_cpus:
        cpu["period"] = 100000
        cpu["quota"] = spec.nano_cpus * 100000 // 1_000_000_000
    else:
        if spec.cpu_quota:
            cpu["quota"] = spec.cpu_quota
        if spec.cpu_period:
            cpu["period"] = spec.cpu_period
    if spec.cpu_shares:
        cpu["shares"] = spec.cpu_shares
    if spec.cpuset_cpus:
        cpu["cpus"] = spec.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if spec.pids_limit:
        res["pids"] = {"limit": spec.pids_limit}
    if res:
        open_manager(f"/conch/{cid}", container_id=cid).apply(res)


def system_cpu_ns() -> int:
    """The host's total CPU time in ns (the cpu line of /proc/stat), as docker stats uses."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields) * 1_000_000_000 // ticks

