"""A private ``containerd`` (Debian's 1.6) for tests that drive conch-runtime through it.

containerd's runc v2 shim (``containerd-shim-runc-v2``) runs any runc-compatible binary
named by ``ctr run --runc-binary``: that is how a Kubernetes node's containerd would run
conch-runtime for a RuntimeClass (docs/kubernetes.md). :class:`Containerd` starts one
containerd with nothing shared with a system one:

    /tmp/ctd-XXXX/config.toml   version 2; the CRI plugin and the snapshotters this
                                machine lacks are disabled (ctr needs none of them)
    /tmp/ctd-XXXX/root          --root (content store, overlayfs snapshots, metadata)
    /tmp/ctd-XXXX/state         --state (task bundles, the shims' state)
    /tmp/ctd-XXXX/c.sock        the gRPC socket (ttrpc beside it); ``ctr --address``
    /tmp/ctd-XXXX/runc-root     the runtime's --root (passed as ``--runc-root``)
    /tmp/ctd-XXXX/containerd.log

:meth:`close` (the teardown) deletes every task and container left in its namespace,
SIGKILLs the shims it started (found by their ``-address`` argument), anything still in
a ``/conchtest/<id>`` cgroup, and containerd, lazily unmounts whatever is still mounted under its dir (the task rootfs mounts and
overlay snapshots) and removes the dir. The shims' own sockets live in
``/run/containerd/s/`` (1.6 puts them there whatever the state dir): the ones ours made
are removed too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Containerd", "unavailable", "oci_image_tar"]

NAMESPACE = "conchtest"  # also the cgroup parent ctr uses: /conchtest/<id> (a leak marker)

_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing",
                    "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""
"""


def unavailable() -> str | None:
    """Why a private containerd cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (containerd mounts snapshots and runs shims)"
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian's containerd package; run `make test-deps`)"
    return None


class Containerd:
    """One containerd on private roots (see the module docstring)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))
        self.sock = self.dir / "c.sock"
        self.runc_root = self.dir / "runc-root"
        self.log_path = self.dir / "containerd.log"
        self.proc: subprocess.Popen | None = None
        self._shim_sockets_before = _shim_sockets()

    def start(self, timeout: float = 30) -> "Containerd":
        config = self.dir / "config.toml"
        config.write_text(_CONFIG.format(root=self.dir / "root", state=self.dir / "state",
                                         sock=self.sock))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}:\n{self.log()}")
            if self.sock.exists() and self.ctr("version", timeout=10).returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not answer in {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def ctr(self, *args, timeout: float = 60, check: bool = False,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        """``ctr --address <ours> --namespace conchtest ARGS``; output captured as text."""
        argv = ["ctr", "--address", str(self.sock), "--namespace", NAMESPACE, *map(str, args)]
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def shim_pids(self) -> list[int]:
        """Shims started by this containerd (their cmdline names our socket)."""
        pids = []
        needle = str(self.sock).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and needle in cmd:
                pids.append(int(entry))
        return pids

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self._remove_all()
        finally:
            for pid in self.shim_pids():
                _kill(pid)
            _kill_namespace_cgroups()
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
                self.proc = None
            self._unmount_leftovers()
            for path in _shim_sockets() - self._shim_sockets_before:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            shutil.rmtree(self.dir, ignore_errors=True)

    def _remove_all(self) -> None:
        for line in self.ctr("task", "ls", "-q", timeout=30).stdout.split():
            self.ctr("task", "kill", "-s", "SIGKILL", line, timeout=30)
            self.ctr("task", "delete", "-f", line, timeout=30)
        for line in self.ctr("container", "ls", "-q", timeout=30).stdout.split():
            self.ctr("container", "delete", line, timeout=30)

    def _unmount_leftovers(self) -> None:
        prefix = str(self.dir) + "/"
        with open("/proc/self/mountinfo") as f:
            points = {line.split()[4] for line in f}
        for mp in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


def _shim_sockets() -> set[str]:
    base = Path("/run/containerd/s")
    try:
        return {str(p) for p in base.iterdir()}
    except OSError:
        return set()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_namespace_cgroups(timeout: float = 10) -> None:
    """SIGKILL whatever still runs in a ``/conchtest/<id>`` cgroup (a container whose
    shim or containerd died before deleting it), then remove those cgroups. Tasks
    deleted the normal way have none left."""
    from conch.testing.leaks import cgroup_mountpoints, read_mounts

    leaves = [leaf for mp in cgroup_mountpoints(read_mounts().values())
              for leaf in sorted(Path(mp, NAMESPACE).glob("*")) if leaf.is_dir()]
    deadline = time.monotonic() + timeout
    for leaf in leaves:
        while True:
            try:
                pids = [int(x) for x in (leaf / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                _kill(pid)
            time.sleep(0.05)
        try:
            leaf.rmdir()
        except OSError:
            pass  # reported by the test's leak check


def oci_image_tar(rootfs: Path, dest: Path, name: str) -> Path:
    """An OCI image layout tar (one uncompressed layer made from ``rootfs``) that
    ``ctr images import`` accepts, named ``name`` by the ``io.containerd.image.name``
    annotation of its index."""
    import hashlib
    import json
    import tarfile

    work = Path(tempfile.mkdtemp(prefix="ctd-img-"))
    try:
        blobs = work / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer = work / "layer.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."],
                       check=True)

        def put(data: bytes) -> str:
            digest = hashlib.sha256(data).hexdigest()
            (blobs / digest).write_bytes(data)
            return digest

        layer_bytes = layer.read_bytes()
        layer.unlink()
        layer_digest = put(layer_bytes)
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        }).encode()
        config_digest = put(config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{config_digest}", "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": f"sha256:{layer_digest}", "size": len(layer_bytes)}],
        }).encode()
        manifest_digest = put(manifest)
        (work / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (work / "index.json").write_text(json.dumps({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": f"sha256:{manifest_digest}", "size": len(manifest),
                           "platform": {"architecture": "amd64", "os": "linux"},
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": name}}],
        }))
        with tarfile.open(dest, "w") as tar:
            for item in ("oci-layout", "index.json", "blobs"):
                tar.add(work / item, arcname=item)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
