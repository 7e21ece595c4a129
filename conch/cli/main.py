"""``conch``: the command line, docker's verbs over the Docker Engine API.

Contract: the CLI talks to conchd only through ``conch.client`` (the Engine API over a unix
socket), so whatever ``conch`` can do, the real ``docker`` CLI can do against conchd too.

Start-up cost matters more than elegance here: this module imports nothing but the
standard library basics; the verb's module (container_run/images/system...) is imported when the
verb is known, the client when the first request is made, and ``tty``/``termios`` only by
verbs that attach a terminal.

Exit codes are docker's: 125 for a usage error or when the engine fails ``run``/``create``,
126/127 when the container's command cannot be executed / is not found, 1 for any other
error, otherwise the container's own status.
"""

from __future__ import annotations

import os
import sys

from conch.cli.errors import CommandError, UsageError

DEFAULT_HOST = "unix:///run/conch/conch.sock"
LOG_PATH = "/var/log/conch/conchd.log"

# verb -> (module, function, summary). The module is imported only when the verb runs.
VERBS: dict[str, tuple[str, str, str]] = {
    "run": ("container_run", "cmd_run", "Create and run a new container from an image"),
    "exec": ("container_run", "cmd_exec", "Execute a command in a running container"),
    "ps": ("container_views", "cmd_ps", "List containers"),
    "create": ("container_run", "cmd_create", "Create a new container"),
    "start": ("container_run", "cmd_start", "Start one or more stopped containers"),
    "stop": ("container_lifecycle", "cmd_stop", "Stop one or more running containers"),
    "restart": ("container_lifecycle", "cmd_restart", "Restart one or more containers"),
    "kill": ("container_lifecycle", "cmd_kill", "Kill one or more running containers"),
    "rm": ("container_lifecycle", "cmd_rm", "Remove one or more containers"),
    "logs": ("container_views", "cmd_logs", "Fetch the logs of a container"),
    "attach": ("container_run", "cmd_attach", "Attach local standard input, output, and error streams to a running container"),
    "wait": ("container_lifecycle", "cmd_wait", "Block until one or more containers stop, then print their exit codes"),
    "top": ("container_views", "cmd_top", "Display the running processes of a container"),
    "stats": ("container_views", "cmd_stats", "Display a live stream of container(s) resource usage statistics"),
    "rename": ("container_lifecycle", "cmd_rename", "Rename a container"),
    "pause": ("container_lifecycle", "cmd_pause", "Pause all processes within one or more containers"),
    "unpause": ("container_lifecycle", "cmd_unpause", "Unpause all processes within one or more containers"),
    "port": ("container_views", "cmd_port", "List port mappings or a specific mapping for the container"),
    "cp": ("container_fs", "cmd_cp", "Copy files/folders between a container and the local filesystem"),
    "diff": ("container_views", "cmd_diff", "Inspect changes to files or directories on a container's filesystem"),
    "export": ("container_fs", "cmd_export", "Export a container's filesystem as a tar archive"),
    "commit": ("container_fs", "cmd_commit", "Create a new image from a container's changes"),
    "update": ("container_lifecycle", "cmd_update", "Update configuration of one or more containers"),
    "build": ("build", "cmd_build", "Build an image from a Dockerfile"),
    "images": ("images", "cmd_images", "List images"),
    "pull": ("registry_cmds", "cmd_pull", "Download an image from a registry"),
    "push": ("registry_cmds", "cmd_push", "Upload an image to a registry"),
    "login": ("registry_cmds", "cmd_login", "Authenticate to a registry"),
    "logout": ("registry_cmds", "cmd_logout", "Log out from a registry"),
    "rmi": ("images", "cmd_rmi", "Remove one or more images"),
    "tag": ("images", "cmd_tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "import": ("images", "cmd_import", "Import the contents from a tarball to create a filesystem image"),
    "history": ("images", "cmd_history", "Show the history of an image"),
    "save": ("images", "cmd_save", "Save one or more images to a tar archive"),
    "load": ("images", "cmd_load", "Load an image from a tar archive or STDIN"),
    "inspect": ("system", "cmd_inspect", "Return low-level information on conch objects"),
    "version": ("system", "cmd_version", "Show the conch version information"),
    "info": ("system", "cmd_info", "Display system-wide information"),
    "events": ("system", "cmd_events", "Get real time events from the server"),
    "compose": ("compose", "cmd_compose", "Define and run multi-container applications (docker compose v2)"),
}

# `conch container VERB`, `conch image VERB`, `conch system VERB`: sub-verb -> entry.
NOUNS: dict[str, dict[str, tuple[str, str, str]]] = {
    "builder": {
        "build": VERBS["build"],
        "prune": ("system", "cmd_builder_prune", "Remove build cache"),
    },
    "container": {
        **{v: VERBS[v] for v in (
            "run", "exec", "create", "start", "stop", "restart", "kill", "logs", "attach",
            "wait", "top", "stats", "rename", "pause", "unpause", "port", "cp", "diff",
            "export", "commit", "update",
        )},
        "ls": VERBS["ps"], "list": VERBS["ps"], "ps": VERBS["ps"],
        "rm": VERBS["rm"], "remove": VERBS["rm"],
        "inspect": ("system", "cmd_container_inspect", "Display detailed information on one or more containers"),
        "prune": ("container_lifecycle", "cmd_prune", "Remove all stopped containers"),
    },
    "image": {
        "ls": VERBS["images"], "list": VERBS["images"],
        "rm": VERBS["rmi"], "remove": VERBS["rmi"],
        **{v: VERBS[v] for v in ("build", "pull", "push", "tag", "import", "history", "save", "load")},
        "inspect": ("system", "cmd_image_inspect", "Display detailed information on one or more images"),
        "prune": ("images", "cmd_prune", "Remove unused images"),
    },
    "volume": {
        "create": ("volumes", "cmd_create", "Create a volume"),
        "ls": ("volumes", "cmd_ls", "List volumes"),
        "list": ("volumes", "cmd_ls", "List volumes"),
        "inspect": ("volumes", "cmd_inspect", "Display detailed information on one or more volumes"),
        "rm": ("volumes", "cmd_rm", "Remove one or more volumes"),
        "remove": ("volumes", "cmd_rm", "Remove one or more volumes"),
        "prune": ("volumes", "cmd_prune", "Remove unused local volumes"),
    },
    "network": {
        "create": ("networks", "cmd_create", "Create a network"),
        "ls": ("networks", "cmd_ls", "List networks"),
        "list": ("networks", "cmd_ls", "List networks"),
        "inspect": ("networks", "cmd_inspect", "Display detailed information on one or more networks"),
        "rm": ("networks", "cmd_rm", "Remove one or more networks"),
        "remove": ("networks", "cmd_rm", "Remove one or more networks"),
        "prune": ("networks", "cmd_prune", "Remove all unused networks"),
        "connect": ("networks", "cmd_connect", "Connect a container to a network"),
        "disconnect": ("networks", "cmd_disconnect", "Disconnect a container from a network"),
    },
    "kube": {
        "generate": ("kube", "cmd_generate", "Generate Kubernetes YAML from containers, pods or compose projects"),
        "play": ("kube", "cmd_play", "Run Kubernetes Pods, Deployments and Services from YAML"),
    },
    "registry": {
        "serve": ("registry", "cmd_serve", "Serve an OCI distribution registry from a directory"),
        "gc": ("registry", "cmd_gc", "Delete unreferenced blobs and stale uploads of a registry"),
    },
    "system": {
        "df": ("system", "cmd_df", "Show conch disk usage"),
        "prune": ("system", "cmd_system_prune", "Remove unused data"),
        "info": VERBS["info"],
        "events": VERBS["events"],
    },
}


def __getattr__(name: str):
    # The argparse-backed parser lives in conch.cli.argparser (argparse costs ~14 ms to
    # import); verbs get conch.cli.flags.Parser from Context.parser, which defers to it.
    if name == "Parser":
        from conch.cli.argparser import Parser

        return Parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Context:
    """What a verb needs: the client (made on first use), the streams and its own name."""

    def __init__(self, host: str | None, debug: bool, prog: str, client=None,
                 stdin=None, stdout=None, stderr=None):
        self.host = host
        self.debug = debug
        self.prog = prog
        self._client = client
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    @property
    def client(self):
        if self._client is None:
            from conch.client import Client

            explicit = self.host or os.environ.get("CONCH_HOST")
            if not explicit:
                ensure_daemon(DEFAULT_HOST)
            self._client = Client(explicit or None)
        return self._client

    def out(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(text + end)

    def err(self, text: str, end: str = "\n") -> None:
        self.stderr.write(text + end)

    def out_bytes(self, data: bytes) -> None:
        buf = getattr(self.stdout, "buffer", None)
        if buf is None:
            self.stdout.write(data.decode("utf-8", "replace"))
        else:
            self.stdout.flush()
            buf.write(data)
            buf.flush()

    def parser(self, usage: str, description: str, add_help: bool = True):
        """A :class:`conch.cli.flags.Parser` (argparse only when it is needed)."""
        from conch.cli.flags import Parser

        return Parser(self.prog, usage=f"{self.prog} {usage}", description=description,
                      add_help=add_help)


# -- auto-start --------------------------------------------------------------------------


def _socket_alive(path: str) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _conchd_path() -> str | None:
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), "conchd")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("conchd")


def ensure_daemon(host: str, timeout: float = 5.0) -> None:
    """First use is one command: start conchd when root and nothing answers the default socket.

    Only for the default socket: with -H or CONCH_HOST the user chose a daemon and
    starting another one behind their back would be wrong.
    """
    import time

    path = host[len("unix://"):]
    if _socket_alive(path) or os.geteuid() != 0:
        return
    exe = _conchd_path()
    if exe is None:
        return  # the request fails with "Cannot connect", which says what is wrong
    import subprocess

    log_dir = os.path.dirname(LOG_PATH)
    os.makedirs(log_dir, exist_ok=True)
    with open(LOG_PATH, "ab") as log:
        subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _socket_alive(path):
            return
        time.sleep(0.05)


# -- dispatch ------------------------------------------------------------------------------


def _print_help(out) -> None:
    out.write("Usage:  conch [OPTIONS] COMMAND\n\nA Docker-compatible container engine\n\n")
    out.write("Options:\n  -H, --host string   Daemon socket to connect to (default "
              f"{DEFAULT_HOST}, or $CONCH_HOST)\n  -D, --debug         Enable debug mode\n"
              "  -v, --version       Print version information and quit\n\n")
    out.write("Management Commands:\n")
    for noun, desc in (("container", "Manage containers"), ("image", "Manage images"),
                       ("volume", "Manage volumes"), ("network", "Manage networks"), ("kube", "Play and generate Kubernetes YAML"),
                       ("registry", "Run a registry"),
                       ("system", "Manage conch")):
        out.write(f"  {noun:<10}  {desc}\n")
    out.write("\nCommands:\n")
    for verb, (_, _, summary) in VERBS.items():
        out.write(f"  {verb:<10}  {summary}\n")
    out.write("\nRun 'conch COMMAND --help' for more information on a command.\n")


def _print_noun_help(out, noun: str) -> None:
    # "Manage images", "Manage registries"; docker says "Manage Docker" for `system`
    plural = {"registry": "registries", "system": "conch",
              "kube": "Kubernetes YAML"}.get(noun, f"{noun}s")
    out.write(f"Usage:  conch {noun} COMMAND\n\nManage {plural}\n\nCommands:\n")
    for verb, (_, _, summary) in NOUNS[noun].items():
        out.write(f"  {verb:<10}  {summary}\n")
    out.write(f"\nRun 'conch {noun} COMMAND --help' for more information on a command.\n")


def _split_globals(argv: list[str]) -> tuple[str | None, bool, list[str]]:
    host = None
    debug = False
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-H", "--host"):
            if i + 1 >= len(argv):
                raise UsageError(f"flag needs an argument: {tok}")
            host = argv[i + 1]
            i += 2
        elif tok.startswith("--host="):
            host = tok.split("=", 1)[1]
            i += 1
        elif tok.startswith("-H") and len(tok) > 2:
            host = tok[2:].lstrip("=")
            i += 1
        elif tok in ("-D", "--debug"):
            debug = True
            i += 1
        elif tok in ("-v", "--version"):
            return host, debug, ["__version__"] + argv[i + 1:]
        elif tok in ("-h", "--help"):
            return host, debug, ["__help__"]
        elif tok.startswith("-"):
            raise UsageError(f"unknown flag: {tok}")
        else:
            break
    return host, debug, argv[i:]


def _resolve(args: list[str]) -> tuple[tuple[str, str, str] | None, str, list[str]]:
    verb = args[0]
    if verb in NOUNS:
        if len(args) < 2 or args[1] in ("-h", "--help"):
            return None, verb, []
        entry = NOUNS[verb].get(args[1])
        if entry is None:
            raise UsageError(f"conch {verb}: '{args[1]}' is not a conch command.\n"
                             f"See 'conch {verb} --help'", status=1)
        return entry, f"conch {verb} {args[1]}", args[2:]
    entry = VERBS.get(verb)
    if entry is None:
        raise UsageError(f"conch: '{verb}' is not a conch command.\nSee 'conch --help'", status=1)
    return entry, f"conch {verb}", args[1:]


def run() -> None:
    """The ``conch`` executable: :func:`main`, then out without the interpreter's
    teardown (freeing every module and object costs 2-3 ms a command, for nothing:
    the kernel frees a process at once). Only stdout and stderr need flushing first."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None, *, client=None, stdin=None, stdout=None,
         stderr=None) -> int:
    """Run one conch command; returns the exit status (docker's codes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    prog = "conch"
    try:
        host, debug, args = _split_globals(argv)
        if debug:
            import logging

            logging.basicConfig(level=logging.DEBUG)
        if not args or args[0] == "__help__":
            _print_help(out)
            return 0
        if args[0] == "__version__":
            out.write(f"conch version {_version()}\n")
            return 0
        entry, prog, rest = _resolve(args)
        if entry is None:
            _print_noun_help(out, prog)
            return 0
        module, func, _ = entry
        __import__(f"conch.cli.{module}")  # not importlib: ~0.7 ms of start-up
        fn = getattr(sys.modules[f"conch.cli.{module}"], func)
        ctx = Context(host, debug, prog, client=client, stdin=stdin, stdout=stdout, stderr=stderr)
        return int(fn(ctx, rest) or 0)
    except UsageError as exc:
        err.write(f"{exc}\nSee '{prog} --help'.\n" if "See '" not in str(exc) else f"{exc}\n")
        return exc.status
    except CommandError as exc:
        if str(exc):
            err.write(f"{exc}\n")
        return exc.status
    except SystemExit as exc:  # argparse --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        msg = describe_error(exc, locals().get("host"))
        if msg is None:
            raise
        err.write(msg + "\n")
        return 1
    finally:
        try:
            out.flush()
        except (BrokenPipeError, ValueError):
            pass


def describe_error(exc: BaseException, host: str | None = None) -> str | None:
    """docker's wording for an engine error, or None when ``exc`` is not one (a bug)."""
    from conch import errors

    if isinstance(exc, errors.Unavailable) and isinstance(exc.__cause__, OSError):
        return str(exc)  # the client's "Cannot connect to the conch daemon at ..."
    if isinstance(exc, errors.ConchError):
        return f"Error response from daemon: {exc}"
    if isinstance(exc, OSError):
        return f"Error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return None


VERSION = "0.1.0"  # kept in step with pyproject; importlib.metadata costs ~20 ms


def _version() -> str:
    return VERSION


if __name__ == "__main__":
    sys.exit(main())
