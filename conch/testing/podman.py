"""A private podman for tests and benches: its own containers.conf, store and run dirs.

Contract: ``PodmanStore(work)`` writes ``work/containers.conf`` and gives ``argv`` (the
``podman --root … --runroot …`` prefix to put before a verb) and ``env`` (``os.environ``
plus ``CONTAINERS_CONF``); :meth:`PodmanStore.run` runs one verb; :meth:`close` removes
every container and image, unmounts what podman left mounted and deletes the run dir it
made. Nothing touches the host's own podman state (/var/lib/containers, /run/containers).

Why each setting, on this machine:

* ``default_ulimits = nofile=1024:1024, nproc=4096:4096``: podman's defaults ask for
  more open files than the hard RLIMIT_NOFILE here (20000), and root has no
  CAP_SYS_RESOURCE to raise a hard limit, so every ``podman run`` would fail in setrlimit.
  The values are at or below the hard limits.
* ``cgroup_manager = "cgroupfs"``: there is no systemd to ask for scopes.
* ``events_logger = "file"``: no journald either.
* runtime: crun 1.8 refuses this machine's cgroup v1-hybrid layout ("drop all
  controllers from cgroupv2"), so callers that run containers pass ``runtime="runc"``
  (what dockerd uses too) or conch-runtime's path. It goes on the command line as
  ``--runtime``, which takes a name or a path alike.
* ``--runroot``: podman refuses a runroot longer than about 50 characters (it builds
  socket paths under it), and pytest's tmp_path is longer; by default the run dir is a
  fresh ``/tmp/cpr-…`` made here and removed by :meth:`close`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class PodmanStore:
    """One private podman: ``argv`` prefix, ``env``, ``run`` and ``close`` (see module doc).

    ``root`` defaults to ``work/storage``; ``runroot`` to a new short temp dir (owned, so
    removed on close); ``tmpdir`` is passed only when given; ``storage_driver=None``
    leaves podman's own default; ``runtime`` (a name or a path) adds ``--runtime``.
    """

    def __init__(self, work: Path, *, root: Path | None = None, runroot: Path | None = None,
                 tmpdir: Path | None = None, runtime: str | None = None,
                 storage_driver: str | None = "overlay", binary: str = "podman",
                 runroot_prefix: str = "cpr-") -> None:
        work = Path(work)
        conf = work / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))
        self.root = Path(root) if root is not None else work / "storage"
        self._owns_runroot = runroot is None
        self.runroot = Path(runroot) if runroot is not None else Path(tempfile.mkdtemp(prefix=runroot_prefix))
        self.argv = [binary, "--root", str(self.root), "--runroot", str(self.runroot)]
        if tmpdir is not None:
            self.argv += ["--tmpdir", str(tmpdir)]
        if storage_driver:
            self.argv += ["--storage-driver", storage_driver]
        if runtime:
            self.argv += ["--runtime", runtime]

    def run(self, *args, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        """``podman <args>`` (each arg str()'d), text output captured, stdin closed; with
        ``check`` a non-zero exit raises AssertionError carrying podman's stderr."""
        proc = subprocess.run([*self.argv, *map(str, args)], env=self.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(map(str, args))}: exit {proc.returncode}\n"
                                 f"{proc.stderr}\n{proc.stdout}")
        return proc

    def close(self) -> None:
        """Remove all containers and images, unmount the store's overlay home and the run
        dir (podman keeps them mounted; the leak checks would see them), delete an owned
        run dir. Best effort: never raises for podman's own failures."""
        for verb in ("rm", "rmi"):
            subprocess.run([*self.argv, verb, "--all", "--force"], env=self.env,
                           capture_output=True, stdin=subprocess.DEVNULL)
        for path in (self.root / "overlay", self.runroot):
            subprocess.run(["umount", "-R", str(path)], capture_output=True)
        if self._owns_runroot:
            shutil.rmtree(self.runroot, ignore_errors=True)
