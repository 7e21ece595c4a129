"""cgroup v2: one directory in the unified hierarchy.

Controllers reach a cgroup only through its ancestors' ``cgroup.subtree_control``;
``create()`` enables, top-down, every controller each ancestor has available (as runc
does). That is best effort: a non-root ancestor that holds processes cannot delegate
("no internal processes" rule), and then the limit's file is missing and ``apply``
reports it by name.

Devices: v2 has no devices.allow; enforcement needs a BPF_PROG_TYPE_CGROUP_DEVICE program,
which conch does not load (yet). Rather than pretend, ``apply`` accepts only device
rules that grant no more than the engine's defaults: an empty list, "allow everything",
or a leading deny-all followed by rules from
:data:`conch.cgroups.resources.DEFAULT_DEVICE_RULES`. Those are NOT enforced by the kernel
on v2: confinement then rests on the runtime creating only allowlisted device nodes (and
on the container lacking CAP_MKNOD or a way to reach other nodes). Any other, more
specific restriction is an InvalidArgument, so nobody believes they got it.
"""

import os
import sys

from conch.cgroups.fs import (
    Write,
    make_dirs,
    read_keyed,
    read_value,
    remove_created_parents,
    remove_dir,
    run_plan,
    tree_procs,
    wait_until,
    write_value,
)
from conch.cgroups.resources import (
    UNLIMITED,
    BlockIO,
    Cpu,
    Memory,
    Resources,
    allows_everything,
    blkio_weight_to_io_weight,
    parse_resources,
    shares_to_weight,
    swap_to_v2,
    within_defaults,
)
from conch.errors import ConchError, FailedPrecondition, InvalidArgument, SystemCallError, Unavailable


def _log():
    # logging costs milliseconds the runtime's start cannot spare (see conch/cgroups/__init__.py);
    # only the rare failure paths log, so import it on first use.
    import logging

    return logging.getLogger(__name__)


_FREEZE_TIMEOUT = 10.0


def _max(value: int) -> str:
    return "max" if value == UNLIMITED else str(value)


def _parse_max(text: str) -> int | None:
    return None if text == "max" else int(text)


class V2Manager:
    """Manager for a cgroup in a cgroup2 hierarchy mounted at ``mountpoint``."""

    version = 2

    def __init__(self, dir: str, *, mountpoint: str, created: list[str] | tuple[str, ...] = ()):
        mountpoint = os.path.normpath(mountpoint)
        dir = os.path.normpath(dir)
        if not dir.startswith(mountpoint.rstrip("/") + "/"):
            raise InvalidArgument(f"cgroup {dir} is not below the cgroup2 mount {mountpoint}")
        self._dir = dir
        self._mountpoint = mountpoint
        self._created = list(created)
        self.paths = {"": dir}

    # ---- persistence ---------------------------------------------------------------

    def save(self) -> dict:
        return {"version": 2, "dir": self._dir, "mountpoint": self._mountpoint, "created": list(self._created)}

    @classmethod
    def load(cls, saved: dict) -> "V2Manager":
        dir, mountpoint, created = saved.get("dir"), saved.get("mountpoint"), saved.get("created", [])
        if not isinstance(dir, str) or not isinstance(mountpoint, str) or not isinstance(created, list):
            raise InvalidArgument("saved cgroup v2 manager needs 'dir', 'mountpoint' and 'created'")
        return cls(dir, mountpoint=mountpoint, created=created)

    def mount_sources(self) -> list[tuple[str, str]]:
        """[("", container dir)]: v2 has one hierarchy and no mount options to name it."""
        return [("", self._dir)]

    # ---- lifecycle -----------------------------------------------------------------

    def create(self) -> None:
        made = make_dirs(self._dir)
        self._created.extend(p for p in made if p not in self._created)
        self._enable_controllers()

    def _enable_controllers(self) -> None:
        # Top-down from the mount: a level can only delegate what it was given.
        relative = os.path.relpath(os.path.dirname(self._dir), self._mountpoint)
        level = self._mountpoint
        levels = [level]
        for part in [] if relative == "." else relative.split("/"):
            level = os.path.join(level, part)
            levels.append(level)
        for level in levels:
            available = set(read_value(level, "cgroup.controllers").split())
            enabled = set(read_value(level, "cgroup.subtree_control").split())
            for controller in sorted(available - enabled):
                try:
                    write_value(level, "cgroup.subtree_control", f"+{controller}")
                except SystemCallError as exc:
                    # Runs on every start on hosts with undelegatable ancestors: don't import
                    # logging only to drop a debug line; if logging is loaded, log as before.
                    if "logging" in sys.modules:
                        _log().debug("cannot enable %s in %s: %s", controller, level, exc)

    def add(self, pid: int) -> None:
        write_value(self._dir, "cgroup.procs", str(pid))

    def destroy(self) -> None:
        remove_dir(self._dir)
        remove_created_parents(self._created, self._dir)

    def pids(self) -> list[int]:
        return tree_procs(self._dir)

    # ---- freezer and signals -------------------------------------------------------

    def _events(self) -> dict[str, int]:
        return read_keyed(self._dir, "cgroup.events")

    def freeze(self) -> None:
        write_value(self._dir, "cgroup.freeze", "1")
        if not wait_until(lambda: self._events().get("frozen") == 1, timeout=_FREEZE_TIMEOUT):
            self.thaw()
            raise Unavailable(f"cgroup {self._dir} did not freeze within {_FREEZE_TIMEOUT:.0f}s")

    def thaw(self) -> None:
        write_value(self._dir, "cgroup.freeze", "0")
        if not wait_until(lambda: self._events().get("frozen") == 0, timeout=_FREEZE_TIMEOUT):
            raise Unavailable(f"cgroup {self._dir} did not thaw within {_FREEZE_TIMEOUT:.0f}s")

    def frozen(self) -> bool:
        return self._events().get("frozen") == 1

    def kill_all(self, sig: int) -> None:
        from signal import SIGKILL  # here, not at the top: signal imports enum (~3 ms)

        if not os.path.isdir(self._dir):
            return  # destroyed (or never created): no processes to signal
        if sig == SIGKILL and os.path.exists(os.path.join(self._dir, "cgroup.kill")):
            # Kernel 5.14+: kills the whole subtree atomically, frozen or not.
            write_value(self._dir, "cgroup.kill", "1")
            return
        froze = False
        if not self.frozen():
            try:
                self.freeze()
                froze = True
            except ConchError as exc:
                _log().warning("signalling %s unfrozen: %s", self._dir, exc)
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue
        finally:
            if froze or sig == SIGKILL:
                self.thaw()

    # ---- resources -----------------------------------------------------------------

    def apply(self, resources: dict) -> None:
        run_plan(self.plan(parse_resources(resources)))

    def plan(self, res: Resources) -> list[Write]:
        """The writes ``apply`` makes, in order."""
        d = self._dir
        plan: list[Write] = []
        if res.devices is not None and not (allows_everything(res.devices) or within_defaults(res.devices)):
            raise InvalidArgument(
                "linux.resources.devices: restrictive device rules need an eBPF device program "
                "on cgroup v2, which conch does not implement; only the default list or "
                "allow-all is accepted"
            )
        if res.cpu is not None:
            if res.cpu.cpus:
                plan.append(Write(dir=d, name="cpuset.cpus", value=res.cpu.cpus))
            if res.cpu.mems:
                plan.append(Write(dir=d, name="cpuset.mems", value=res.cpu.mems))
        if res.memory is not None:
            plan.extend(self._memory_plan(res.memory))
        if res.cpu is not None:
            plan.extend(self._cpu_plan(res.cpu))
        if res.pids_limit is not None:
            plan.append(Write(dir=d, name="pids.max", value=_max(res.pids_limit)))
        if res.block_io is not None:
            plan.extend(self._io_plan(res.block_io))
        for page in res.hugepage_limits:
            plan.append(Write(dir=d, name=f"hugetlb.{page.page_size}.max", value=str(page.limit)))
        # unified goes last so its raw values win over the converted ones (runc order).
        plan.extend(Write(dir=d, name=name, value=value) for name, value in res.unified)
        return plan

    def _memory_plan(self, m: Memory) -> list[Write]:
        w = "linux.resources.memory"
        for field, value in (("kernel", m.kernel), ("kernelTCP", m.kernel_tcp), ("swappiness", m.swappiness)):
            if value is not None:
                raise InvalidArgument(f"{w}.{field} has no cgroup v2 equivalent")
        if m.disable_oom_killer:
            raise InvalidArgument(f"{w}.disableOOMKiller has no cgroup v2 equivalent")
        d = self._dir
        swap = m.swap
        if m.limit == UNLIMITED and swap is None:
            swap = UNLIMITED  # as on v1: unlimiting memory unlimits swap
        swap = swap_to_v2(swap, m.limit)
        plan = []
        if swap is not None:
            if os.path.exists(os.path.join(d, "memory.swap.max")):
                plan.append(Write(dir=d, name="memory.swap.max", value=_max(swap)))
            elif swap != UNLIMITED:
                raise FailedPrecondition(f"{w}.swap needs swap accounting, but memory.swap.max is missing")
        if m.limit is not None:
            plan.append(Write(dir=d, name="memory.max", value=_max(m.limit)))
        if m.reservation is not None:
            plan.append(Write(dir=d, name="memory.low", value=_max(m.reservation)))
        return plan

    def _cpu_plan(self, c: Cpu) -> list[Write]:
        d = self._dir
        plan = []
        if c.shares is not None:
            plan.append(Write(dir=d, name="cpu.weight", value=str(shares_to_weight(c.shares))))
        if c.quota is not None or c.period is not None:
            # cpu.max is "$QUOTA $PERIOD"; a lone period keeps quota at "max" (runc).
            quota = "max" if c.quota in (None, UNLIMITED) else str(c.quota)
            value = quota if c.period is None else f"{quota} {c.period}"
            plan.append(Write(dir=d, name="cpu.max", value=value))
        if c.burst is not None:
            plan.append(Write(dir=d, name="cpu.max.burst", value=str(c.burst)))
        if c.idle is not None:
            plan.append(Write(dir=d, name="cpu.idle", value=str(c.idle)))
        return plan

    def _io_plan(self, b: BlockIO) -> list[Write]:
        d = self._dir
        plan = []
        if b.weight is not None:
            # BFQ takes the v1 scale as is; io.weight has its own range.
            if os.path.exists(os.path.join(d, "io.bfq.weight")):
                plan.append(Write(dir=d, name="io.bfq.weight", value=str(b.weight)))
            else:
                plan.append(Write(dir=d, name="io.weight", value=f"default {blkio_weight_to_io_weight(b.weight)}"))
        for key, rates in (
            ("rbps", b.throttle_read_bps),
            ("wbps", b.throttle_write_bps),
            ("riops", b.throttle_read_iops),
            ("wiops", b.throttle_write_iops),
        ):
            plan.extend(Write(dir=d, name="io.max", value=f"{r.major}:{r.minor} {key}={r.rate}") for r in rates)
        return plan

    # ---- observation ---------------------------------------------------------------

    def oom_killed(self) -> bool:
        if not os.path.exists(os.path.join(self._dir, "memory.events")):
            raise FailedPrecondition(f"memory controller not enabled for {self._dir} (no memory.events)")
        return read_keyed(self._dir, "memory.events").get("oom_kill", 0) > 0

    def stats(self) -> dict:
        """Same keys as v1's ``stats()``; a section is absent when its controller is.

        memory: usage, max_usage (memory.peak, 0 before kernel 5.19), limit (None =
                unlimited), cache (file), rss (anon), swap, failcnt (events "max"),
                oom_kills, stat
        cpu:    usage_ns, user_ns, system_ns, percpu_ns ([] on v2), periods,
                throttled_periods, throttled_ns
        pids:   current, limit (None = unlimited)
        """
        d = self._dir
        out: dict = {}
        has = lambda name: os.path.exists(os.path.join(d, name))  # noqa: E731
        if has("memory.current"):
            stat = read_keyed(d, "memory.stat")
            events = read_keyed(d, "memory.events")
            out["memory"] = {
                "usage": int(read_value(d, "memory.current")),
                "max_usage": int(read_value(d, "memory.peak")) if has("memory.peak") else 0,
                "limit": _parse_max(read_value(d, "memory.max")),
                "cache": stat.get("file", 0),
                "rss": stat.get("anon", 0),
                "swap": int(read_value(d, "memory.swap.current")) if has("memory.swap.current") else 0,
                "failcnt": events.get("max", 0),
                "oom_kills": events.get("oom_kill", 0),
                "stat": stat,
            }
        if has("cpu.stat"):
            stat = read_keyed(d, "cpu.stat")
            out["cpu"] = {
                "usage_ns": stat.get("usage_usec", 0) * 1000,
                "user_ns": stat.get("user_usec", 0) * 1000,
                "system_ns": stat.get("system_usec", 0) * 1000,
                "percpu_ns": [],
                "periods": stat.get("nr_periods", 0),
                "throttled_periods": stat.get("nr_throttled", 0),
                "throttled_ns": stat.get("throttled_usec", 0) * 1000,
            }
        if has("pids.current"):
            out["pids"] = {"current": int(read_value(d, "pids.current")), "limit": _parse_max(read_value(d, "pids.max"))}
        return out
