"""What a privileged test left behind on the host, and a readable diff of it.

:meth:`HostSnapshot.take` records, from the test runner's point of view (the host's
mount, network and pid namespaces):

- mounts: /proc/self/mountinfo, keyed by mount ID (IDs are never reused while a mount
  lives, so a new ID is a new mount, even at a path that was mounted before);
- cgroups: directories under every cgroup v1 controller and cgroup2 mount whose path
  contains one of :data:`CGROUP_MARKERS` ("conch", "test");
- links: network interface names in /sys/class/net;
- nft_tables: nftables tables (``family name``), when the ``nft`` tool is installed;
- processes: (pid, start time) with ppid, cmdline, cgroups and a marker from the
  environment, excluding this process and its ancestors;
- files: every path under the runtime state roots the tests use.

:func:`assert_no_leaks` only reports things that are *new* in ``after``: whatever was
there before, or went away (processes that exited, unrelated unmounts), is not a leak.
Processes are judged more narrowly still because other work runs on the machine: a new
process counts only when it is one of ours — a descendant of the test runner, carrying
:data:`MARKER_ENV` in its environment (runtimes inherit it from the test session), or
living in a cgroup under :data:`CGROUP_PARENT` (where test bundles put containers).

Other work on the same machine that makes cgroups with "conch" or "test" in their
names while a test runs (say, a cgroup manager's own tests in another session) shows up
as a leak: in CI nothing else runs, so the check stays broad on purpose.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

__all__ = [
    "CGROUP_MARKERS", "MARKER_ENV", "PERSISTENT_CGROUPS", "Mount", "Process",
    "HostSnapshot", "LeakReport", "diff_snapshots", "assert_no_leaks", "wait_no_leaks",
]

CGROUP_MARKERS = ("conch", "test")
MARKER_ENV = "CONCH_TEST_SESSION"
# Shared parents that runtimes create lazily and leave in place on purpose (runc removes
# only the leaf it made); the session fixture removes them at the end.
CGROUP_PARENT = "/conch-test"  # == conch.testing.bundles.CGROUP_PARENT
PERSISTENT_CGROUPS = frozenset({CGROUP_PARENT})


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    mount_id: int
    mountpoint: str
    fstype: str
    source: str
    options: str

    def __str__(self) -> str:
        return f"{self.mountpoint} ({self.fstype} from {self.source}, {self.options})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    pid: int
    starttime: int
    ppid: int
    cmdline: str
    cgroups: tuple[str, ...]
    marked: bool
    zombie: bool = False

    def __str__(self) -> str:
        cg = sorted({c for c in self.cgroups if c != "/"})
        return f"pid {self.pid} (ppid {self.ppid}): {self.cmdline!r} cgroups={cg}"


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 3 < len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def read_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[int, Mount]:
    mounts: dict[int, Mount] = {}
    for line in Path(mountinfo).read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, source, *_ = post.split() + ["", ""]
        mounts[int(fields[0])] = Mount(
            mount_id=int(fields[0]),
            mountpoint=_unescape(fields[4]),
            fstype=fstype,
            source=_unescape(source),
            options=fields[5],
        )
    return mounts


def cgroup_mountpoints(mounts: Iterable[Mount]) -> list[str]:
    return sorted({m.mountpoint for m in mounts if m.fstype in ("cgroup", "cgroup2")})


def read_cgroups(mountpoints: Iterable[str], markers=CGROUP_MARKERS) -> frozenset[str]:
    """``"<mountpoint>:<cgroup path>"`` for each marked cgroup directory."""
    found = set()
    for mp in mountpoints:
        for dirpath, dirnames, _ in os.walk(mp):
            rel = "/" + os.path.relpath(dirpath, mp) if dirpath != mp else "/"
            if any(m in rel for m in markers):
                found.add(f"{mp}:{rel}")
            # Don't descend into the runner's own deep trees needlessly; cgroup trees
            # are small here, so plain walking is fine.
    return frozenset(found)


def read_links() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/sys/class/net"))
    except FileNotFoundError:
        return frozenset()


def read_nft_tables() -> frozenset[str]:
    import shutil
    import subprocess

    nft = shutil.which("nft")
    if nft is None:
        return frozenset()
    proc = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, timeout=30)
    return frozenset(line.split(None, 1)[1] for line in proc.stdout.splitlines()
                     if line.startswith("table "))


def _ancestors(pid: int) -> set[int]:
    seen = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rpartition(")")[2].split()[1])
    return seen


def _read_process(pid: int, marker: str | None) -> Process | None:
    base = f"/proc/{pid}"
    try:
        stat = Path(f"{base}/stat").read_text()
        rest = stat.rpartition(")")[2].split()
        cmd = Path(f"{base}/cmdline").read_bytes()
        cgroups = tuple(
            line.split(":", 2)[2] for line in Path(f"{base}/cgroup").read_text().splitlines()
            if line.count(":") >= 2
        )
        marked = False
        if marker:
            try:
                marked = f"{MARKER_ENV}={marker}".encode() in Path(f"{base}/environ").read_bytes().split(b"\0")
            except OSError:
                pass
    except (OSError, IndexError, ValueError):
        return None  # exited while we looked
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    return Process(
        pid=pid,
        starttime=int(rest[19]),  # field 22 of stat; rest starts at field 3
        ppid=int(rest[1]),
        cmdline=cmd.replace(b"\0", b" ").decode(errors="replace").strip() or f"[{comm}]",
        cgroups=cgroups,
        marked=marked,
        zombie=rest[0] == "Z",
    )


def read_processes(exclude: set[int], marker: str | None) -> dict[tuple[int, int], Process]:
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        proc = _read_process(int(entry), marker)
        if proc is not None:
            procs[(proc.pid, proc.starttime)] = proc
    return procs


def read_files(roots: Iterable[Path]) -> frozenset[str]:
    found = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                found.add(os.path.join(dirpath, name))
    return frozenset(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSnapshot:
    mounts: dict[int, Mount]
    cgroups: frozenset[str]
    links: frozenset[str]
    processes: dict[tuple[int, int], Process]
    files: frozenset[str]
    roots: tuple[Path, ...] = ()
    runner: int = field(default_factory=os.getpid)
    nft_tables: frozenset[str] = frozenset()

    @classmethod
    def take(cls, roots: Iterable[Path] = ()) -> "HostSnapshot":
        roots = tuple(Path(r) for r in roots)
        mounts = read_mounts()
        return cls(
            mounts=mounts,
            cgroups=read_cgroups(cgroup_mountpoints(mounts.values())),
            links=read_links(),
            processes=read_processes(_ancestors(os.getpid()), os.environ.get(MARKER_ENV)),
            files=read_files(roots),
            roots=roots,
            nft_tables=read_nft_tables(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LeakReport:
    mounts: list[Mount]
    cgroups: list[str]
    links: list[str]
    processes: list[Process]
    files: list[str]
    nft_tables: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.mounts or self.cgroups or self.links or self.processes or self.files
                    or self.nft_tables)

    def __str__(self) -> str:
        lines = ["the test leaked host resources:"]
        for title, items in [
            ("new mounts in the host mount namespace", self.mounts),
            ("new cgroups", self.cgroups),
            ("new network interfaces", self.links),
            ("new processes still alive", self.processes),
            ("files left under runtime roots", self.files),
            ("new nftables tables", self.nft_tables),
        ]:
            if items:
                lines.append(f"  {title}:")
                lines.extend(f"    + {item}" for item in items)
        return "\n".join(lines)


def _ours(proc: Process, after: HostSnapshot) -> bool:
    if proc.zombie:
        # Dead already, holding only a pid until its parent reaps it. This machine's
        # init reaps orphans lazily (~1.5 s), so only our own unreaped children count.
        return proc.ppid == after.runner
    if proc.marked or any(c.startswith(CGROUP_PARENT + "/") for c in proc.cgroups):
        return True
    by_pid = {p.pid: p for p in after.processes.values()}
    seen, pid = set(), proc.ppid
    while pid > 1 and pid not in seen:  # descendant of the runner (or of a marked proc)
        if pid == after.runner:
            return True
        seen.add(pid)
        parent = by_pid.get(pid)
        if parent is None:
            return False
        if parent.marked:
            return True
        pid = parent.ppid
    return False


def diff_snapshots(before: HostSnapshot, after: HostSnapshot) -> LeakReport:
    def is_persistent(cg: str) -> bool:
        return cg.partition(":")[2] in PERSISTENT_CGROUPS

    return LeakReport(
        mounts=[m for i, m in sorted(after.mounts.items()) if i not in before.mounts],
        cgroups=sorted(c for c in after.cgroups - before.cgroups if not is_persistent(c)),
        links=sorted(after.links - before.links),
        processes=[
            p for k, p in sorted(after.processes.items())
            if k not in before.processes and _ours(p, after)
        ],
        files=sorted(after.files - before.files),
        nft_tables=sorted(after.nft_tables - before.nft_tables),
    )


def assert_no_leaks(before: HostSnapshot, after: HostSnapshot) -> None:
    report = diff_snapshots(before, after)
    assert not report, str(report)


def wait_no_leaks(before: HostSnapshot, timeout: float = 3.0) -> None:
    """Retake snapshots until nothing new is left or ``timeout`` passes (a killed
    container's processes and cgroups take a moment to go), then assert."""
    deadline = time.monotonic() + timeout
    while True:
        after = HostSnapshot.take(before.roots)
        report = diff_snapshots(before, after)
        if not report or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert not report, str(report)
