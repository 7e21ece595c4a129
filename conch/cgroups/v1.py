"""cgroup v1: one directory per mounted hierarchy, written the way runc's fs driver does.

A hierarchy is named by its mount options as the kernel lists them: ``"memory"``,
``"cpu,cpuacct"`` when co-mounted, ``"name=systemd"`` for a named hierarchy. The manager
joins every mounted hierarchy (named ones included) so ``/proc/PID/cgroup`` shows the
container's cgroup everywhere, as runc does.

Write order matters in v1 and follows runc: cpuset before anything else (a cpuset cgroup
with empty cpus/mems cannot take tasks, so each new level copies its parent's values),
memory+swap in the order the kernel's ``limit <= memsw`` check accepts, and the CFS
period/quota pair retried when the kernel rejects the period alone.
"""

import errno
import os

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
from conch.cgroups.resources import UNLIMITED, BlockIO, Cpu, Memory, Resources, parse_resources
from conch.errors import ConchError, FailedPrecondition, InvalidArgument, Unavailable


def _log():
    # logging costs milliseconds the runtime's start cannot spare (see conch/cgroups/__init__.py);
    # only the rare failure paths log, so import it on first use.
    import logging

    return logging.getLogger(__name__)


# v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (just under 2**63).
_V1_UNLIMITED_ABOVE = 2**62
_FREEZE_TIMEOUT = 10.0


def _limit(value: int) -> str:
    return "-1" if value == UNLIMITED else str(value)


class V1Manager:
    """Manager for cgroup v1 (legacy or hybrid hosts)."""

    version = 1

    def __init__(self, dirs: dict[str, str], *, created: list[str] | tuple[str, ...] = ()):
        # dirs: hierarchy mount options ("cpu,cpuacct", "name=systemd") → container dir;
        # "" is the controller-less cgroup2 hierarchy of a hybrid host.
        if not dirs:
            raise InvalidArgument("a cgroup v1 manager needs at least one hierarchy")
        self._dirs = dict(dirs)
        self._created = list(created)
        self.paths = {c: d for options, d in self._dirs.items() for c in options.split(",")}

    # ---- persistence ---------------------------------------------------------------

    def save(self) -> dict:
        return {"version": 1, "dirs": dict(self._dirs), "created": list(self._created)}

    @classmethod
    def load(cls, saved: dict) -> "V1Manager":
        dirs, created = saved.get("dirs"), saved.get("created", [])
        if not isinstance(dirs, dict) or not all(isinstance(v, str) for v in dirs.values()):
            raise InvalidArgument("saved cgroup v1 manager: 'dirs' must map hierarchy → path")
        if not isinstance(created, list):
            raise InvalidArgument("saved cgroup v1 manager: 'created' must be a list")
        return cls(dirs, created=created)

    def mount_sources(self) -> list[tuple[str, str]]:
        """(mount options, container dir) per hierarchy, for mounting cgroupfs in a container."""
        return [(options, d) for options, d in self._dirs.items() if options]

    # ---- lifecycle -----------------------------------------------------------------

    def create(self) -> None:
        for options, dir in self._dirs.items():
            if "cpuset" in options.split(","):
                made = self._create_cpuset(dir)
            else:
                made = make_dirs(dir)
            self._created.extend(p for p in made if p not in self._created)

    def _create_cpuset(self, dir: str) -> list[str]:
        # One level at a time: a new cpuset cgroup starts with empty cpus/mems and must
        # get them before its own child can be given any.
        missing = []
        probe = dir
        while not os.path.isdir(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        _fill_cpuset(probe)
        created = []
        for path in reversed(missing):
            created.extend(make_dirs(path))
            _fill_cpuset(path)
        return created

    def add(self, pid: int) -> None:
        for dir in self._dirs.values():
            write_value(dir, "cgroup.procs", str(pid))

    def destroy(self) -> None:
        for dir in self._dirs.values():
            remove_dir(dir)
            remove_created_parents(self._created, dir)

    def pids(self) -> list[int]:
        return tree_procs(self._any_dir())

    def _any_dir(self) -> str:
        for controller in ("pids", "freezer", "memory", "cpu", "devices"):
            if controller in self.paths:
                return self.paths[controller]
        return next(iter(self._dirs.values()))

    def _dir(self, controller: str) -> str:
        try:
            return self.paths[controller]
        except KeyError:
            raise FailedPrecondition(f"cgroup v1 controller {controller!r} is not mounted on this host") from None

    # ---- freezer and signals -------------------------------------------------------

    def freeze(self) -> None:
        dir = self._dir("freezer")

        def frozen_now() -> bool:
            # Re-asking helps: tasks that were mid-fork can leave the state at FREEZING.
            if read_value(dir, "freezer.state") == "FROZEN":
                return True
            write_value(dir, "freezer.state", "FROZEN")
            return False

        write_value(dir, "freezer.state", "FROZEN")
        if not wait_until(frozen_now, timeout=_FREEZE_TIMEOUT):
            self.thaw()
            raise Unavailable(f"cgroup {dir} did not freeze within {_FREEZE_TIMEOUT:.0f}s")

    def thaw(self) -> None:
        dir = self._dir("freezer")
        write_value(dir, "freezer.state", "THAWED")
        if not wait_until(lambda: read_value(dir, "freezer.state") == "THAWED", timeout=_FREEZE_TIMEOUT):
            raise Unavailable(f"cgroup {dir} did not thaw within {_FREEZE_TIMEOUT:.0f}s")

    def frozen(self) -> bool:
        return read_value(self._dir("freezer"), "freezer.state") == "FROZEN"

    def kill_all(self, sig: int) -> None:
        from signal import SIGKILL  # here, not at the top: signal imports enum (~3 ms)

        if not os.path.isdir(self._any_dir()):
            return  # destroyed (or never created): no processes to signal
        # Freeze first so nothing forks between listing and signalling (runc does the same).
        froze = False
        if "freezer" in self.paths and not self.frozen():
            try:
                self.freeze()
                froze = True
            except ConchError as exc:
                _log().warning("signalling %s unfrozen: %s", self._any_dir(), exc)
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue
        finally:
            # A frozen task only acts on SIGKILL once thawed, so SIGKILL thaws even a
            # paused container; other signals leave a paused container paused.
            if froze or (sig == SIGKILL and "freezer" in self.paths):
                self.thaw()

    # ---- resources -----------------------------------------------------------------

    def apply(self, resources: dict) -> None:
        res = parse_resources(resources)
        run_plan(self.plan(res))

    def plan(self, res: Resources) -> list[Write]:
        """The writes ``apply`` makes, in order (reads current values where order depends on them)."""
        if res.unified:
            names = ", ".join(name for name, _ in res.unified)
            raise InvalidArgument(f"linux.resources.unified ({names}) needs cgroup v2; this host uses v1")
        plan: list[Write] = []
        if res.cpu is not None and (res.cpu.cpus or res.cpu.mems):
            d = self._dir("cpuset")
            if res.cpu.cpus:
                plan.append(Write(dir=d, name="cpuset.cpus", value=res.cpu.cpus))
            if res.cpu.mems:
                plan.append(Write(dir=d, name="cpuset.mems", value=res.cpu.mems))
        if res.devices:
            d = self._dir("devices")
            for rule in res.devices:
                name = "devices.allow" if rule.allow else "devices.deny"
                plan.append(Write(dir=d, name=name, value=rule.v1_line()))
        if res.memory is not None:
            plan.extend(self._memory_plan(res.memory))
        if res.cpu is not None:
            plan.extend(self._cpu_plan(res.cpu))
        if res.pids_limit is not None:
            value = "max" if res.pids_limit == UNLIMITED else str(res.pids_limit)
            plan.append(Write(dir=self._dir("pids"), name="pids.max", value=value))
        if res.block_io is not None:
            plan.extend(self._blkio_plan(res.block_io))
        for page in res.hugepage_limits:
            d = self._dir("hugetlb")
            plan.append(Write(dir=d, name=f"hugetlb.{page.page_size}.limit_in_bytes", value=str(page.limit)))
        return plan

    def _memory_plan(self, m: Memory) -> list[Write]:
        d = self._dir("memory")
        limit, swap = m.limit, m.swap
        if limit == UNLIMITED and swap is None:
            swap = UNLIMITED  # runc: unlimiting memory unlimits memory+swap too
        if swap is not None and not os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
            if swap != UNLIMITED:
                raise FailedPrecondition(
                    "linux.resources.memory.swap needs swap accounting, but memory.memsw.limit_in_bytes "
                    "is missing (boot with swapaccount=1)"
                )
            swap = None  # without accounting, memory+swap is already unlimited
        plan = []
        mem_write = Write(dir=d, name="memory.limit_in_bytes", value=_limit(limit or 0))
        swap_write = Write(dir=d, name="memory.memsw.limit_in_bytes", value=_limit(swap or 0))
        if limit is not None and swap is not None:
            # The kernel insists memory <= memory+swap after every single write: raise
            # memsw first when it grows past the current memory limit, else memory first.
            current = int(read_value(d, "memory.limit_in_bytes"))
            plan += [swap_write, mem_write] if swap == UNLIMITED or current < swap else [mem_write, swap_write]
        elif limit is not None:
            plan.append(mem_write)
        elif swap is not None:
            plan.append(swap_write)
        if m.reservation is not None:
            plan.append(Write(dir=d, name="memory.soft_limit_in_bytes", value=_limit(m.reservation)))
        if m.kernel is not None:
            plan.append(Write(dir=d, name="memory.kmem.limit_in_bytes", value=_limit(m.kernel)))
        if m.kernel_tcp is not None:
            plan.append(Write(dir=d, name="memory.kmem.tcp.limit_in_bytes", value=_limit(m.kernel_tcp)))
        if m.swappiness is not None:
            plan.append(Write(dir=d, name="memory.swappiness", value=str(m.swappiness)))
        if m.disable_oom_killer is not None:
            plan.append(Write(dir=d, name="memory.oom_control", value="1" if m.disable_oom_killer else "0"))
        return plan

    def _cpu_plan(self, c: Cpu) -> list[Write]:
        if c.shares is None and c.quota is None and c.period is None and c.burst is None and c.idle is None:
            return []
        d = self._dir("cpu")
        plan = []
        if c.shares is not None:
            plan.append(Write(dir=d, name="cpu.shares", value=str(c.shares)))
        if c.period is not None:
            # A shorter period can be refused (EINVAL) while the old quota is in place;
            # runc tolerates that when a quota follows and writes the period again after.
            tolerate = errno.EINVAL if c.quota is not None else 0
            plan.append(Write(dir=d, name="cpu.cfs_period_us", value=str(c.period), tolerate=tolerate))
        if c.quota is not None:
            plan.append(Write(dir=d, name="cpu.cfs_quota_us", value=_limit(c.quota)))
            if c.period is not None:
                plan.append(Write(dir=d, name="cpu.cfs_period_us", value=str(c.period)))
        if c.burst is not None:
            plan.append(Write(dir=d, name="cpu.cfs_burst_us", value=str(c.burst)))
        if c.idle is not None:
            plan.append(Write(dir=d, name="cpu.idle", value=str(c.idle)))
        return plan

    def _blkio_plan(self, b: BlockIO) -> list[Write]:
        d = self._dir("blkio")
        plan = []
        if b.weight is not None:
            for name in ("blkio.weight", "blkio.bfq.weight"):
                if os.path.exists(os.path.join(d, name)):
                    plan.append(Write(dir=d, name=name, value=str(b.weight)))
                    break
            else:
                raise FailedPrecondition(
                    "linux.resources.blockIO.weight: this kernel has neither blkio.weight nor "
                    "blkio.bfq.weight (no CFQ/BFQ I/O scheduler)"
                )
        for name, rates in (
            ("blkio.throttle.read_bps_device", b.throttle_read_bps),
            ("blkio.throttle.write_bps_device", b.throttle_write_bps),
            ("blkio.throttle.read_iops_device", b.throttle_read_iops),
            ("blkio.throttle.write_iops_device", b.throttle_write_iops),
        ):
            plan.extend(Write(dir=d, name=name, value=f"{r.major}:{r.minor} {r.rate}") for r in rates)
        return plan

    # ---- observation ---------------------------------------------------------------

    def oom_killed(self) -> bool:
        control = read_keyed(self._dir("memory"), "memory.oom_control")
        if "oom_kill" not in control:
            raise FailedPrecondition("memory.oom_control has no oom_kill counter (kernel older than 4.13)")
        return control["oom_kill"] > 0

    def stats(self) -> dict:
        """Sections present only for mounted controllers; keys as in the package docs.

        memory: usage, max_usage, limit (None = unlimited), cache, rss, swap, failcnt,
                oom_kills, stat (memory.stat as ints)
        cpu:    usage_ns, user_ns, system_ns, percpu_ns, periods, throttled_periods,
                throttled_ns
        pids:   current, limit (None = unlimited)
        """
        out: dict = {}
        if "memory" in self.paths:
            out["memory"] = self._memory_stats(self.paths["memory"])
        if "cpuacct" in self.paths or "cpu" in self.paths:
            out["cpu"] = self._cpu_stats()
        if "pids" in self.paths:
            d = self.paths["pids"]
            limit = read_value(d, "pids.max")
            out["pids"] = {"current": int(read_value(d, "pids.current")), "limit": None if limit == "max" else int(limit)}
        return out

    @staticmethod
    def _memory_stats(d: str) -> dict:
        stat = read_keyed(d, "memory.stat")
        limit = int(read_value(d, "memory.limit_in_bytes"))
        return {
            "usage": int(read_value(d, "memory.usage_in_bytes")),
            "max_usage": int(read_value(d, "memory.max_usage_in_bytes")),
            "limit": None if limit >= _V1_UNLIMITED_ABOVE else limit,
            "cache": stat.get("total_cache", stat.get("cache", 0)),
            "rss": stat.get("total_rss", stat.get("rss", 0)),
            "swap": stat.get("total_swap", stat.get("swap", 0)),
            "failcnt": int(read_value(d, "memory.failcnt")),
            "oom_kills": read_keyed(d, "memory.oom_control").get("oom_kill", 0),
            "stat": stat,
        }

    def _cpu_stats(self) -> dict:
        out = {"usage_ns": 0, "user_ns": 0, "system_ns": 0, "percpu_ns": [],
               "periods": 0, "throttled_periods": 0, "throttled_ns": 0}
        acct = self.paths.get("cpuacct")
        if acct is not None:
            out["usage_ns"] = int(read_value(acct, "cpuacct.usage"))
            out["percpu_ns"] = [int(v) for v in read_value(acct, "cpuacct.usage_percpu").split()]
            if os.path.exists(os.path.join(acct, "cpuacct.usage_user")):
                out["user_ns"] = int(read_value(acct, "cpuacct.usage_user"))
                out["system_ns"] = int(read_value(acct, "cpuacct.usage_sys"))
            else:
                # cpuacct.stat counts USER_HZ ticks.
                ticks = read_keyed(acct, "cpuacct.stat")
                per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
                out["user_ns"] = ticks.get("user", 0) * per_tick
                out["system_ns"] = ticks.get("system", 0) * per_tick
        cpu = self.paths.get("cpu")
        if cpu is not None:
            stat = read_keyed(cpu, "cpu.stat")
            out["periods"] = stat.get("nr_periods", 0)
            out["throttled_periods"] = stat.get("nr_throttled", 0)
            out["throttled_ns"] = stat.get("throttled_time", 0)
        return out


def _fill_cpuset(dir: str) -> None:
    """Give ``dir`` its parent's cpus/mems where empty (recursing up, like runc ensureParent)."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if read_value(dir, name):
            continue
        parent = os.path.dirname(dir)
        if parent == dir:
            raise FailedPrecondition(f"no cpuset ancestor of {dir} has {name} set")
        _fill_cpuset(parent)
        write_value(dir, name, read_value(parent, name))
