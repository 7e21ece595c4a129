"""conch-runtime's command line: runc's verbs and flags.

A small hand-written parser instead of argparse: argparse (with gettext and re) costs
several milliseconds on every container start, and runc's grammar is simple — global
flags, a verb, the verb's flags, the container id, and for ``exec`` the command.
Errors go to stderr and, with ``--log``, to the log file (``--log-format json`` writes
runc's ``{"level","msg","time"}`` lines, which conmon/podman read back).
"""

import sys

# ``os`` is imported inside the functions that use it, not here: ``run`` starts the
# cgroup pre-arming thread (conch.runtime.prearm) before anything else, and importing
# ``os`` (with _collections_abc, posixpath, stat) would delay that by ~1.5 ms.

USAGE = """usage: conch-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [OPTIONS] ID

commands:
  create    create a container from a bundle (--bundle, --pid-file, --console-socket)
  start     start a created container
  run       create and start a container (foreground unless --detach)
  state     print the state of a container (runtime-spec JSON)
  kill      send a signal to the container's init (--all: every process)
  delete    delete a container (--force: kill it first)
  exec      run a new process inside a running container
  list      list containers (--format table|json, -q)
  ps        list the processes of a container (--format table|json)
  pause     freeze every process of a container
  resume    thaw a paused container
  spec      write a default config.json (--bundle)
  features  print the features this runtime supports (JSON)
"""

# flag -> (attribute, takes a value, repeatable)
_COMMON_CREATE = {
    "--bundle": ("bundle", True, False), "-b": ("bundle", True, False),
    "--pid-file": ("pid_file", True, False),
    "--console-socket": ("console_socket", True, False),
    "--preserve-fds": ("preserve_fds", True, False),
    "--no-pivot": ("no_pivot", False, False),
    "--no-new-keyring": ("no_new_keyring", False, False),
}
FLAGS = {
    "create": _COMMON_CREATE,
    "run": dict(_COMMON_CREATE, **{"--detach": ("detach", False, False), "-d": ("detach", False, False),
                                   "--keep": ("keep", False, False)}),
    "start": {}, "state": {}, "pause": {}, "resume": {},
    "kill": {"--all": ("all", False, False), "-a": ("all", False, False)},
    "delete": {"--force": ("force", False, False), "-f": ("force", False, False)},
    "list": {"--format": ("format", True, False), "-f": ("format", True, False),
             "--quiet": ("quiet", False, False), "-q": ("quiet", False, False)},
    "ps": {"--format": ("format", True, False), "-f": ("format", True, False)},
    "spec": {"--bundle": ("bundle", True, False), "-b": ("bundle", True, False),
             "--rootless": ("rootless", False, False)},
    "features": {},
    "exec": {
        "--console-socket": ("console_socket", True, False), "--cwd": ("cwd", True, False),
        "--env": ("env", True, True), "-e": ("env", True, True),
        "--tty": ("tty", False, False), "-t": ("tty", False, False),
        "--user": ("user", True, False), "-u": ("user", True, False),
        "--additional-gids": ("additional_gids", True, True), "-g": ("additional_gids", True, True),
        "--process": ("process", True, False), "-p": ("process", True, False),
        "--detach": ("detach", False, False), "-d": ("detach", False, False),
        "--pid-file": ("pid_file", True, False), "--cap": ("cap", True, True), "-c": ("cap", True, True),
        "--no-new-privs": ("no_new_privs", False, False),
        "--preserve-fds": ("preserve_fds", True, False),
        "--ignore-paused": ("ignore_paused", False, False),
    },
}
_NEEDS_ID = {"create", "start", "run", "state", "kill", "delete", "exec", "ps", "pause", "resume"}
_GLOBAL = {"--root": "root", "--log": "log", "--log-format": "log_format", "--criu": "criu"}
_GLOBAL_BOOL = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}


class Options:
    def __init__(self):
        self.root = _env("CONCH_RUNTIME_ROOT") or "/run/conch-runtime"
        self.log = ""
        self.log_format = "text"
        self.debug = False
        self.systemd_cgroup = False
        self.criu = ""
        self.rootless = False
        self.command = ""
        self.id = ""
        self.args: list[str] = []
        self.bundle = ""
        self.pid_file = ""
        self.console_socket = ""
        self.preserve_fds = 0
        self.no_pivot = self.no_new_keyring = self.detach = self.keep = False
        self.all = self.force = self.quiet = self.tty = self.no_new_privs = False
        self.ignore_paused = False
        self.format = "table"
        self.signal = "SIGTERM"
        self.cwd = self.user = self.process = ""
        self.env: list[str] = []
        self.additional_gids: list[str] = []
        self.cap: list[str] = []


def _env(name: str) -> str:
    """os.environ[name] (or ""), without importing os (see the top of this module)."""
    os = sys.modules.get("os")
    if os is not None:  # already loaded (a caller in-process): its environ is the live one
        return os.environ.get(name, "")
    import posix

    value = posix.environ.get(name.encode())  # bytes, decoded as os.environ decodes them
    return "" if value is None else value.decode(sys.getfilesystemencoding(), "surrogateescape")


class UsageError(Exception):
    pass


def _split(arg: str):
    if arg.startswith("--") and "=" in arg:
        name, value = arg.split("=", 1)
        return name, value
    return arg, None


def parse(argv: list[str]) -> Options:
    o = Options()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, value = _split(argv[i])
        if name in ("-h", "--help"):
            raise UsageError("")
        if name in ("-v", "--version"):
            o.command = "version"
            return o
        if name in _GLOBAL_BOOL:
            setattr(o, _GLOBAL_BOOL[name], True)
        elif name == "--rootless":
            if value is None:
                i += 1
                value = argv[i] if i < len(argv) else ""
            o.rootless = value not in ("false", "auto", "")
        elif name in _GLOBAL:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag {name} needs a value")
                value = argv[i]
            setattr(o, _GLOBAL[name], value)
        else:
            raise UsageError(f"unknown global flag {name!r}")
        i += 1
    if i >= len(argv):
        raise UsageError("")
    o.command = argv[i]
    i += 1
    if o.command not in FLAGS:
        raise UsageError(f"unknown command {o.command!r}")
    flags = FLAGS[o.command]
    positional: list[str] = []
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional.extend(argv[i + 1:])
            break
        if arg.startswith("-") and arg != "-" and not (o.command == "exec" and positional):
            name, value = _split(arg)
            if name not in flags:
                raise UsageError(f"{o.command}: unknown flag {name!r}")
            attr, takes, multi = flags[name]
            if takes:
                if value is None:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"{o.command}: flag {name} needs a value")
                    value = argv[i]
                if multi:
                    getattr(o, attr).append(value)
                else:
                    setattr(o, attr, int(value) if attr == "preserve_fds" else value)
            else:
                setattr(o, attr, value not in ("false", "0") if value is not None else True)
        else:
            positional.append(arg)
            if o.command != "exec" and o.command != "kill" and len(positional) > 1:
                raise UsageError(f"{o.command}: unexpected argument {arg!r}")
        i += 1
    if o.command in _NEEDS_ID:
        if not positional:
            raise UsageError(f"{o.command}: a container id is required")
        o.id = positional[0]
        o.args = positional[1:]
    if o.command == "kill":
        if len(o.args) > 1:
            raise UsageError("kill: too many arguments")
        if o.args:
            o.signal = o.args[0]
    if o.command in ("create", "run") and not o.bundle:
        import os

        o.bundle = os.getcwd()
    if o.format not in ("table", "json"):
        raise UsageError(f"--format {o.format!r}: want table or json")
    if o.log_format not in ("text", "json"):
        raise UsageError(f"--log-format {o.log_format!r}: want text or json")
    return o


def _log_error(o: Options, msg: str) -> None:
    sys.stderr.write(f"conch-runtime: {msg}\n")
    if not o.log:
        return
    import time

    t = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
    if o.log_format == "json":
        import json

        line = json.dumps({"level": "error", "msg": msg, "time": stamp})
    else:
        line = f'time="{stamp}" level=error msg="{msg}"'
    try:
        with open(o.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def run() -> None:
    """The ``conch-runtime`` executable: :func:`main`, then out without the interpreter's
    teardown, which costs ~2 ms after a create (every imported module freed) while the
    shim waits for this process to end to learn the create's result. Logs are written
    with open/close and state with os.write: only stdout and stderr need flushing.

    The cyclic garbage collector is off for the whole (short) life of the process: the
    imports alone set off a dozen collections (~1 ms), and a collection in a forked
    child (C, G) walks objects it shares with the parent, copying their pages. Nothing
    here makes much cyclic garbage; the long foreground waits turn it back on.

    For ``create`` and ``run`` the cgroup pre-arming thread starts first of all, before
    the imports: the RCU grace period it waits out (10-15 ms here, see prearm) is most
    of a cold start, and only what comes before its start adds to it."""
    import gc

    gc.disable()
    # Started with fd 1 or 2 closed, Python leaves sys.stdout/stderr None. The fd must stay
    # closed (the container inherits it as it is, as with runc), so what would go there
    # goes nowhere, instead of an AttributeError at the first write or the final flush.
    if sys.stdout is None:
        sys.stdout = _Closed()
    if sys.stderr is None:
        sys.stderr = _Closed()
    if _verb(sys.argv) in ("create", "run"):
        from conch.runtime import prearm

        prearm.start()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):
            pass
    import os

    os._exit(code)


class _Closed:
    """A stream for a standard fd the runtime was started without."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _verb(argv: list[str]) -> str:
    """The command word of a runtime command line, found without parsing it (global
    flags that take a value skip it); "" when there is none."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "warm":  # conch-shim's pre-started runtime
        from conch.runtime import warm

        try:
            request = warm.wait_request(int(argv[1]))
        except OSError:
            return 1
        if request is None:
            return 0  # discarded: the shim runs a cold one if it needs a runtime
        argv = request
    try:
        o = parse(argv)
    except UsageError as exc:
        if str(exc):
            sys.stderr.write(f"conch-runtime: {exc}\n")
        sys.stderr.write(USAGE)
        return 2 if str(exc) else 0
    if o.command in ("create", "run"):
        from conch.runtime import prearm

        prearm.start()
    if o.command == "version":
        print("conch-runtime version 0.1.0\nspec: 1.2.0")
        return 0
    try:
        if o.systemd_cgroup:
            from conch.errors import InvalidArgument

            raise InvalidArgument("--systemd-cgroup is not supported: use the cgroupfs driver")
        if o.command in ("state", "start", "delete"):
            # the common case without importing the general verbs (see fastpath)
            from conch.runtime import fastpath

            code = fastpath.run(o)
            if code is not None:
                return code
        if o.command == "exec":
            from conch.runtime.exec import cmd_exec as fn
        else:
            from conch.runtime import commands

            fn = getattr(commands, "cmd_" + o.command)
        return fn(o)
    except (Exception, KeyboardInterrupt) as exc:
        return _failed(o, exc)


def _failed(o: Options, exc: BaseException) -> int:
    """The exit code for a verb's exception, logged as runc logs it; others re-raised."""
    from conch.errors import ConchError

    if isinstance(exc, ConchError):
        _log_error(o, str(exc))
        return 1
    if isinstance(exc, OSError):
        _log_error(o, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    raise exc


if __name__ == "__main__":
    sys.exit(main())
