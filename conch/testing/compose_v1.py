"""docker-compose 1.29 (the Python one, from PyPI) in a throwaway venv, made once and cached.

Contract: :func:`compose_v1_binary` returns the path of a ``docker-compose`` 1.29.2 binary,
building its venv the first time under ``$CONCH_TEST_CACHE`` (default
``/var/cache/conch-test``) as ``compose-<version>/``; later calls (and later test runs)
reuse it. :func:`compose_v1_or_skip` is the pytest form: it skips with the reason when
the venv cannot be made (PyPI unreachable, no compiler). Nothing is installed into the
project's own venv: compose 1.29 needs old pins that would fight docker-py's.

Why the pins (found by installing on this machine, Python 3.11):

* ``PyYAML==5.4.1`` (compose wants <6) has no cp311 wheel, and its sdist does not build
  with Cython 3 (``'build_ext' object has no attribute 'cython_sources'``), so Cython<3
  is installed first and PyYAML is built without build isolation.
* ``docker<7`` / ``requests<2.32``: docker-py 7 dropped what compose 1.29 imports, and
  requests 2.32 broke docker-py 6's ``http+docker://`` adapter ("Not supported URL
  scheme http+docker").
* ``urllib3<2``: docker-py 6.1 with urllib3 2 loses the unix-socket adapter's timeouts.
* ``websocket-client<1``: compose 1.29's own requirement (pip resolves it, pinned here so
  a resolver change cannot move it).

The venv is built in a temp dir next to the final one and renamed into place, so a run
killed half way never leaves a broken cached venv, and two concurrent first runs do not
both write the same directory (the loser's rename fails and it uses the winner's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["VERSION", "PINS", "ENV", "ComposeUnavailable", "compose_v1_binary", "compose_v1_or_skip",
           "cache_root"]

VERSION = "1.29.2"

# Exact versions known to work together (see the module doc for why each one).
PINS = (
    f"docker-compose=={VERSION}",
    "docker==6.1.3",
    "requests==2.31.0",
    "urllib3==1.26.20",
    "websocket-client==0.59.0",
    "jsonschema==3.2.0",
    "python-dotenv==0.21.1",
    "texttable==1.7.2",
    "docopt==0.6.2",
    "dockerpty==0.4.1",
    "distro==1.9.0",
)
_BUILD_PINS = ("cython<3", "wheel", "setuptools")

#: The environment to run it with. docker-py 5 and later talk the daemon's newest API
#: version unless told otherwise, and from API 1.45 on image inspect no longer carries
#: ``ContainerConfig``, which compose 1.29 reads when it recreates a container: against
#: dockerd 25+ it then dies with ``KeyError: 'ContainerConfig'`` (conchd, answering as
#: dockerd does, too). ``COMPOSE_API_VERSION`` is compose's own knob for the version it
#: speaks; 1.41 is docker-py's DEFAULT_DOCKER_API_VERSION, the API of compose 1.29's day.
ENV = {"COMPOSE_API_VERSION": "1.41"}
_PYYAML = "pyyaml==5.4.1"


class ComposeUnavailable(RuntimeError):
    """The venv could not be made (the message says which step failed and pip's tail)."""


def cache_root() -> Path:
    """Where cached test venvs live: outside the repo, so a fresh clone reuses them."""
    return Path(os.environ.get("CONCH_TEST_CACHE", "/var/cache/conch-test"))


def _pip(venv: Path, *args: str, timeout: float) -> None:
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ComposeUnavailable(f"pip install {' '.join(args)} failed: {tail}")


def _works(binary: Path) -> bool:
    if not os.access(binary, os.X_OK):
        return False
    try:
        proc = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == VERSION


def compose_v1_binary(*, timeout: float = 600) -> Path:
    """The cached docker-compose 1.29.2 binary, building its venv on first use."""
    final = cache_root() / f"compose-{VERSION}"
    binary = final / "bin" / "docker-compose"
    if _works(binary):
        return binary
    final.parent.mkdir(parents=True, exist_ok=True)
    # Built at a sibling temp path and renamed into place (see the module doc).
    work = Path(tempfile.mkdtemp(prefix=f".compose-{VERSION}-", dir=final.parent))
    try:
        venv = work / "venv"
        proc = subprocess.run([sys.executable if not _in_venv() else _base_python(), "-m", "venv", str(venv)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ComposeUnavailable(f"python -m venv failed: {proc.stderr.strip()}")
        _pip(venv, *_BUILD_PINS, timeout=timeout)
        _pip(venv, "--no-build-isolation", _PYYAML, timeout=timeout)
        _pip(venv, *PINS, timeout=timeout)
        # pip's entry-point scripts name the temp path's python in their #! line, so after
        # the rename a small launcher replaces bin/docker-compose (see _write_launcher).
        if final.exists() and _works(binary):
            return binary  # another run finished first
        if final.exists():
            shutil.rmtree(final)
        os.rename(venv, final)
        _write_launcher(final)
    except subprocess.TimeoutExpired as exc:
        raise ComposeUnavailable(f"building the docker-compose {VERSION} venv timed out: {exc}") from exc
    except OSError as exc:
        if _works(binary):
            return binary
        raise ComposeUnavailable(f"building the docker-compose {VERSION} venv: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not _works(binary):
        raise ComposeUnavailable(f"docker-compose {VERSION} venv at {final} does not run")
    return binary


def _write_launcher(venv: Path) -> None:
    """Replace bin/docker-compose with one that runs the venv's python by its final path."""
    launcher = venv / "bin" / "docker-compose"
    launcher.write_text(f"#!/bin/sh\nexec '{venv}/bin/python' -c "
                        "'import sys; from compose.cli.main import main; sys.argv[0] = \"docker-compose\"; sys.exit(main())' "
                        '"$@"\n')
    launcher.chmod(0o755)
    # bin/python is a symlink to the base interpreter; pyvenv.cfg finds the venv by the
    # symlink's own location, so it stays valid after the rename.


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _base_python() -> str:
    """The interpreter the project venv was made from (a venv inside a venv is fine, but
    the base one keeps the cached venv independent of the project's)."""
    for name in (f"python{sys.version_info.major}.{sys.version_info.minor}", "python3"):
        cand = Path(sys.base_prefix) / "bin" / name
        if os.access(cand, os.X_OK):
            return str(cand)
    return sys.executable


def compose_v1_or_skip() -> Path:
    """:func:`compose_v1_binary` for pytest: skip (with why) when it cannot be made."""
    import pytest

    try:
        return compose_v1_binary()
    except ComposeUnavailable as exc:
        pytest.skip(f"docker-compose {VERSION} unavailable: {exc}")
