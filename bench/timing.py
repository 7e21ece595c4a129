"""Run a command and wait for it without adding the wait's own steps to its time.

``subprocess.run(..., timeout=T)`` cannot block in waitpid with a timeout, so CPython's
``Popen._wait`` polls with a back-off that doubles from 0.5 ms up to 50 ms. A timed
command therefore ends on 31.5, 63.5, 113.5, 163.5, ... ms after its start, whatever
it really took: every engine's numbers came out on those steps here (conch 64, podman 164,
docker 214 ms minimums) until this module. :func:`run` blocks on a pidfd in select()
instead, which returns when the process exits and still honours the timeout.
"""

from __future__ import annotations

import os
import select
import subprocess


def run(argv, *, timeout: float, **popen_kw) -> subprocess.CompletedProcess:
    """Like ``subprocess.run(argv, timeout=..., **popen_kw)`` for commands whose output
    goes to files or DEVNULL (no pipes: nothing to read while waiting)."""
    proc = subprocess.Popen(argv, **popen_kw)
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # already gone and reaped? cannot be: it is our child
        fd = None
    try:
        if fd is not None:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(argv, timeout)
        returncode = proc.wait()  # exited: returns at once
    finally:
        if fd is not None:
            os.close(fd)
    return subprocess.CompletedProcess(argv, returncode)
