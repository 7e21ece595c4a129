"""A private CNCF distribution registry (Debian's ``docker-registry``) for tests and benches.

:class:`DistributionRegistry` writes its own YAML config and storage root under a temp
dir, listens on ``127.0.0.1:<free port>``, optionally with ``auth: htpasswd`` (bcrypt
entries made with the ``bcrypt`` package), and waits until ``/v2/`` answers. ``close()``
stops it (SIGTERM, then SIGKILL) and removes the dir. Nothing is shared with any system
registry; the Debian package's own service is never used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """None when a registry can be started, else why not."""
    if not os.access(BINARY, os.X_OK):
        return "docker-registry is not installed (apt package docker-registry; make test-deps)"
    return None


class DistributionRegistry:
    def __init__(self, *, users: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="conch-reg-"))
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.users = users or {}
        self.proc: subprocess.Popen | None = None

    def _config(self) -> Path:
        lines = [
            "version: 0.1",
            "log:", "  level: warn", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.dir / 'storage'}",
            "  delete:", "    enabled: true",
            "http:", f"  addr: {self.addr}",
        ]
        if self.users:
            import bcrypt

            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text("".join(
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for u, p in self.users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: conch-test", f"    path: {htpasswd}"]
        path = self.dir / "config.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 20) -> "DistributionRegistry":
        config = self._config()
        with open(self.dir / "registry.log", "ab") as log:
            self.proc = subprocess.Popen([BINARY, "serve", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: {self.log()}")
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401 with htpasswd: it answers
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer in {timeout}s: {self.log()}")

    def log(self) -> str:
        try:
            return (self.dir / "registry.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "DistributionRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
