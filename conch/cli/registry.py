"""``conch registry serve|gc``: hand off to the registry server's own process.

The CLI may import only conch.client/errors/oci, so this execs
``python -m conch.registry.server`` with the same arguments instead of importing it: the
registry is a separate program (aiohttp, bcrypt) and the CLI stays lean.
"""

from __future__ import annotations

import os
import sys


def _exec(verb: str, args: list[str]) -> int:
    argv = [sys.executable, "-m", "conch.registry.server", verb, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 1  # not reached


def cmd_serve(ctx, args: list[str]) -> int:
    return _exec("serve", args)


def cmd_gc(ctx, args: list[str]) -> int:
    return _exec("gc", args)
