"""``conch-runtime warm FD``: a runtime that has already started, waiting for its create.

conch-shim's warm mode (see ``shim/conch-shim.c``) forks this ahead of time, so that the
interpreter start-up and the imports of the create path (~20 ms), and the compile of
Docker's default seccomp profile, are paid while no container waits. Then, on ``FD`` (a
SOCK_SEQPACKET socket), one message arrives: the runtime's argv, NUL-separated
(``--root R create --bundle B --pid-file P ID``), with the container's stdin, stdout and
stderr as SCM_RIGHTS. They become fds 0-2 (blocking, as the container expects), and
:func:`wait_request` returns the argv for ``main`` to run as if just exec'd (this module
never imports ``main``: it sits below it). An empty read means the shim was discarded:
``None``, and the process exits quietly.
"""

import os


def wait_request(fd: int) -> list[str] | None:
    """Import what a create needs, then wait on ``fd`` for the request; its argv, with
    fds 0-2 in place, or None when there is nothing to run."""
    # what a cold `create` imports after exec (conch.runtime.main imports them lazily)
    from conch.runtime import (commands, config, create, init, prearm,  # noqa: F401
                               process, rootfs, seccomp, sync)
    from conch.cgroups import resources, v1, v2  # noqa: F401

    _precompile_default_seccomp()
    import gc

    gc.collect()  # the imports' garbage (main.run turned collection off), then wait
    msg, fds = _recv_fds(fd, 65536, 3)  # OSError: the caller exits 1
    if not msg or len(fds) != 3:
        return None
    for target, received in enumerate(fds):
        os.dup2(received, target)  # dup2 leaves the new fd inheritable
        os.set_blocking(target, True)
        if received > 2:
            os.close(received)
    return msg.rstrip(b"\0").decode().split("\0")


def _recv_fds(fd: int, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds over the C module: ``socket`` itself would bring enum, selectors
    and its IntEnums into this waiting process (~1 MiB of resident memory, which counts
    against conchd's idle footprint) for one call. Closes ``fd``."""
    import _socket
    import array

    sock = _socket.socket(fileno=fd)
    try:
        fds = array.array("i")
        msg, ancdata, _flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_LEN(maxfds * fds.itemsize))
    finally:
        sock.close()
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def _precompile_default_seccomp() -> None:
    """conchd's containers nearly all run under Docker's default profile for the default
    capabilities: compile it while no container waits (best effort)."""
    try:
        from conch.runtime import presets, seccomp

        seccomp.precompile(presets.default_seccomp(presets.effective_capabilities()))
    except Exception:  # noqa: BLE001 - only an optimisation: create compiles as usual
        pass
