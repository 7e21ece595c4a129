"""Shared fixtures: runtimes under test, bundles, and the host leak check.

- ``runtime`` is parametrised over "conch" (this venv's ``conch-runtime``), "runc" and
  "crun". runc/crun are skipped with the reason when they are not installed
  (``make test-deps``) or when a one-off probe shows they cannot run a container on this
  machine (crun 1.8 refuses the v1-hybrid layout whenever cgroup2 lists a controller).
  conch is never probed away: while it does not work its cases fail, on purpose.
- Each runtime gets its own ``--root`` in a session temp dir.
- ``no_leaks`` snapshots the host before the test and asserts afterwards (with a short
  grace period) that no mount, cgroup, link, process or runtime state file was left.
  ``runtime`` requests it, so every test that runs containers is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conch.testing.bundles import CGROUP_PARENT, make_bundle
from conch.testing.leaks import MARKER_ENV, HostSnapshot, cgroup_mountpoints, read_mounts, wait_no_leaks

# Runtimes (and everything they fork) inherit this, which is how the leak check tells
# our processes from the rest of the machine's.
os.environ.setdefault(MARKER_ENV, uuid.uuid4().hex)

RUNTIME_NAMES = ("conch", "runc", "crun")
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="conch-test-roots-"))
for _name in RUNTIME_NAMES:  # made up front so the leak check sees only their contents
    (_SESSION_ROOT / _name).mkdir()
_PROBES: dict[str, str | None] = {}  # name -> None when usable, else the skip reason


def conch_runtime_binary() -> str:
    """The ``conch-runtime`` of the venv running pytest (not whatever is on PATH)."""
    here = Path(sys.prefix) / "bin" / "conch-runtime"
    if here.exists():
        return str(here)
    found = shutil.which("conch-runtime")
    if found:
        return found
    pytest.fail("conch-runtime is not installed in this venv; run `make setup`")


@dataclass
class Runtime:
    """A runc-compatible CLI with its own state root."""

    name: str
    binary: str
    root: Path
    created: list[str] = field(default_factory=list)

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *map(str, args)]

    def __call__(self, *args, timeout: float = 60, input: str | None = None,
                 check: bool = False, **kw) -> subprocess.CompletedProcess:
        """Run the CLI; stdout/stderr go to temp files, not pipes, so a detached
        container that inherits them cannot keep us waiting for EOF."""
        kw.setdefault("stdin", None if input is not None else subprocess.DEVNULL)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(self.cmd(*args), stdout=out, stderr=err, timeout=timeout,
                                input=input.encode() if input is not None else None,
                                **kw).returncode
            out.seek(0), err.seek(0)
            proc = subprocess.CompletedProcess(
                self.cmd(*args), rc, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def new_id(self) -> str:
        cid = f"ct-{uuid.uuid4().hex[:10]}"
        self.created.append(cid)
        return cid

    def run(self, bundle: Path, *extra: str, cid: str | None = None, **kw):
        """Foreground ``run``: the container's stdout/stderr are captured pipes."""
        return self("run", "--bundle", bundle, *extra, cid or self.new_id(), **kw)

    def state(self, cid: str) -> dict:
        proc = self("state", cid, check=True)
        return json.loads(proc.stdout)

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                assert st["status"] == status, f"{cid} stayed {st['status']}, wanted {status}"
                return st
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Best effort: remove whatever a failed test left in this root."""
        for cid in self.created:
            self("delete", "--force", cid, timeout=30)
        self.created.clear()


def _probe(name: str) -> str | None:
    """None if ``name`` can run a container here, else why not (the skip reason)."""
    if os.geteuid() != 0:
        return "needs root"
    binary = shutil.which(name)
    if binary is None:
        return f"{name} is not installed (run `make test-deps`)"
    scratch = Path(tempfile.mkdtemp(prefix=f"conch-probe-{name}-"))
    try:
        bundle = make_bundle(scratch / "bundle", ["true"])
        rt = Runtime(name, binary, scratch / "root")
        proc = rt.run(bundle, timeout=30)
        rt.cleanup()
        if proc.returncode != 0:
            return (f"{name} cannot run a container on this machine "
                    f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def runtime_for(name: str) -> Runtime:
    if name == "conch":
        if os.geteuid() != 0:
            pytest.skip("needs root")
        binary = conch_runtime_binary()
    else:
        if name not in _PROBES:
            _PROBES[name] = _probe(name)
        if _PROBES[name] is not None:
            pytest.skip(_PROBES[name])
        binary = shutil.which(name)
    return Runtime(name, binary, _SESSION_ROOT / name)


@pytest.fixture(scope="session", autouse=True)
def _session_cleanup():
    """Remove the shared cgroup parent (``/conch-test`` in every hierarchy) and the
    session's runtime roots once all tests are done. Only empty directories go."""
    yield
    for mp in cgroup_mountpoints(read_mounts().values()):
        parent = Path(mp) / CGROUP_PARENT.lstrip("/")
        if parent.is_dir():
            try:
                parent.rmdir()
            except OSError:
                pass  # still in use (a leak already reported) or someone else's
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


class LeakGuard:
    def __init__(self) -> None:
        # Every runtime root lives under _SESSION_ROOT, so one root covers them all,
        # including roots first used by this very test.
        self.before = HostSnapshot.take([_SESSION_ROOT])
        self.cleanups: list = []


@pytest.fixture
def no_leaks():
    """Fail the test (at teardown) if it left mounts, cgroups, links, processes or
    runtime state behind. Cleanups registered on the guard run after the check, so a
    failed test does not cascade into the next one."""
    guard = LeakGuard()
    yield guard
    try:
        wait_no_leaks(guard.before)
    finally:
        for fn in reversed(guard.cleanups):
            fn()


@pytest.fixture(params=RUNTIME_NAMES)
def runtime_name(request) -> str:
    return request.param


@pytest.fixture
def runtime(runtime_name, no_leaks) -> Runtime:
    rt = runtime_for(runtime_name)
    no_leaks.cleanups.append(rt.cleanup)
    return rt


@pytest.fixture
def runtime_by_name(no_leaks):
    """``runtime_by_name("runc")`` -> Runtime (skips like ``runtime`` does); for tests
    that need two runtimes at once, such as the differential ones."""
    def get(name: str) -> Runtime:
        rt = runtime_for(name)
        no_leaks.cleanups.append(rt.cleanup)
        return rt

    return get


@pytest.fixture
def bundle(tmp_path):
    """``bundle(args, **changes)`` -> a fresh bundle dir (see conch.testing.bundles)."""
    counter = iter(range(1000))

    def factory(args, *edits, **changes) -> Path:
        return make_bundle(tmp_path / f"bundle{next(counter)}", args, *edits, **changes)

    return factory
