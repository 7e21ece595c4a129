"""A real ``conch registry serve`` on 127.0.0.1 for tests, and helpers to talk to it.

``RegistryServer(root, ...)`` starts ``python -m conch.registry.server serve`` on a free
port, waits for its "listening on" line, and stops it (SIGTERM to its pid) on ``close()``.
``htpasswd_file`` writes bcrypt entries the way ``htpasswd -B`` does (``$2y$``), without
needing apache2-utils. ``oci_layout`` writes a one-layer image as an OCI image layout
(what ``skopeo copy oci:DIR`` reads). ``self_signed_cert`` makes a throwaway TLS pair.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryServer:
    def __init__(self, root: Path, *, htpasswd: Path | None = None, anonymous_pull: bool = False,
                 tls: tuple[Path, Path] | None = None, extra: list[str] | None = None,
                 bind: str = "127.0.0.1", netns: str | None = None):
        """``netns``: run the server inside that network namespace (``ip netns exec``),
        listening on ``bind``, an address of that namespace."""
        self.root = Path(root)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.bind = bind
        self.port = free_port()
        self.scheme = "https" if tls else "http"
        args = ["ip", "netns", "exec", netns] if netns else []
        args += [sys.executable, "-m", "conch.registry.server", "serve",
                "--addr", f"{bind}:{self.port}", "--root", str(self.root),
                "--log-level", "warning"]
        if htpasswd:
            args += ["--htpasswd", str(htpasswd)]
        if anonymous_pull:
            args.append("--anonymous-pull")
        if tls:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        args += extra or []
        self.log_path = self.root.parent / f"registry-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self._wait_listening()

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited {self.proc.returncode}: {self.log()}")
            if b"listening on" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"registry did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def htpasswd_file(path: Path, users: dict[str, str], rounds: int = 5) -> Path:
    import bcrypt

    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
        lines.append(f"{user}:$2y${hashed[4:]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def self_signed_cert(dest: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate for ``host`` (openssl CLI)."""
    cert, key = dest / "cert.pem", dest / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _write_blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(dest: Path, rootfs: Path, tag: str = "latest") -> str:
    """Write an OCI image layout of ``rootfs`` (one gzip layer); returns the manifest digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    layer_tar = raw.getvalue()
    layer = _write_blob(dest, gzip.compress(layer_tar, mtime=0))
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    cfg = _write_blob(dest, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}
    man = _write_blob(dest, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return man["digest"]
