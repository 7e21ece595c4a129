"""Container verbs: run, create, start, stop, ps, logs, exec, cp, ... (docker/cli's
``cli/command/container``), each one or a few Engine API calls.

``run`` follows docker's order so nothing races: create (pulling on "No such image"),
attach before start, register the wait (``condition=next-exit``, or ``removed`` with
``--rm``) before start, start, resize a TTY, copy the streams, then exit with the
status the wait returned.
"""

from __future__ import annotations

import os
import sys
import time
TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context, UsageError, describe_error

# -- small helpers ---------------------------------------------------------------------------


def _q(value: str) -> str:
    from conch.client.lean import quote  # not urllib.parse: ~3 ms of start-up

    return quote(value, safe="/:@")


def _each(ctx: Context, names: list[str], action, echo: bool = True,
          missing_ok: bool = False) -> int:
    """Apply ``action(name)`` to each name; report failures docker's way, exit 1 if any
    (``missing_ok``: a name that is not there is reported but is no failure)."""
    status = 0
    for name in names:
        try:
            result = action(name)
        except errors.ConchError as exc:
            ctx.err(describe_error(exc, ctx.host))
            if not (missing_ok and isinstance(exc, errors.NotFound)):
                status = 1
            continue
        if echo:
            ctx.out(name if result is None else str(result))
    return status


def _need(ns_list: list, ctx: Context, what: str = "at least 1 argument") -> None:
    if not ns_list:
        raise UsageError(f'"{ctx.prog}" requires {what}.', status=1)


def start_error_status(message: str) -> int:
    """docker/cli ``runStartContainerErr``: 127 not found, 126 not executable, else 125."""
    if ("executable file not found" in message or "no such file or directory" in message
            or "system cannot find the file specified" in message):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def filters_json(values: list[str]) -> str | None:
    """``--filter k=v`` (repeatable) -> the API's filters JSON (map-of-bool form)."""
    if not values:
        return None
    from conch.client.lean import dumps

    out: dict[str, dict[str, bool]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), {})[value] = True
    return dumps(out, compact=True)


def _inspect(ctx: Context, name: str) -> dict[str, Any]:
    return ctx.client.get(f"/containers/{_q(name)}/json")


# -- ps ---------------------------------------------------------------------------------------

PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
    "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
    "State": "STATE", "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL",
}
PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def display_ports(ports: list[dict[str, Any]] | None) -> str:
    """docker's ``DisplayablePorts``: '0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp'."""
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("Type", ""), p.get("PrivatePort", 0),
                                               p.get("PublicPort") or 0, p.get("IP", ""))):
        proto = p.get("Type") or "tcp"
        if p.get("PublicPort"):
            ip = p.get("IP") or ""
            if ":" in ip:
                ip = f"[{ip}]"
            item = f"{ip}:{p['PublicPort']}->{p.get('PrivatePort')}/{proto}"
        else:
            item = f"{p.get('PrivatePort')}/{proto}"
        if item not in out:
            out.append(item)
    return ", ".join(out)


def status_text(state: dict[str, Any] | str, now: float | None = None) -> str:
    """The STATUS column when the daemon did not send one (``container.State.String``)."""
    if isinstance(state, str):
        return state
    return state.get("Status", "")


def _created_at(ts: float) -> str:
    from datetime import datetime

    dt = datetime.fromtimestamp(ts).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S %z %Z")


def ps_row(c: dict[str, Any], *, trunc: bool = True, now: float | None = None) -> fmt.Row:
    now = time.time() if now is None else now
    command = c.get("Command", "")
    if trunc:
        command = fmt.ellipsis(command, 20)
    from conch.client.lean import dumps

    image = c.get("Image") or "<no image>"
    if trunc:
        if image.startswith("sha256:"):
            image = fmt.trunc_id(image)
        elif "@" in image:
            image = image.split("@", 1)[0]
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    labels = c.get("Labels") or {}
    srw = c.get("SizeRw") or 0
    size = fmt.human_size(srw)
    if c.get("SizeRootFs"):
        size = f"{size} (virtual {fmt.human_size(c['SizeRootFs'])})"
    mounts = []
    for m in c.get("Mounts") or []:
        name = m.get("Name") or m.get("Source") or ""
        mounts.append(fmt.ellipsis(name, 15) if trunc else name)
    networks = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    row = fmt.Row(
        ID=c.get("Id", "")[:12] if trunc else c.get("Id", ""),
        Image=image,
        Command=dumps(command, ascii=False),
        CreatedAt=_created_at(c.get("Created", 0)),
        RunningFor=fmt.human_duration(now - c.get("Created", now)) + " ago",
        Ports=display_ports(c.get("Ports")),
        State=c.get("State", "") if isinstance(c.get("State"), str) else status_text(c.get("State")),
        Status=c.get("Status") or status_text(c.get("State", "")),
        Size=size,
        Names=",".join(names),
        Labels=",".join(f"{k}={v}" for k, v in labels.items()),
        Mounts=",".join(mounts),
        Networks=",".join(networks),
        LocalVolumes=str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        methods={"Label": lambda key="": labels.get(key, "")},
    )
    return row


def cmd_ps(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS]", "List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container (includes all states)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    ns = p.parse(argv)
    params: dict[str, Any] = {}
    if ns.all:
        params["all"] = 1
    limit = 1 if ns.latest else ns.last
    if limit > 0:
        params["limit"] = limit
    if ns.size:
        params["size"] = 1
    f = filters_json(ns.filter)
    if f:
        params["filters"] = f
    containers = ctx.client.get("/containers/json", **params) or []
    template = ns.format or PS_DEFAULT
    if ns.quiet:
        template = "{{.ID}}"
    elif ns.size and not ns.format:
        template += "\t{{.Size}}"
    now = time.time()
    rows = [ps_row(c, trunc=not ns.no_trunc, now=now) for c in containers]
    ctx.stdout.write(fmt.render(template, rows, PS_HEADERS))
    return 0


# -- create / run ---------------------------------------------------------------------------------


def _create_parser(ctx: Context, run: bool):
    from conch.cli import runopts

    summary = "Create and run a new container from an image" if run else "Create a new container"
    p = ctx.parser("[OPTIONS] IMAGE [COMMAND] [ARG...]", summary, add_help=False)
    runopts.add_flags(p, run=run)
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
    from conch.cli import runopts

    ns = _create_parser(ctx, run=False).parse(argv, stop_after=1)
    req = runopts.build(ns, ns.rest, run=False)
    try:
        ctx.out(create_container(ctx, req, ns.quiet))
    except errors.ConchError as exc:
        return _engine_failure(ctx, exc)
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
                "POST", f"/containers/{_q(cid)}/wait", params={"condition": condition})
        except Exception as exc:  # reported by status(), as the start fails the same way
            self.error = exc

    def registered(self, timeout: float = 0.5) -> None:
        if self.pending is not None:
            self.pending.wait(timeout)

    def status(self) -> int:
        result: dict[str, Any] = {}
        if self.error is None:
            try:
                result = self.pending.response().json() or {}
            except Exception as exc:
                self.error = exc
        if self.error is not None:
            if isinstance(self.error, errors.NotFound) and self.condition == "removed":
                return 0  # removed before the wait was registered: nothing more to learn
            raise self.error
        if (result.get("Error") or {}).get("Message"):
            self.ctx.err(f"Error waiting for container: {result['Error']['Message']}")
        return int(result.get("StatusCode", 0))


def _resize(ctx: Context, path: str):
    return lambda h, w: ctx.client.post(path, h=h, w=w)


def cmd_run(ctx: Context, argv: list[str]) -> int:
    from conch.cli import runopts

    ns = _create_parser(ctx, run=True).parse(argv, stop_after=1)
    req = runopts.build(ns, ns.rest, run=True)
    body = req.body
    if not ns.detach and ns.tty and ns.interactive:
        from conch.cli.tty import stdin_is_tty

        if not stdin_is_tty():
            raise CommandError("the input device is not a TTY", status=1)
    try:
        cid = create_container(ctx, req, ns.quiet)
    except errors.ConchError as exc:
        return _engine_failure(ctx, exc)
    client = ctx.client
    if ns.detach:
        try:
            client.post(f"/containers/{cid}/start")
        except errors.ConchError as exc:
            return _engine_failure(ctx, exc, start_error_status(str(exc)))
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
    except errors.ConchError as exc:
        if sock is not None:
            sock.close()
        return _engine_failure(ctx, exc, start_error_status(str(exc)))
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
            ctx.client.post(f"/containers/{_q(name)}/start")
        status = _each(ctx, ns.containers, start)
        if status:
            ctx.err("Error: failed to start containers: " + ", ".join(ns.containers))
        return status
    if len(ns.containers) > 1:
        raise CommandError("you cannot start and attach multiple containers at once")
    name = ns.containers[0]
    try:
        info = _inspect(ctx, name)
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
    info = _inspect(ctx, ns.container)
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
        info = _inspect(ctx, cid)
    except errors.NotFound:
        return 0
    if (info.get("State") or {}).get("Running"):
        return 0  # detached
    return int((info.get("State") or {}).get("ExitCode", 0))


# -- exec -----------------------------------------------------------------------------------------


def cmd_exec(ctx: Context, argv: list[str]) -> int:
    from conch.cli import runopts

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
    env = runopts.env_list([line for f in ns.env_file for line in runopts.read_kv_file(f)] + ns.env)
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
    eid = client.post(f"/containers/{_q(ns.container)}/exec", body)["Id"]
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


# -- simple lifecycle verbs -------------------------------------------------------------------------


def _names_parser(ctx: Context, summary: str, usage: str = "[OPTIONS] CONTAINER [CONTAINER...]"):
    p = ctx.parser(usage, summary)
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


def cmd_stop(ctx: Context, argv: list[str], verb: str = "stop") -> int:
    summary = "Stop one or more running containers" if verb == "stop" else "Restart one or more containers"
    p = _names_parser(ctx, summary)
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time", help="Seconds to wait before killing the container")
    ns = p.parse(argv)
    params: dict[str, Any] = {}
    if ns.time is not None:
        params["t"] = ns.time
    if ns.signal:
        params["signal"] = ns.signal
    return _each(ctx, ns.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/{verb}", **params))


def cmd_restart(ctx: Context, argv: list[str]) -> int:
    return cmd_stop(ctx, argv, verb="restart")


def cmd_kill(ctx: Context, argv: list[str]) -> int:
    p = _names_parser(ctx, "Kill one or more running containers")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    ns = p.parse(argv)
    params = {"signal": ns.signal} if ns.signal else {}
    return _each(ctx, ns.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/kill", **params))


def cmd_rm(ctx: Context, argv: list[str]) -> int:
    p = _names_parser(ctx, "Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes associated with the container")
    ns = p.parse(argv)
    params: dict[str, Any] = {}
    if ns.force:
        params["force"] = 1
    if ns.volumes:
        params["v"] = 1
    if ns.link:
        params["link"] = 1
    # docker/cli: with -f, a container that is not there (or went meanwhile, as an --rm
    # one does once killed) is reported on stderr, but the exit status stays 0
    return _each(ctx, ns.containers, lambda n: ctx.client.delete(f"/containers/{_q(n)}", **params),
                 missing_ok=ns.force)


def cmd_pause(ctx: Context, argv: list[str], verb: str = "pause") -> int:
    p = _names_parser(ctx, f"{verb.capitalize()} all processes within one or more containers")
    ns = p.parse(argv)
    return _each(ctx, ns.containers, lambda n: ctx.client.post(f"/containers/{_q(n)}/{verb}"))


def cmd_unpause(ctx: Context, argv: list[str]) -> int:
    return cmd_pause(ctx, argv, verb="unpause")


def cmd_wait(ctx: Context, argv: list[str]) -> int:
    p = _names_parser(ctx, "Block until one or more containers stop, then print their exit codes")
    ns = p.parse(argv)
    return _each(ctx, ns.containers,
                 lambda n: ctx.client.post(f"/containers/{_q(n)}/wait").get("StatusCode", 0))


def cmd_rename(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER NEW_NAME", "Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    ns = p.parse(argv)
    if not ns.new_name.strip():
        raise CommandError("Error: Neither old nor new names may be empty")
    ctx.client.post(f"/containers/{_q(ns.container)}/rename", name=ns.new_name)
    return 0


def cmd_top(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER [ps OPTIONS]", "Display the running processes of a container")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv, stop_after=1)
    params = {"ps_args": " ".join(ns.rest)} if ns.rest else {}
    top = ctx.client.get(f"/containers/{_q(ns.container)}/top", **params)
    rows = [top.get("Titles") or []] + [list(r) for r in top.get("Processes") or []]
    ctx.stdout.write(fmt.tabwrite(rows, minwidth=20))
    return 0


def cmd_port(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    ns = p.parse(argv)
    info = _inspect(ctx, ns.container)
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}

    def addr(b):
        ip = b.get("HostIp") or "0.0.0.0"
        return f"[{ip}]:{b.get('HostPort')}" if ":" in ip else f"{ip}:{b.get('HostPort')}"

    if ns.port:
        key = ns.port if "/" in ns.port else f"{ns.port}/tcp"
        bindings = ports.get(key)
        if not bindings:
            raise CommandError(f"Error: No public port '{key}' published for {ns.container}")
        for b in bindings:
            ctx.out(addr(b))
        return 0

    def sort_key(k):
        port, _, proto = k.partition("/")
        return (int(port) if port.isdigit() else 0, proto)

    for key in sorted(ports, key=sort_key):
        for b in ports[key] or []:
            ctx.out(f"{key} -> {addr(b)}")
    return 0


def cmd_diff(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER", "Inspect changes to files or directories on a container's filesystem")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    kinds = {0: "C", 1: "A", 2: "D"}
    for change in ctx.client.get(f"/containers/{_q(ns.container)}/changes") or []:
        ctx.out(f"{kinds.get(change.get('Kind'), '?')} {change.get('Path')}")
    return 0


def cmd_logs(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER", "Fetch the logs of a container")
    p.add_argument("--details", action="store_true", help="Show extra details provided to logs")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--since", help="Show logs since timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end of the logs (default \"all\")")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--until", help="Show logs before a timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    info = _inspect(ctx, ns.container)
    params: dict[str, Any] = {"stdout": 1, "stderr": 1, "tail": ns.tail}
    if ns.follow:
        params["follow"] = 1
    if ns.timestamps:
        params["timestamps"] = 1
    if ns.details:
        params["details"] = 1
    if ns.since:
        params["since"] = timestamp_param(ns.since)
    if ns.until:
        params["until"] = timestamp_param(ns.until)
    chunks = ctx.client.stream_raw("GET", f"/containers/{info['Id']}/logs", params=params)
    from conch.cli.tty import demux

    out = getattr(ctx.stdout, "buffer", None)
    err = getattr(ctx.stderr, "buffer", None)
    ctx.stdout.flush()
    if (info.get("Config") or {}).get("Tty"):
        for chunk in chunks:
            ctx.out_bytes(chunk)
        return 0
    for stream, payload in demux(chunks):
        if stream == 2:
            ctx.stderr.flush()
            (err.write(payload), err.flush()) if err else ctx.err(payload.decode("utf-8", "replace"), end="")
        else:
            (out.write(payload), out.flush()) if out else ctx.out(payload.decode("utf-8", "replace"), end="")
    return 0


def timestamp_param(value: str, now: float | None = None) -> str:
    """docker's ``timetypes.GetTimestamp``: RFC 3339, a Unix time, or a duration ago."""
    import re
    from datetime import datetime, timezone

    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    if re.fullmatch(r"(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+", value):
        from conch.cli.runopts import go_duration

        return f"{now - go_duration(value) / 1e9:.9f}"
    text = value.replace("Z", "+00:00")
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f",
                    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            dt = datetime.strptime(text, pattern)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.astimezone()  # docker reads a zone-less time as local time
        return f"{dt.astimezone(timezone.utc).timestamp():.9f}"
    raise UsageError(f'invalid value for "since"/"until": {value}')


# -- stats ------------------------------------------------------------------------------------------

STATS_DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                 "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def stats_row(s: dict[str, Any], name_hint: str = "") -> fmt.Row:
    """One ``docker stats`` line from a ``GET /containers/{id}/stats`` sample."""
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - \
        (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    detail = mem.get("stats") or {}
    usage = mem.get("usage") or 0
    # docker's calculateMemUsageUnixNoCache: page cache does not count
    for key in ("total_inactive_file", "inactive_file"):
        if key in detail and detail[key] < usage:
            usage -= detail[key]
            break
    limit = mem.get("limit") or 0
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = tx = 0
    for net in (s.get("networks") or {}).values():
        rx += net.get("rx_bytes", 0)
        tx += net.get("tx_bytes", 0)
    blk_r = blk_w = 0
    for entry in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = (entry.get("op") or "").lower()
        if op == "read":
            blk_r += entry.get("value", 0)
        elif op == "write":
            blk_w += entry.get("value", 0)
    name = (s.get("name") or name_hint).lstrip("/")
    return fmt.Row(
        ID=(s.get("id") or "")[:12], Container=name_hint or (s.get("id") or "")[:12],
        Name=name or "--",
        CPUPerc=f"{cpu_pct:.2f}%",
        MemUsage=f"{fmt.bytes_size(usage)} / {fmt.bytes_size(limit)}",
        MemPerc=f"{mem_pct:.2f}%",
        NetIO=f"{fmt.human_size(rx)} / {fmt.human_size(tx)}",
        BlockIO=f"{fmt.human_size(blk_r)} / {fmt.human_size(blk_w)}",
        PIDs=str((s.get("pids_stats") or {}).get("current", 0)),
    )


def cmd_stats(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] [CONTAINER...]", "Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    ns = p.parse(argv)
    template = ns.format or STATS_DEFAULT
    from concurrent.futures import ThreadPoolExecutor

    def sample(name: str):
        try:
            return stats_row(ctx.client.get(f"/containers/{_q(name)}/stats", stream=0),
                             name if ns.containers else "")
        except errors.NotFound:
            return None

    while True:
        names = ns.containers
        if not names:
            params = {"all": 1} if ns.all else {}
            names = [c["Id"] for c in ctx.client.get("/containers/json", **params) or []]
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
            rows = [r for r in pool.map(sample, names) if r is not None]
        if ns.containers and len(rows) < len(ns.containers):
            missing = len(ns.containers) - len(rows)
            if missing and not rows:
                raise CommandError(f"Error response from daemon: No such container: {ns.containers[0]}")
        text = fmt.render(template, rows, STATS_HEADERS)
        if ns.no_stream:
            ctx.stdout.write(text)
            return 0
        ctx.stdout.write("\033[2J\033[H" + text)
        ctx.stdout.flush()
        time.sleep(0.5)  # each sample already spans ~1 s on the daemon side


# -- cp ----------------------------------------------------------------------------------------------


def _split_cp_arg(arg: str) -> tuple[str | None, str]:
    """``container:path`` or a local path (a path with '/' before ':' is local, as docker)."""
    if os.path.isabs(arg) or arg.startswith("."):
        return None, arg
    name, colon, path = arg.partition(":")
    if not colon:
        return None, arg
    return name, path


def cmd_cp(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       conch cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                   "Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output during copy")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DEST")
    ns = p.parse(argv)
    s_name, s_path = _split_cp_arg(ns.src)
    d_name, d_path = _split_cp_arg(ns.dst)
    if s_name and d_name:
        raise CommandError("copying between containers is not supported")
    if not s_name and not d_name:
        raise CommandError("must specify at least one container source")
    if s_name:
        n = copy_from_container(ctx, s_name, s_path, d_path, ns.archive)
        where = d_path
    else:
        n = copy_to_container(ctx, s_path, d_name, d_path, ns.follow_link, ns.archive)
        where = f"{d_name}:{d_path}"
    if not ns.quiet and d_path != "-" and s_path != "-":
        ctx.err(f"Successfully copied {fmt.human_size(n)} to {where}")
    return 0


# -- export / commit / update / prune ---------------------------------------------------------------


def cmd_export(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    from conch.cli.images import write_stream

    write_stream(ctx, ctx.client.stream_raw("GET", f"/containers/{_q(ns.container)}/export"), ns.output)
    return 0


def cmd_commit(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes")
    p.add_argument("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", action="store_true", default=True, help="Pause container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    ns = p.parse(argv)
    params: dict[str, Any] = {"container": ns.container, "pause": int(ns.pause)}
    if ns.reference:
        from conch.cli.images import split_repo_tag

        params["repo"], params["tag"] = split_repo_tag(ns.reference)
    if ns.message:
        params["comment"] = ns.message
    if ns.author:
        params["author"] = ns.author
    if ns.change:
        params["changes"] = ns.change
    ctx.out(ctx.client.post("/commit", **params)["Id"])
    return 0


def cmd_update(ctx: Context, argv: list[str]) -> int:
    from conch.cli import runopts

    p = _names_parser(ctx, "Update configuration of one or more containers")
    p.add_argument("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000, or 0 to disable")
    p.add_argument("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    p.add_argument("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--cpus", help="Number of CPUs")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-reservation", help="Memory soft limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    ns = p.parse(argv)
    body: dict[str, Any] = {}
    for attr, key in (("blkio_weight", "BlkioWeight"), ("cpu_period", "CpuPeriod"),
                      ("cpu_quota", "CpuQuota"), ("cpu_shares", "CpuShares"),
                      ("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems"),
                      ("pids_limit", "PidsLimit")):
        if getattr(ns, attr) is not None:
            body[key] = getattr(ns, attr)
    if ns.cpus is not None:
        body["NanoCpus"] = runopts.nano_cpus(ns.cpus)
    if ns.memory is not None:
        body["Memory"] = runopts.ram_in_bytes(ns.memory)
    if ns.memory_reservation is not None:
        body["MemoryReservation"] = runopts.ram_in_bytes(ns.memory_reservation)
    if ns.memory_swap is not None:
        body["MemorySwap"] = runopts.memory_swap(ns.memory_swap)
    if ns.restart is not None:
        body["RestartPolicy"] = runopts.restart_policy(ns.restart)
    if not body:
        raise CommandError("you must provide one or more flags when using this command")

    def update(name):
        resp = ctx.client.post(f"/containers/{_q(name)}/update", body) or {}
        for w in resp.get("Warnings") or []:
            ctx.err(w)

    return _each(ctx, ns.containers, update)


def confirm(ctx: Context, warning: str) -> bool:
    ctx.out(f"{warning}\nAre you sure you want to continue? [y/N] ", end="")
    ctx.stdout.flush()
    answer = ctx.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def cmd_prune(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS]", "Remove all stopped containers")
    p.add_argument("--filter", action="append", default=[], help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    ns = p.parse(argv)
    if not ns.force and not confirm(ctx, "WARNING! This will remove all stopped containers."):
        return 0
    params = {"filters": filters_json(ns.filter)} if ns.filter else {}
    report = ctx.client.post("/containers/prune", **params) or {}
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        ctx.out("Deleted Containers:")
        for cid in deleted:
            ctx.out(cid)
        ctx.out()
    ctx.out(f"Total reclaimed space: {fmt.human_size(report.get('SpaceReclaimed') or 0)}")
    return 0


# -- cp: the archive API ------------------------------------------------------------------------------
#
# GET  /containers/{id}/archive?path=P -> a tar of P (entries named after basename(P)) and
#      the header X-Docker-Container-Path-Stat (base64 JSON: name, size, mode, mtime,
#      linkTarget); HEAD gives the header alone; PUT extracts a tar into directory P.
# docker/cli's rules (cp.go, archive.CopyInfo): to an existing directory the source keeps
# its name; to a new path it is renamed to the target's base name; "SRC/." copies the
# contents of SRC.

_GO_MODE_DIR = 1 << 31


class _ChunkReader:
    """A read()-able file over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self.total += len(chunk)
            self._buf += chunk
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


def path_stat(ctx: Context, name: str, path: str) -> dict[str, Any] | None:
    """The container path's stat, or None when it does not exist."""
    import base64
    import json

    try:
        resp = ctx.client.request("HEAD", f"/containers/{_q(name)}/archive", params={"path": path})
    except errors.NotFound as exc:
        if "container" in str(exc).lower() and "no such container" in str(exc).lower():
            raise
        return None
    resp.close()
    raw = resp.headers.get("x-docker-container-path-stat", "")
    return json.loads(base64.b64decode(raw)) if raw else {}


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return "" if name in (".", "./") else name.rstrip("/")


def _rebase(member, old: str, new: str) -> bool:
    """Rename the root entry ``old`` to ``new``; ``new`` "" drops the root (contents only).

    Returns False for an entry to skip (the root directory itself, when only its
    contents are copied)."""
    name = _norm(member.name)
    if old:
        head, _, tail = name.partition("/")
        if head != old:
            return True
    else:
        tail = name
    if not new and not tail:
        return False
    member.name = "/".join(x for x in (new, tail) if x)
    if member.islnk() and member.linkname:
        link = _norm(member.linkname)
        lhead, _, ltail = link.partition("/")
        if not old or lhead == old:
            rest = link if not old else ltail
            member.linkname = "/".join(x for x in (new, rest) if x)
    return True


def copy_from_container(ctx: Context, name: str, src: str, dst: str, archive: bool) -> int:
    import tarfile

    resp = ctx.client.request("GET", f"/containers/{_q(name)}/archive", params={"path": src})
    if dst == "-":
        total = 0
        for chunk in resp.iter_chunks():
            ctx.out_bytes(chunk)
            total += len(chunk)
        return total
    contents_only = src.endswith("/.")
    if os.path.isdir(dst):
        target_dir, new = dst, None  # keep the source's name ...
        if contents_only:
            new = ""  # ... or copy only what is inside it
    else:
        if dst.endswith("/"):
            raise CommandError(f'Error: destination directory "{dst}" must exist')
        target_dir = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(target_dir):
            raise CommandError(f'Error: invalid output path: directory "{target_dir}" does not exist')
        new = os.path.basename(dst)
    reader = _ChunkReader(resp.iter_chunks())
    uid, gid = os.getuid(), os.getgid()
    old = None
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if old is None:
                old = _norm(member.name).partition("/")[0]
                if member.isdir() and new and os.path.isfile(dst):
                    raise CommandError("Error: cannot copy a directory to a file")
            if new is not None and not _rebase(member, old, new):
                continue
            if not archive:
                member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
            _extract(tar, member, target_dir)
    return reader.total


def _extract(tar, member, target_dir: str) -> None:
    """tarfile's "tar" extraction filter where this Python has it (3.11.4+; Debian 12
    ships 3.11.2), else the same checks by hand: no absolute names, nothing that leaves
    target_dir, links that stay inside it."""
    import tarfile

    if hasattr(tarfile, "tar_filter"):
        tar.extract(member, target_dir, filter="tar")
        return
    root = os.path.realpath(target_dir)

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    name = member.name.lstrip("/")
    if not inside(os.path.join(root, name)):
        raise CommandError(f"Error: refusing to extract {member.name!r} outside {target_dir}")
    if member.islnk() and not inside(os.path.join(root, member.linkname.lstrip("/"))):
        raise CommandError(f"Error: refusing hard link {member.name!r} -> {member.linkname!r}")
    if member.issym():
        link = member.linkname if not member.linkname.startswith("/") else None
        if link is None or not inside(os.path.join(root, os.path.dirname(name), link)):
            raise CommandError(f"Error: refusing symlink {member.name!r} -> {member.linkname!r}")
    if member.isdev():
        raise CommandError(f"Error: refusing device file {member.name!r}")
    member.mode &= 0o777 if not member.isdir() else 0o7777
    member.name = name
    tar.extract(member, target_dir)


def copy_to_container(ctx: Context, src: str, name: str, dst: str, follow: bool,
                      archive: bool) -> int:
    import tarfile
    import tempfile

    if src == "-":
        stdin = getattr(ctx.stdin, "buffer", ctx.stdin)
        ctx.client.send_file("PUT", f"/containers/{_q(name)}/archive", stdin,
                             params={"path": dst}, headers={"Content-Type": "application/x-tar"}).read()
        return 0
    contents_only = src.endswith("/.")
    src_path = src[:-2] if contents_only else src.rstrip("/") or "/"
    try:
        st = os.stat(src_path) if follow else os.lstat(src_path)
    except OSError as exc:
        raise CommandError(f"Error: lstat {os.path.abspath(src_path)}: "
                           f"{(exc.strerror or '').lower()}") from exc
    import stat as statmod

    src_is_dir = statmod.S_ISDIR(st.st_mode)
    info = path_stat(ctx, name, dst)
    if info is not None and int(info.get("mode", 0)) & _GO_MODE_DIR:
        put_dir, arcname = dst, ("" if contents_only else os.path.basename(src_path))
    else:
        if info is not None and src_is_dir:
            raise CommandError("Error: cannot copy a directory to a file")
        if info is None and dst.endswith("/"):
            raise CommandError(f'Error: destination directory "{dst}" must exist')
        put_dir, arcname = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))

    def owner(ti):
        if not archive:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
        return ti

    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                          dereference=follow) as tar:
            if arcname:
                tar.add(src_path, arcname=arcname, filter=owner)
            else:
                for entry in sorted(os.listdir(src_path)):
                    tar.add(os.path.join(src_path, entry), arcname=entry, filter=owner)
        size = buf.tell()
        buf.seek(0)
        params: dict[str, Any] = {"path": put_dir, "noOverwriteDirNonDir": True}
        if archive:
            params["copyUIDGID"] = True
        ctx.client.send_file("PUT", f"/containers/{_q(name)}/archive", buf, params=params,
                             headers={"Content-Type": "application/x-tar"}).read()
    return size
