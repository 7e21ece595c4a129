"""Driving conch-runtime through one path or the other, for the tests that compare its C
front (shim/conch-runtime.c, shim/runtime/) with the Python runtime (conch/runtime/).

The front's contract: ``CONCH_RUNTIME_FRONT=0`` always runs Python (the reference);
unset, the front runs what it implements exactly in C; ``CONCH_RUNTIME_FRONT_DEBUG=1``
makes it print one stderr line starting with :data:`FRONT_LINE` ("... create in C",
"... python: <why>").
"""

from __future__ import annotations

import os

FRONT_LINE = "conch-runtime front: "


def env_for(path: str) -> dict[str, str]:
    """The runtime's environment for ``path`` "python" (the reference) or "front", with
    the front's debug line on."""
    env = dict(os.environ, CONCH_RUNTIME_FRONT_DEBUG="1")
    env.pop("CONCH_RUNTIME_FRONT", None)
    if path == "python":
        env["CONCH_RUNTIME_FRONT"] = "0"
    return env


def split_front(stderr: str) -> tuple[list[str], str]:
    """(the front's own lines, the rest of stderr)."""
    lines = stderr.splitlines(keepends=True)
    mine = [line.strip() for line in lines if line.startswith(FRONT_LINE)]
    return mine, "".join(line for line in lines if not line.startswith(FRONT_LINE))


def front_binary_or_skip(rt):
    """``rt`` (the conch Runtime of tests/conftest.py) if its binary is the C front."""
    from pathlib import Path

    import pytest

    if not (Path(rt.binary).parent / "conch-runtime-py").exists():
        pytest.skip(f"{rt.binary} is not the C front (no conch-runtime-py beside it): run `make setup`")
    return rt
