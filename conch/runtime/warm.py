"""``conch-runtime warm FD``: a runtime that has already started, waiting for its create.

conch-shim's warm mode (see ``shim/conch-shim.c``) forks this ahead of time, so that the
interpreter start-up and the imports of the create path (~20 ms), and the compile of
Docker's default seccomp profile, are paid while no container waits. Then, on ``FD`` (a
SOCK_SEQPACKET socket), one message arrives: the runtime's argv, NUL-separated
(``--root R create --bundle B --pid-file P ID``), with the container's stdin, stdout and
stderr as SCM_RIGHTS. They become fds 0-2 (blocking, as the container expects), and
``main(argv)`` runs as if just exec'd. An empty read means the shim was discarded: exit
quietly.
"""

import os


def serve(fd: int) -> int:
    import socket

    # what a cold `create` imports after exec (conch.runtime.main imports them lazily)
    from conch.runtime import (commands, config, create, init, main, prearm,  # noqa: F401
                               process, rootfs, seccomp, sync)
    from conch.cgroups import resources, v1, v2  # noqa: F401

    _precompile_default_seccomp()
    sock = socket.socket(fileno=fd)
    try:
        msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 3)
    except OSError:
        return 1
    finally:
        sock.close()
    if not msg or len(fds) != 3:
        return 0
    for target, received in enumerate(fds):
        os.dup2(received, target)  # dup2 leaves the new fd inheritable
        os.set_blocking(target, True)
        if received > 2:
            os.close(received)
    return main.main(msg.rstrip(b"\0").decode().split("\0"))


def _precompile_default_seccomp() -> None:
    """conchd's containers nearly all run under Docker's default profile for the default
    capabilities: compile it while no container waits (best effort)."""
    try:
        from conch.runtime import presets, seccomp

        seccomp.precompile(presets.default_seccomp(presets.effective_capabilities()))
    except Exception:  # noqa: BLE001 - only an optimisation: create compiles as usual
        pass
