"""How the engine runs the OCI runtime's verbs (start, kill, delete, pause, resume, ps).

``RuntimeClient.run`` executes ``RUNTIME --root ROOT VERB ...`` (runc, crun or
conch-runtime) as a subprocess. With our own runtime, the verbs that are plain file and
signal work — nothing forks into a namespace — run in-process, in a worker thread: the
same code without an interpreter start (~15 ms) each time. ``create``, which forks into
namespaces, always runs in its own process (the shim runs it): the daemon never forks
into a namespace (DESIGN.md).
"""

from __future__ import annotations

import asyncio

from conch.errors import ConchError, FailedPrecondition, InvalidArgument


class RuntimeClient:
    def __init__(self, binary: str, root: str, *, inproc: bool = False):
        self.binary = binary
        self.root = root
        self.inproc = inproc

    async def run(self, *args: str) -> str:
        """One verb; its stdout. Failures raise FailedPrecondition with its message."""
        if self.inproc and args[0] in _INPROC_VERBS:
            return await asyncio.to_thread(_runtime_inproc, self.root, args)
        proc = await asyncio.create_subprocess_exec(
            self.binary, "--root", self.root, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            msg = err.decode(errors="replace").strip().removeprefix("conch-runtime: ")
            raise FailedPrecondition(msg or f"{self.binary} {args[0]} failed")
        return out.decode(errors="replace")

    def delete(self, cid: str) -> None:
        """``delete --force`` from a worker thread (the task's cleanup after an exit)."""
        if self.inproc:
            _runtime_inproc(self.root, ("delete", "--force", cid))
        else:
            _run_quiet([self.binary, "--root", self.root, "delete", "--force", cid])


_INPROC_VERBS = {"start", "kill", "delete", "pause", "resume", "ps"}


def _runtime_inproc(root: str, args) -> str:
    """Run a conch-runtime verb in this process (see the module docstring)."""
    from conch.runtime import commands as rcommands
    from conch.runtime import main as rmain
    from conch.runtime.state import State

    try:
        o = rmain.parse(["--root", root, *args])
        if o.command == "ps":
            import json

            return json.dumps(rcommands.container_pids(State.load(o.root, o.id)))
        getattr(rcommands, "cmd_" + o.command)(o)
    except rmain.UsageError as exc:
        raise InvalidArgument(f"conch-runtime {' '.join(args)}: {exc}") from exc
    except ConchError as exc:
        raise FailedPrecondition(str(exc)) from exc
    except OSError as exc:
        raise FailedPrecondition(f"{exc.strerror or exc}") from exc
    return ""


def _run_quiet(argv: list[str]) -> None:
    import subprocess

    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
