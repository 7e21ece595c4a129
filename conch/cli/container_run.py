"""Container verbs that run a process and carry its streams: create, run, start, attach
and exec (docker/cli's ``cli/command/container``), each one or a few Engine API calls.

``run`` follows docker's order so nothing races: create (pulling on "No such image"),
attach before start, register the wait (``condition=next-exit``, or ``removed`` with
``--rm``) before start, start, resize a TTY, copy the streams, then exit with the
status the wait returned.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli.main import CommandError, Context, UsageError, describe_error
from conch.cli.verb_common import each_name, inspect_container, quote_path


def start_error_status(message: str) -> int:
    """docker/cli ``runStartContainerErr``: 127 not found, 126 not executable, else 125."""
    if ("executable file not found" in message or "no such file or directory" in message
            or "system cannot find the file specified" in message):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _start_status(exc: BaseException) -> int:
    # a broken connection (OSError) says nothing about the command: 125, never 126/127
    return start_error_status(str(exc)) if isinstance(exc, errors.ConchError) else 125


# -- create / run ---------------------------------------------------------------------------------


def _create_parser(ctx: Context, run: bool):
    from conch.cli import run_flags

    summary = "Create and run a new container from an image" if run else "Create a new container"
    p = ctx.parser("[OPTIONS] IMAGE [COMMAND] [ARG...]", summary, add_help=False)
    run_flags.add_flags(p, run=run)
    return p


def pull_image(ctx: Context, image: str, platform: str | None = None, quiet: bool = False,
               err: bool = True) -> None:
    """``POST /images/create?fromImage=``: progress lines, errors raised as ConchError."""
    from conch.oci.reference import Reference

    try:
        ref = Reference.parse(image)
    except errors.ConchError as exc:
        raise CommandError(f"Error: {exc}") from exc
    params: dict[str, Any] = {"fromImage": ref.familiar_name()}
    params["tag"] = str(ref.digest) if ref.digest is not None else ref.tag
    if platform:
        params["platform"] = platform
    write = ctx.err if err else ctx.out
    from conch.cli.registry_cmds import auth_headers

    resp = ctx.client.request("POST", "/images/create", params=params,
                              headers=auth_headers(ref.domain))
    for msg in ctx.client.stream_json("POST", "/images/create", response=resp):
        if msg.get("error") or msg.get("errorDetail"):
            text = msg.get("error") or (msg.get("errorDetail") or {}).get("message", "")
            raise errors.ConchError(text)
        if quiet:
            continue
        status = msg.get("status", "")
        if msg.get("progressDetail") and msg.get("progress"):
            continue  # no progress bars: only the state changes
        write(f"{msg['id']}: {status}" if msg.get("id") else status)


def _familiar(image: str) -> str:
    from conch.oci.reference import Reference

    try:
        return Reference.parse(image).familiar()
    except errors.ConchError:
        return image


def create_container(ctx: Context, req, quiet: bool = False) -> str:
    params: dict[str, Any] = {}
    if req.name:
        params["name"] = req.name
    if req.platform:
        params["platform"] = req.platform
    image = req.body["Image"]
    if req.pull == "always":
        pull_image(ctx, image, req.platform, quiet)
    try:
        resp = ctx.client.post("/containers/create", req.body, **params)
    except errors.NotFound as exc:
        if req.pull == "never" or "image" not in str(exc).lower():
            raise
        ctx.err(f"Unable to find image '{_familiar(image)}' locally")
        pull_image(ctx, image, req.platform, quiet)
        resp = ctx.client.post("/containers/create", req.body, **params)
    for warning in resp.get("Warnings") or []:
        ctx.err(f"WARNING: {warning}")
    return resp["Id"]


def _engine_failure(ctx: Context, exc: BaseException, status: int = 125) -> int:
    msg = describe_error(exc, ctx.host)
    if msg is None:
        raise exc
    ctx.err(f"conch: {msg}\n\nRun '{ctx.prog} --help' for more information")
    return status


def cmd_create(ctx: Context, argv: list[str]) -> int:
    from conch.cli import create_body

    ns = _create_parser(ctx, run=False).parse(argv, stop_after=1)
    req = create_body.build(ns, ns.rest, run=False)
    # docker/cli wraps only run's engine errors in exit 125; create's are plain errors (exit 1,
    # "Error response from daemon: ..." printed by main like every verb's)
    ctx.out(create_container(ctx, req, ns.quiet))
    return 0


class Waiter:
    """``POST /containers/{id}/wait``, registered before the container starts.

    dockerd (and conchd) send the response head as soon as the wait is registered and the
    body when the container exits. The request goes out on its own connection here;
    ``registered()`` blocks until the head starts to arrive (the docker CLI's
    ``ContainerWait`` also returns only once it has the head), so a container that exits
    at once is not missed; ``status()`` reads the body after the streams end (it waits
    in the socket meanwhile). No thread: ``threading`` costs ~2 ms of every ``conch run``.
    A daemon that sends nothing before the exit only costs the ``registered`` timeout.
    """

    def __init__(self, ctx: Context, cid: str, condition: str) -> None:
        self.ctx = ctx
        self.cid = cid
        self.condition = condition
        self.error: BaseException | None = None
        self.pending = None
        try:
            self.pending = ctx.client.send_request(
                "POST", f"/containers/{quote_path(cid)}/wait", params={"condition": condition})
        except Exception as exc:  # reported by status(), as the start fails the same way
            self.error = exc

    def registered(self, timeout: float = 0.5) -> None:
        if self.pending is not None:
            self.pending.wait(timeout)

    def status(self) -> int:
        """The container's exit status; 125 when the wait is lost, as docker/cli's
        ``waitExitOrRemoved``: a daemon that died (EOF or reset mid-body), a broken
        connection, a body without ``StatusCode`` or an in-band ``Error``. A lost wait
        must never read as an exit status (an empty body once read as exit 0)."""
        result: Any = None
        if self.error is None:
            try:
                result = self.pending.response().json()
            except (errors.ConchError, OSError, ValueError) as exc:
                self.error = exc
        if self.error is None and not (isinstance(result, dict) and "StatusCode" in result):
            self.error = errors.Unavailable("unexpected EOF")
        if self.error is not None:
            if isinstance(self.error, errors.NotFound) and self.condition == "removed":
                return 0  # removed before the wait was registered: nothing more to learn
            self.ctx.err(f"error waiting for container: {_wait_error(self.error)}")
            return 125
        if (result.get("Error") or {}).get("Message"):
            self.ctx.err(f"error waiting for container: {result['Error']['Message']}")
            return 125
        return int(result["StatusCode"])


def _wait_error(exc: BaseException) -> str:
    if isinstance(exc, errors.ConchError) and getattr(exc, "status", None):
        return f"Error response from daemon: {exc}"  # an error status to the wait itself
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _resize(ctx: Context, path: str):
    return lambda h, w: ctx.client.post(path, h=h, w=w)


def cmd_run(ctx: Context, argv: list[str]) -> int:
    from conch.cli import create_body

    ns = _create_parser(ctx, run=True).parse(argv, stop_after=1)
    req = create_body.build(ns, ns.rest, run=True)
    body = req.body
    if not ns.detach and ns.tty and ns.interactive:
        from conch.cli.tty import stdin_is_tty

        if not stdin_is_tty():
            raise CommandError("the input device is not a TTY", status=1)
    try:
        cid = create_container(ctx, req, ns.quiet)
    except (errors.ConchError, OSError) as exc:  # a reset (conchd died) is 125 too, not 1
        return _engine_failure(ctx, exc)
    client = ctx.client
    if ns.detach:
        try:
            client.post(f"/containers/{cid}/start")
        except (errors.ConchError, OSError) as exc:
            return _engine_failure(ctx, exc, _start_status(exc))
        ctx.out(cid)
        return 0

    from conch.cli import tty as ttymod

    sock = None
    attach_any = body["AttachStdin"] or body["AttachStdout"] or body["AttachStderr"]
    try:
        # docker's order (attach, wait, then start), but the wait request is sent first
        # and its head read after the attach is up: the two round trips overlap.
        waiter = Waiter(ctx, cid, "removed" if ns.rm else "next-exit")
        if attach_any:
            params = {"stream": 1, "stdin": int(body["AttachStdin"]),
                      "stdout": int(body["AttachStdout"]), "stderr": int(body["AttachStderr"])}
            if ns.detach_keys:
                params["detachKeys"] = ns.detach_keys
            sock = client.hijack("POST", f"/containers/{cid}/attach", params=params)
        waiter.registered()
        client.post(f"/containers/{cid}/start")
    except (errors.ConchError, OSError) as exc:
        if sock is not None:
            sock.close()
        return _engine_failure(ctx, exc, _start_status(exc))
    return _stream_and_wait(ctx, cid, sock, waiter, tty=body["Tty"], stdin=body["AttachStdin"],
                            sig_proxy=ns.sig_proxy, detach_keys=ns.detach_keys)


def _stream_and_wait(ctx: Context, cid: str, sock, waiter: Waiter | None, *, tty: bool,
                     stdin: bool, sig_proxy: bool, detach_keys: str | None,
                     resize_path: str | None = None) -> int:
    from conch.cli import tty as ttymod

    undo = []
    client = ctx.client
    detached = False
    try:
        if tty:
            undo.append(ttymod.watch_resize(_resize(ctx, resize_path or f"/containers/{cid}/resize")))
        elif sig_proxy:
            undo.append(ttymod.proxy_signals(
                lambda sig: client.post(f"/containers/{cid}/kill", signal=sig)))
        if sock is not None:
            raw = ttymod.RawTerminal() if tty and stdin else None
            ctx.stdout.flush()
            ctx.stderr.flush()
            if raw is not None:
                with raw:
                    detached = ttymod.Session(sock, tty=tty, stdin=stdin,
                                              detach_keys=detach_keys).run()
            else:
                detached = ttymod.Session(sock, tty=tty, stdin=stdin,
                                          detach_keys=detach_keys).run()
    finally:
        for fn in undo:
            fn()
    if detached or waiter is None:
        return 0
    try:
        return waiter.status()
    except errors.ConchError as exc:
        return _engine_failure(ctx, exc)


# -- start / attach ---------------------------------------------------------------------------------


def cmd_start(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    ns = p.parse(argv)
    if not (ns.attach or ns.interactive):
        def start(name):
            ctx.client.post(f"/containers/{quote_path(name)}/start")
        status = each_name(ctx, ns.containers, start)
        if status:
            ctx.err("Error: failed to start containers: " + ", ".join(ns.containers))
        return status
    if len(ns.containers) > 1:
        raise CommandError("you cannot start and attach multiple containers at once")
    name = ns.containers[0]
    try:
        info = inspect_container(ctx, name)
        cid = info["Id"]
        tty = bool(info["Config"].get("Tty"))
        stdin = ns.interactive and bool(info["Config"].get("OpenStdin"))
        params = {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1}
        if ns.detach_keys:
            params["detachKeys"] = ns.detach_keys
        sock = ctx.client.hijack("POST", f"/containers/{cid}/attach", params=params)
        waiter = Waiter(ctx, cid, "next-exit")
        waiter.registered()
        ctx.client.post(f"/containers/{cid}/start")
    except errors.ConchError as exc:
        ctx.err(describe_error(exc, ctx.host))
        return start_error_status(str(exc)) if "start" in str(exc) else 1
    return _stream_and_wait(ctx, cid, sock, waiter, tty=tty, stdin=stdin, sig_proxy=True,
                            detach_keys=ns.detach_keys)


def cmd_attach(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER", "Attach local standard input, output, and error streams to a running container")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", action="store_true", default=True, help="Proxy all received signals to the process (default true)")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    info = inspect_container(ctx, ns.container)
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CommandError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise CommandError("You cannot attach to a paused container, unpause it first")
    cid = info["Id"]
    tty = bool(info["Config"].get("Tty"))
    stdin = not ns.no_stdin and bool(info["Config"].get("OpenStdin"))
    params = {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1}
    if ns.detach_keys:
        params["detachKeys"] = ns.detach_keys
    sock = ctx.client.hijack("POST", f"/containers/{cid}/attach", params=params)
    rc = _stream_and_wait(ctx, cid, sock, None, tty=tty, stdin=stdin, sig_proxy=ns.sig_proxy,
                          detach_keys=ns.detach_keys)
    if rc:
        return rc
    try:  # docker attach exits with the container's status once the stream ends
        info = inspect_container(ctx, cid)
    except errors.NotFound:
        return 0
    if (info.get("State") or {}).get("Running"):
        return 0  # detached
    return int((info.get("State") or {}).get("ExitCode", 0))


# -- exec -----------------------------------------------------------------------------------------


def cmd_exec(ctx: Context, argv: list[str]) -> int:
    from conch.cli import flag_values

    p = ctx.parser("[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help="Username or UID (format: \"<name|uid>[:<group|gid>]\")")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv, stop_after=1)
    if not ns.rest:
        raise UsageError(f'"{ctx.prog}" requires at least 2 arguments.', status=1)
    if ns.tty and ns.interactive and not ns.detach:
        from conch.cli.tty import stdin_is_tty

        if not stdin_is_tty():
            raise CommandError("the input device is not a TTY", status=1)
    env = flag_values.env_list([line for f in ns.env_file for line in flag_values.read_kv_file(f)] + ns.env)
    body: dict[str, Any] = {
        "AttachStdin": ns.interactive and not ns.detach,
        "AttachStdout": not ns.detach,
        "AttachStderr": not ns.detach,
        "Tty": ns.tty,
        "Cmd": ns.rest,
        "Privileged": ns.privileged,
    }
    if env:
        body["Env"] = env
    if ns.workdir:
        body["WorkingDir"] = ns.workdir
    if ns.user:
        body["User"] = ns.user
    if ns.detach_keys:
        body["DetachKeys"] = ns.detach_keys
    if ns.tty:
        from conch.cli.tty import terminal_size

        size = terminal_size()
        if size:
            body["ConsoleSize"] = list(size)
    client = ctx.client
    eid = client.post(f"/containers/{quote_path(ns.container)}/exec", body)["Id"]
    if ns.detach:
        client.post(f"/exec/{eid}/start", {"Detach": True, "Tty": ns.tty})
        return 0
    try:
        sock = client.hijack("POST", f"/exec/{eid}/start", {"Detach": False, "Tty": ns.tty})
    except errors.ConchError as exc:
        ctx.err(describe_error(exc, ctx.host))
        return start_error_status(str(exc)) if "exec" in str(exc) else 1
    rc = _stream_and_wait(ctx, eid, sock, None, tty=ns.tty, stdin=body["AttachStdin"],
                          sig_proxy=False, detach_keys=ns.detach_keys,
                          resize_path=f"/exec/{eid}/resize")
    if rc:
        return rc
    info = client.get(f"/exec/{eid}/json")
    return int(info.get("ExitCode") or 0)
