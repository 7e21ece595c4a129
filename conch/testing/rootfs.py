"""A busybox userland for tests and demos, built from Debian's ``busybox-static``.

Docker Hub is out of reach here, so every test image starts from this rootfs:

    /bin/busybox            the static binary, copied (never linked to the host's)
    /bin/<applet>           one symlink per applet from ``busybox --list`` -> busybox
    /etc/passwd, /etc/group root(0), daemon(1), nobody(65534), conch(1000; extra group 1001)
    /etc/hosts, /etc/hostname, /etc/resolv.conf (empty)
    /proc /sys /dev /root /home/conch   empty directories (mount points / homes)
    /tmp                    mode 1777

Building it costs ~400 symlinks; :func:`busybox_rootfs` builds one template per process
(under a private temp dir) and copies it with ``cp -a`` for each bundle, so tests can
scribble on their copy freely.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BUSYBOX_CANDIDATES", "find_busybox", "build_busybox_rootfs", "busybox_rootfs"]

# busybox-static installs /bin/busybox (== /usr/bin/busybox on usrmerged Debian).
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox")

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
conch:x:1000:1000:conch test user:/home/conch:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
tty:x:5:
conch:x:1000:
conchextra:x:1001:conch
nogroup:x:65534:
"""

HOSTS = """\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""

_template: Path | None = None


def find_busybox() -> Path:
    """The host's statically linked busybox; FileNotFoundError says how to get one."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and _is_static(path):
            return path
    raise FileNotFoundError(
        "no statically linked busybox found (looked at "
        + ", ".join(BUSYBOX_CANDIDATES)
        + "); install it with `apt-get install busybox-static` or run `make setup`"
    )


def _is_static(path: Path) -> bool:
    # A dynamically linked ELF has a PT_INTERP program header naming the loader; the
    # cheapest honest check without pyelftools is to look for the loader's path string.
    with open(path, "rb") as f:
        head = f.read(4096)
    return head.startswith(b"\x7fELF") and b"ld-linux" not in head


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip()})


def build_busybox_rootfs(dest: Path) -> Path:
    """Build the userland described in the module docstring into ``dest`` (may exist)."""
    dest = Path(dest)
    busybox = find_busybox()
    for name, mode in [
        ("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755),
        ("etc", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
        ("root", 0o700), ("home", 0o755), ("home/conch", 0o755), ("var", 0o755),
        ("run", 0o755), ("tmp", 0o1777),
    ]:
        d = dest / name
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, mode)  # mkdir's mode is masked by umask; 1777 needs chmod anyway
    os.chown(dest / "home/conch", 1000, 1000)

    shutil.copy2(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    for applet in _applets(busybox):
        if applet == "busybox" or "/" in applet:
            continue
        link = dest / "bin" / applet
        if not link.is_symlink() and not link.exists():
            link.symlink_to("busybox")

    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    (dest / "etc/hosts").write_text(HOSTS)
    (dest / "etc/hostname").write_text("conch\n")
    (dest / "etc/resolv.conf").write_text("")
    return dest


def _template_dir() -> Path:
    global _template
    if _template is None or not (_template / "bin/busybox").exists():
        base = Path(tempfile.mkdtemp(prefix="conch-rootfs-template-"))
        atexit.register(shutil.rmtree, base, True)
        _template = build_busybox_rootfs(base / "rootfs")
    return _template


def busybox_rootfs(dest: Path) -> Path:
    """A fresh copy of the cached busybox template at ``dest`` (created; must not exist
    or be empty). Returns ``dest``."""
    dest = Path(dest)
    template = _template_dir()
    dest.mkdir(parents=True, exist_ok=True)
    # `cp -a src/. dest` keeps symlinks, modes (1777 /tmp), owners and timestamps.
    subprocess.run(["cp", "-a", f"{template}/.", str(dest)], check=True)
    return dest
