"""Ptys for ``process.terminal``: made inside the container, handed out by SCM_RIGHTS.

The pty is opened from the container's own devpts instance (``/dev/ptmx`` after
pivot_root), as runc does, so its slave is ``/dev/pts/0`` *inside* the container. The
master goes to whoever listens on ``--console-socket``; ``run`` in the foreground with
no socket keeps the master itself and proxies it to its own stdio (``proxy``).
"""

import fcntl
import os
import struct

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCGPTPEER = 0x5441
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413


def open_pty() -> tuple[int, int]:
    """Open /dev/ptmx of the current root, unlock it; return (master fd, slave fd).

    The slave comes from the master itself (TIOCGPTPEER), never by its path: /dev/pts
    is the container's, and a path there could be swapped for something else between
    the two opens (runc's CVE-2025-52565)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def make_controlling(slave: int, console_size=None) -> int:
    """Make the slave our controlling terminal and our stdio (we must be a session leader)."""
    if console_size:
        set_size(slave, int(console_size.get("height", 0)), int(console_size.get("width", 0)))
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    return slave


def bind_console(slave: int) -> None:
    """/dev/console inside the container is the pty slave (runc's behaviour), bound from
    the slave's fd onto /dev/console opened without following a link: the image's
    /dev/console may be a symlink to anywhere, and a mount follows one."""
    import stat

    from conch.errors import InvalidArgument
    from conch.kernel import mount as km

    try:
        os.close(os.open("/dev/console", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    target = os.open("/dev/console", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = os.fstat(target).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise InvalidArgument("/dev/console in the container is neither a file nor a device")
        km.mount(f"/proc/self/fd/{slave}", f"/proc/self/fd/{target}", None, km.MS_BIND)
    finally:
        os.close(target)


def connect(path: str) -> int:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        s.close()
        from conch.errors import Unavailable

        raise Unavailable(f"cannot connect to console socket {path!r}: {exc.strerror}") from exc
    return s.detach()


def send_fd(sock_fd: int, fd: int, name: str = "/dev/ptmx") -> None:
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(s, [name.encode()], [fd])
    finally:
        s.detach()


def recv_fd(sock_fd: int) -> int:
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 1)
    finally:
        s.detach()
    if not fds:
        raise OSError("no file descriptor received on the console socket")
    return fds[0]


def proxy(master: int, child_pid: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the child's side closes.

    Our terminal (if stdin is one) goes raw for the duration so keys reach the container
    untouched, and SIGWINCH resizes the pty to our size.
    """
    import select
    import _signal as signal  # the C module: "signal" imports enum (~3 ms)
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)

        def resize(*_):
            try:
                fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass

        resize()
        signal.signal(signal.SIGWINCH, resize)
    try:
        fds = [master, 0]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd closed
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
