"""conch-shim: the per-container supervisor, and the engine's client for it.

The shim is a small C program (``shim/conch-shim.c``, built by ``make setup`` into
``build/conch-shim``), one process per running container, like podman's conmon: a Python
process per container would cost 8-10 MB, the shim costs well under 1 MiB of private
memory. It parents the container, holds its stdio or pty, writes its log, records its exit
status and serves attach. It survives conchd restarts and ``kill -9`` of conchd. This
package holds the contract the engine is written against and a small synchronous client
(:mod:`conch.shim.client`, stdlib only).

Command line::

    conch-shim --id ID --bundle DIR --runtime PATH --runtime-root DIR
               --exit-file FILE --socket PATH --log-path FILE
               [--log-max-size BYTES] [--log-max-files N] [--tty] [--stdin]
               [--no-start] [--runtime-arg ARG]... [--debug-log FILE]

Warm mode (conch-runtime only; :class:`conch.shim.client.WarmShim`, used by
:mod:`conch.engine.containers.warmpool`)::

    conch-shim --warm --runtime PATH --runtime-root DIR     (stdout: a SOCK_SEQPACKET socket)

The shim does step 1 below, forks ``PATH warm 3`` at once (the runtime pays its start-up
now and waits on fd 3), and waits for one message on stdout: the options above,
NUL-separated. Then it goes on as a normal shim, except that ``create`` is handed to the
waiting runtime (its argv NUL-separated, the container's stdio as SCM_RIGHTS) instead of
exec'ing a new one; the ready line of step 3 goes back on the same socket. EOF instead of
a message makes the shim kill its runtime and exit 0.

Relative paths are made absolute; the shim then ``chdir("/")``. ``--runtime-arg`` values
go between the runtime binary and ``--root`` (global flags such as ``--log FILE``), for
every verb the shim runs. ``--debug-log`` appends the shim's own diagnostics.

Lifecycle, in order:

1. Started with stdout as a pipe. It forks, ``setsid``\\ s and forks again (the process
   the engine started exits as soon as the shim proper exists, so the engine reaps it
   and the shim is nobody's child), becomes a child subreaper, ignores SIGPIPE, and
   points its stdin/stderr at /dev/null (stderr at ``--debug-log`` if given). The attach
   socket is bound first, so it exists once the ready line is written.
2. The container's stdio: without ``--tty`` three pipes (stdin is /dev/null unless
   ``--stdin``); with ``--tty`` a listening unix socket ``<socket>.console`` passed as
   ``--console-socket``, on which the pty master arrives by SCM_RIGHTS. It runs
   ``RUNTIME --root RR create --bundle B --pid-file B/init.pid [--console-socket S] ID``
   with that stdio (the container's init inherits it), capturing what the runtime writes
   meanwhile, then ``RUNTIME --root RR start ID`` — unless ``--no-start``: then the
   engine runs ``start`` itself, after connecting the attach clients that must see the
   container's first output (``docker run``). Each runtime call is killed after 120 s.
3. One JSON line on the original stdout, which is then closed:
   ``{"pid": <container pid>, "shim_pid": <shim pid>}``, or ``{"error": "<message>"}``
   and exit status 1 (2 for bad flags) after ``RUNTIME delete --force ID`` (the message
   is the runtime's stderr, e.g. ``conch-runtime: process: exec: "/nonexistent": stat
   /nonexistent: no such file or directory``).
4. Logs: docker's json-file format, one object per line, appended with one ``write(2)``
   per line (``O_APPEND``), so a reader never sees half a line::

       {"log":"out\\n","stream":"stdout","time":"2026-11-29T02:41:00.123456789Z"}

   ``time`` is RFC3339Nano UTC with all nine digits, taken when the shim read the bytes.
   ``log`` is escaped as moby does (``<>&`` as ``\\u003c``..., invalid UTF-8 bytes as
   ``\\ufffd``). A line with no newline within 16 KiB, or left at EOF, is written as its
   own entry without the ``\\n`` (docker's partial messages). With a tty everything is
   ``"stdout"`` (and lines end ``\\r\\n``, as the pty makes them). Rotation follows
   json-file's ``max-size``/``max-file``: when an entry would take the file past
   ``--log-max-size``, ``log.(n-2)`` → ``log.(n-1)`` … ``log`` → ``log.1`` and a fresh
   ``log`` is opened, the oldest being dropped, so at most ``--log-max-files`` files
   exist (with 1 the file is truncated instead). Defaults: 10 MiB × 3 files (docker's
   default is unbounded, moby#40207); ``--log-max-size 0`` means unbounded.
5. Attach socket at ``--socket``, mode 0600. A client sends one JSON line:

   - ``{"type":"attach","stdin":bool,"stdout":bool,"stderr":bool[,"stdin_once":bool]}``:
     no reply; from then on live output (not what came before: that is in the log),
     without a tty in docker's multiplexed format (8-byte header ``[stream, 0, 0, 0,
     uint32 big-endian length]``, stream 1 = stdout, 2 = stderr, then the payload), with
     a tty as raw bytes. With ``"stdin":true`` and a container started ``--stdin``, what
     the client sends (including bytes after the request line) goes to the container's
     stdin or pty; when the client half-closes and ``"stdin_once":true``, the container's
     stdin pipe is closed (docker's StdinOnce; with a tty the pty stays open). Several
     clients may attach at once. There is no reply, but requests are handled in the
     order they were connected, so a ``status`` request made after the attach request
     was sent is answered only once the attach is registered (a barrier for callers
     that must not miss output). A client more than 1 MiB behind is disconnected; the
     log still gets everything, and the container is never blocked by a client.
   - ``{"type":"resize","height":H,"width":W}``: TIOCSWINSZ on the pty master; reply
     ``{"ok":true}`` (or ``{"ok":false,"error":...}``, e.g. without a tty), then close.
   - ``{"type":"status"}``: reply ``{"pid":N,"running":bool}``, then close.
   - ``{"type":"exec","process":P,"pid_file":F,"exit_file":E[,"console_socket":S]}``
     with exactly three fds passed as SCM_RIGHTS on the request (the process's stdin,
     stdout, stderr; :func:`conch.shim.client.exec_request`): ``docker exec``, as
     containerd's shim does it. The shim runs ``RUNTIME --root RR exec --detach
     --pid-file F --process P [--console-socket S] ID`` with those fds as its stdio and
     closes its copies at once (the engine keeps the other ends, or receives the pty
     master on its own socket S, and pumps them itself: the shim relays no exec bytes).
     The runtime is reaped from the poll loop (never waited for in line; killed after
     120 s); it exits once the process is exec'd, and the process, its parent gone, is
     reparented to the shim (child subreaper) — no Python process lives on for it. The
     shim reads and removes F and replies ``{"pid":N}``; when it reaps the process it
     writes E atomically (temp + fsync + rename) with the exit file's format plus
     ``"pid"``: ``{"exit_code": N, "signal": S|null, "exited_at": "...", "pid": N}``,
     sends the same line and closes. A runtime that fails (127 for a missing command,
     its message on the process's stderr) gives only the exit line, with its exit status
     and ``"pid": 0``. The connection going away (conchd killed) changes nothing but the
     reply: E is still written. Up to three more fds after the stdio are the engine's
     own ends of the process's output pipes (``keep``): held untouched while the asking
     connection lives; once it has gone they are read and the bytes dropped, so a
     process writing after its engine died gets neither EPIPE/SIGPIPE nor a full pipe;
     closed when the exec ends. Errors in the request: ``{"error":...}`` and close.
   - ``{"type":"keep","pid":N}`` with one fd (SCM_RIGHTS): one more fd of the engine's
     for the running exec N, held and drained like ``keep`` above (a tty exec's pty
     master, which the engine receives only after the exec request: with it held, the
     process gets no SIGHUP when conchd dies); reply ``{"ok":true}`` or
     ``{"ok":false,"error":...}``, then close.
     Exec'd processes die with the container's pid namespace, so they are reaped (and
     recorded) before the container's own exit; a runtime still at work when the shim
     exits is killed.
   - anything else: ``{"error":...}`` and close. Bad input never stops the shim.
6. Exit: the container's init is reparented to the shim (the runtime's intermediate
   process exits) and reaped from a signalfd-driven poll loop, as are any other
   orphans. Output still buffered is drained (for at most 2 s while something else in
   the container keeps the pipes open) into the log and to clients, then the exit file
   is written atomically (temp + fsync + rename)::

       {"exit_code": N, "signal": S|null, "exited_at": "<RFC3339Nano>"}

   ``exit_code`` is 128+S when init was killed by signal S (docker's convention). Then
   clients are closed, the socket removed, and the shim exits 0. It does NOT delete the
   container: the engine runs ``conch-runtime delete`` after reading the cgroup's OOM
   state.

Robustness: the shim does not care whether the engine lives. If the shim itself is
killed (``kill -9``), the container keeps running but loses its log writer (its next
write to stdout/stderr gets EPIPE/SIGPIPE) and nobody records its exit: the engine must
notice (socket gone, no exit file, shim pid dead), and then use ``conch-runtime state``
and ``kill``/``delete`` itself, recording the exit as unknown.

On-disk layout (paths are the engine's choice; this is what the shim creates)::

    <socket>            attach/control socket (0600), removed at exit
    <socket>.console    only during create with --tty
    <bundle>/init.pid   written by the runtime's create
    <log-path>, <log-path>.1 ... .<max-files - 1>   json-file logs (0640)
    <exit-file>         written once, at exit (<exit-file>.tmp while being written)
    exec's E (and F, removed once read), where the engine said: the shim makes no dirs
"""

from conch.shim.client import (
    ShimInfo,
    attach,
    read_exit,
    read_frames,
    resize,
    shim_binary,
    spawn,
    status,
)

__all__ = ["ShimInfo", "attach", "read_exit", "read_frames", "resize", "shim_binary",
           "spawn", "status"]
