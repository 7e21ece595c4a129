"""OCI hooks: run a program with the container's state JSON on its stdin.

posix_spawn with a dup2 file action keeps ``subprocess`` (and its threading/selectors
imports) off the hot path. A hook that fails, or outlives its ``timeout``, fails the
operation that ran it (runtime-spec: "if a hook fails, the runtime MUST generate an
error"), except poststart/poststop whose failures are warnings (:func:`run_warn`).
"""

from conch.oci import fastjson as json  # no json module (re) on the hot path
import os
import _signal as signal  # the C module: "signal" imports enum (~3 ms)
import time

from conch.errors import ConchError


class HookFailed(ConchError):
    pass


def run(kind: str, hooks, state: dict) -> None:
    for hook in hooks or ():
        run_one(kind, hook, state)


def run_warn(kind: str, hooks, state: dict) -> None:
    """For poststart and poststop, whose failures the runtime-spec makes warnings: every
    hook runs, a failed one is reported on stderr and the next one still runs."""
    import sys

    for hook in hooks or ():
        try:
            run_one(kind, hook, state)
        except Exception as exc:  # noqa: BLE001 - a warning, whatever went wrong
            sys.stderr.write(f"conch-runtime: warning: {exc}\n")


def run_one(kind: str, hook: dict, state: dict) -> None:
    path = hook.get("path", "")
    args = hook.get("args") or [path]
    env = dict(item.partition("=")[::2] for item in hook.get("env") or ())
    timeout = hook.get("timeout")
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(path, args, env, file_actions=[(os.POSIX_SPAWN_DUP2, r, 0)])
    except OSError as exc:
        os.close(r)
        os.close(w)
        raise HookFailed(f"{kind} hook {path}: {exc.strerror}") from exc
    os.close(r)
    try:
        os.write(w, json.dumps(state).encode())
    except BrokenPipeError:
        pass  # the hook does not read its stdin: allowed
    finally:
        os.close(w)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise HookFailed(f"{kind} hook {path} timed out after {timeout}s")
        time.sleep(0.005)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise HookFailed(f"{kind} hook {path} failed with exit status {code}")
