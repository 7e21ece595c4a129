"""``conch compose``: docker compose v2's command line over the Engine API.

``main(ctx, argv, run_verb)``: ``ctx`` is the conch CLI's context (client, streams);
``run_verb(argv)`` runs a plain ``conch`` verb (``exec``, ``start -a``), so a container's
terminal handling is the CLI's own and not written twice. Errors are ``conch.errors``
kinds; the CLI prints them. Exit codes are docker compose's: 0, 1 on failure, the
container's status for ``run``/``exec``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from conch import errors

__all__ = ["main"]

COMMANDS = {
    "build": "Build or rebuild services", "config": "Parse, resolve and render compose file in canonical format",
    "down": "Stop and remove containers, networks", "exec": "Execute a command in a running container",
    "images": "List images used by the created containers", "logs": "View output from containers",
    "port": "Print the public port for a port binding", "ps": "List containers",
    "pull": "Pull service images", "push": "Push service images",
    "restart": "Restart service containers", "run": "Run a one-off command on a service",
    "scale": "Scale services", "start": "Start services", "stop": "Stop services",
    "top": "Display the running processes", "up": "Create and start containers",
    "version": "Show the Docker Compose version information", "ls": "List running compose projects",
    "rm": "Removes stopped service containers",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # docker compose's wording, exit status 1 (not argparse's 2)
        raise errors.InvalidArgument(message)


def _global_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="conch compose", add_help=False)
    p.add_argument("-f", "--file", action="append", default=[])
    p.add_argument("-p", "--project-name")
    p.add_argument("--profile", action="append", default=[])
    p.add_argument("--env-file")
    p.add_argument("--project-directory")
    p.add_argument("--ansi", default="auto")
    p.add_argument("--progress", default="auto")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _help(out) -> int:
    out.write("Usage:  conch compose [OPTIONS] COMMAND\n\nDefine and run multi-container "
              "applications with conch\n\nOptions:\n  -f, --file stringArray   Compose "
              "configuration files\n  -p, --project-name string  Project name\n"
              "      --profile stringArray   Specify a profile to enable\n"
              "      --env-file string   Specify an alternate environment file\n\nCommands:\n")
    for name in sorted(COMMANDS):
        out.write(f"  {name:<10} {COMMANDS[name]}\n")
    return 0


def main(ctx, argv: list[str], run_verb=None) -> int:
    try:
        return _main(ctx, argv, run_verb)
    except ProjectError as exc:
        ctx.err(str(exc))
        return 1


def _main(ctx, argv: list[str], run_verb=None) -> int:
    g, rest = _global_parser().parse_known_args(argv)
    # globals may only come before the command (compose v2's rule); what follows is its own
    cmd_index = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if g.help or cmd_index is None:
        return _help(ctx.stdout)
    g, _ = _global_parser().parse_known_args(argv[:cmd_index])
    command, args = argv[cmd_index], argv[cmd_index + 1:]
    if command == "version":
        from conch.compose.convert import COMPOSE_VERSION

        short = "--short" in args
        ctx.out(COMPOSE_VERSION if short else f"conch compose version v{COMPOSE_VERSION}")
        return 0
    if command == "ls":
        return _ls(ctx, args)
    return globals()[f"_cmd_{command}"](ctx, g, args, run_verb)


class ProjectError(Exception):
    """A project that cannot be loaded (a bad file): printed as is, exit 1 — not an
    "Error response from daemon" (compose v2 prints the file's problem plainly)."""


def _load(ctx, g, services: list[str] | None = None):
    from conch.compose.loader import load_project

    try:
        return load_project(files=g.file, project_name=g.project_name, profiles=g.profile,
                            env_file=g.env_file, project_directory=g.project_directory,
                            stdin=ctx.stdin, enable_services=services)
    except errors.ConchError as exc:
        raise ProjectError(str(exc)) from exc


def _compose(ctx, g, services=None):
    from conch.compose.project import Compose

    return Compose(_load(ctx, g, services), ctx.client, err=ctx.stderr, out=ctx.stdout)


def _sub(name: str) -> _Parser:
    return _Parser(prog=f"conch compose {name}")


def _scale_args(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        svc, sep, n = item.partition("=")
        if not sep or not n.isdigit():
            raise errors.InvalidArgument(f"invalid --scale {item!r}: SERVICE=NUM")
        out[svc] = int(n)
    return out


def _of_services(containers, services: list[str] | None) -> list[dict]:
    """The containers (``/containers/json`` items) of ``services``; all when none named."""
    return [x for x in containers
            if not services or x["Labels"].get("com.docker.compose.service") in services]


def _print_table(ctx, rows: list[list]) -> None:
    """``rows`` (the header first) in columns three spaces apart, as compose prints them."""
    table = [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        ctx.out("   ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cmd_up(ctx, g, args, run_verb) -> int:
    p = _sub("up")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-V", "--renew-anon-volumes", action="store_true")
    for flag in ("--build", "--no-build", "--force-recreate", "--no-recreate",
                 "--no-deps", "--remove-orphans", "--wait", "--no-start", "--quiet-pull",
                 "--always-recreate-deps", "--no-color", "--abort-on-container-exit"):
        p.add_argument(flag, action="store_true")
    p.add_argument("--scale", action="append", default=[])
    p.add_argument("-t", "--timeout", type=int)
    p.add_argument("--wait-timeout", type=float, default=120.0)
    p.add_argument("--pull", default="missing")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    c.up(a.services or None, scale=_scale_args(a.scale), build=a.build, no_build=a.no_build,
         force_recreate=a.force_recreate, no_recreate=a.no_recreate, no_deps=a.no_deps,
         remove_orphans=a.remove_orphans, wait=a.wait, wait_timeout=a.wait_timeout,
         no_start=a.no_start, timeout=a.timeout, pull=a.pull)
    if a.detach or a.wait or a.no_start:
        return 0
    try:  # attached: follow the logs until Ctrl-C, then stop (compose v2's behaviour)
        return _follow_logs(ctx, c, a.services or None, follow=True, timestamps=False, tail="all")
    except KeyboardInterrupt:
        c.each(a.services or None, "stop", timeout=a.timeout)
        return 130


def _cmd_down(ctx, g, args, run_verb) -> int:
    p = _sub("down")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("--rmi", choices=["local", "all"])
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("-t", "--timeout", type=int)
    a = p.parse_args(args)
    _compose(ctx, g).down(volumes=a.volumes, rmi=a.rmi, remove_orphans=a.remove_orphans,
                          timeout=a.timeout)
    return 0


def _cmd_scale(ctx, g, args, run_verb) -> int:
    p = _sub("scale")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("pairs", nargs="+")
    a = p.parse_args(args)
    counts = _scale_args(a.pairs)
    _compose(ctx, g, list(counts)).scale(counts, no_deps=a.no_deps)
    return 0


def _cmd_build(ctx, g, args, run_verb) -> int:
    p = _sub("build")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--pull", action="store_true")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    if a.quiet:
        c.out = None
    c.build(a.services or None, no_cache=a.no_cache)
    return 0


def _cmd_pull(ctx, g, args, run_verb) -> int:
    p = _sub("pull")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--ignore-pull-failures", action="store_true")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    _compose(ctx, g, a.services).pull(a.services or None)
    return 0


def _cmd_push(ctx, g, args, run_verb) -> int:
    p = _sub("push")
    p.add_argument("--ignore-push-failures", action="store_true")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    for name in a.services or list(c.p.services):
        if c.p.services[name].get("image"):
            c.say(f"Pushing {name}", "Pushing")
            c.api.push(c.p.services[name]["image"])
    return 0


def _cmd_config(ctx, g, args, run_verb) -> int:
    p = _sub("config")
    p.add_argument("--services", dest="list_services", action="store_true")
    p.add_argument("--volumes", action="store_true")
    p.add_argument("--profiles", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", default="yaml")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    proj = _load(ctx, g, a.services)
    if a.quiet:
        return 0
    if a.list_services:
        for name in proj.services:
            ctx.out(name)
        return 0
    if a.volumes:
        for v in proj.volumes:
            ctx.out(v)
        return 0
    if a.profiles:
        for prof in sorted({x for s in {**proj.services, **proj.disabled}.values() for x in s["profiles"]}):
            ctx.out(prof)
        return 0
    model = {"name": proj.name, **{k: v for k, v in proj.model.items() if k != "name"}}
    model["services"] = {k: v for k, v in (model.get("services") or {}).items() if k in proj.services}
    if a.format == "json":
        ctx.out(json.dumps(model, indent=2))
    else:
        import yaml

        ctx.out(yaml.safe_dump(model, sort_keys=False, default_flow_style=False), end="")
    return 0


def _cmd_ps(ctx, g, args, run_verb) -> int:
    p = _sub("ps")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--services", dest="list_services", action="store_true")
    p.add_argument("--format", default="table")
    p.add_argument("--status", action="append", default=[])
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    items = [x for x in _of_services(c.containers(all=True), a.services)
             if (a.all or x.get("State") == "running" or a.status)
             and (not a.status or x.get("State") in a.status)]
    if a.quiet:
        for x in items:
            ctx.out(x["Id"])
        return 0
    if a.list_services:
        for s in dict.fromkeys(x["Labels"]["com.docker.compose.service"] for x in items):
            ctx.out(s)
        return 0
    rows = []
    for x in items:
        ports = ", ".join(f"{pp.get('IP', '0.0.0.0')}:{pp['PublicPort']}->{pp['PrivatePort']}/{pp['Type']}"
                          if pp.get("PublicPort") else f"{pp['PrivatePort']}/{pp['Type']}"
                          for pp in x.get("Ports") or ())
        labels = x["Labels"]
        auto = ""
        if labels.get("io.conch.autoscale.max_replicas"):
            auto = (f"autoscale {labels.get('io.conch.autoscale.min_replicas', '1')}-"
                    f"{labels['io.conch.autoscale.max_replicas']}@"
                    f"{labels.get('io.conch.autoscale.target_cpu_percent', '?')}%cpu")
            if labels.get("io.conch.autoscale.cpu_percent"):  # conchd's last measure
                auto += f" (at {labels['io.conch.autoscale.cpu_percent']}%)"
        row = {"Name": x["Names"][0].lstrip("/"), "Image": x["Image"], "Command": x.get("Command", ""),
               "Service": labels.get("com.docker.compose.service", ""), "Created": x.get("Created"),
               "State": x.get("State"), "Status": x.get("Status", ""), "Ports": ports,
               "ID": x["Id"], "Project": labels.get("com.docker.compose.project"), "Autoscale": auto}
        rows.append(row)
    if a.format == "json":
        for r in rows:
            ctx.out(json.dumps(r))
        return 0
    cols = ["NAME", "IMAGE", "COMMAND", "SERVICE", "STATUS", "PORTS"]
    keys = ["Name", "Image", "Command", "Service", "Status", "Ports"]
    if any(r["Autoscale"] for r in rows):
        cols.append("AUTOSCALE")
        keys.append("Autoscale")
    _print_table(ctx, [cols] + [[(f'"{r[k][:20]}"' if k == "Command" else str(r[k])) for k in keys]
                                for r in rows])
    return 0


def _ls(ctx, args) -> int:
    items = ctx.client.get("/containers/json", all=True, filters={"label": ["com.docker.compose.project"]})
    projects: dict[str, dict] = {}
    for x in items:
        name = x["Labels"]["com.docker.compose.project"]
        entry = projects.setdefault(name, {"states": {}, "files": x["Labels"].get(
            "com.docker.compose.project.config_files", "")})
        entry["states"][x["State"]] = entry["states"].get(x["State"], 0) + 1
    ctx.out(f"{'NAME':<20}{'STATUS':<20}CONFIG FILES")
    for name in sorted(projects):
        st = ", ".join(f"{k}({v})" for k, v in sorted(projects[name]["states"].items()))
        ctx.out(f"{name:<20}{st:<20}{projects[name]['files']}")
    return 0


def _each(action: str):
    def cmd(ctx, g, args, run_verb) -> int:
        p = _sub(action)
        p.add_argument("-t", "--timeout", type=int)
        p.add_argument("services", nargs="*")
        a = p.parse_args(args)
        _compose(ctx, g, a.services).each(a.services or None, action, timeout=a.timeout)
        return 0
    return cmd


_cmd_start, _cmd_stop, _cmd_restart = _each("start"), _each("stop"), _each("restart")


def _cmd_rm(ctx, g, args, run_verb) -> int:
    p = _sub("rm")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-s", "--stop", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    for x in _of_services(c.containers(), a.services):
        if x.get("State") == "running":
            if not a.stop:
                continue
            c.api.stop(x["Id"])
        c.api.remove(x["Id"], volumes=a.volumes)
        c.say(f"Container {x['Names'][0].lstrip('/')}", "Removed")
    return 0


def _cmd_logs(ctx, g, args, run_verb) -> int:
    p = _sub("logs")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--no-log-prefix", action="store_true")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    return _follow_logs(ctx, c, a.services or None, follow=a.follow, timestamps=a.timestamps,
                        tail=a.tail, prefix=not a.no_log_prefix)


def _follow_logs(ctx, c, services, *, follow: bool, timestamps: bool, tail: str,
                 prefix: bool = True) -> int:
    """Each container's log lines with compose's ``name  | `` prefix; with ``follow``
    one thread per container (the streams are independent sockets)."""
    import threading

    targets = _of_services(c.containers(), services)
    width = max((len(x["Names"][0]) - 1 for x in targets), default=0)
    lock = threading.Lock()

    def pump(x: dict) -> None:
        name = x["Names"][0].lstrip("/")
        params = {"stdout": True, "stderr": True, "follow": follow, "timestamps": timestamps,
                  "tail": tail}
        chunks = c.api.c.stream_raw("GET", f"/containers/{x['Id']}/logs", params=params)
        info = c.api.inspect(x["Id"])
        stream = _frames(chunks) if not info["Config"].get("Tty") else ((1, b) for b in chunks)
        pending = b""
        for _, payload in stream:
            pending += payload
            *lines, pending = pending.split(b"\n")
            with lock:
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    ctx.out(f"{name:<{width}}  | {text}" if prefix else text)
                ctx.stdout.flush()
        if pending:
            with lock:
                text = pending.decode("utf-8", "replace")
                ctx.out(f"{name:<{width}}  | {text}" if prefix else text)

    if not follow:
        for x in targets:
            pump(x)
        return 0
    threads = [threading.Thread(target=pump, args=(x,), daemon=True) for x in targets]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return 0


def _frames(chunks):
    """docker's stdcopy frames (8-byte header: stream, 0, 0, 0, big-endian size) from a
    chunk iterator: (stream, payload)."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            yield buf[0], buf[8:8 + size]
            buf = buf[8 + size:]


def _cmd_exec(ctx, g, args, run_verb) -> int:
    p = _sub("exec")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--index", type=int, default=1)
    p.add_argument("service")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(args)
    c = _compose(ctx, g, [a.service])
    target = c.find(a.service, a.index)
    verb = ["exec"]
    if a.detach:
        verb.append("-d")
    elif not a.no_tty and sys.stdin.isatty() and sys.stdout.isatty():
        verb.append("-it")
    else:
        verb.append("-i")
    for e in a.env:
        verb += ["-e", e]
    if a.user:
        verb += ["-u", a.user]
    if a.workdir:
        verb += ["-w", a.workdir]
    if a.privileged:
        verb.append("--privileged")
    return run_verb(verb + [target["Id"], *a.command])


def _cmd_run(ctx, g, args, run_verb) -> int:
    import secrets

    from conch.compose import convert

    p = _sub("run")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--name")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("--service-ports", action="store_true")
    p.add_argument("--entrypoint")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("service")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(args)
    c = _compose(ctx, g, [a.service])
    if not a.no_deps:
        deps = [d for d in c.p.services[a.service]["depends_on"] if d in c.p.services]
        if deps:
            c.up(deps, no_recreate=True)
    names = c.ensure_networks([a.service])
    c.ensure_volumes([a.service])
    c.build([a.service], only_missing=True)
    c.pull([a.service], missing_only=True)
    oneoff = secrets.token_hex(6)
    extra_env = dict(e.split("=", 1) if "=" in e else (e, os.environ.get(e, "")) for e in a.env)
    body = convert.create_body(c.p, a.service, 1, image=c.image_of(a.service), net_names=names,
                               oneoff=oneoff, command=a.command or None, extra_env=extra_env,
                               ports=a.service_ports)
    if a.entrypoint is not None:
        import shlex

        body["Entrypoint"] = shlex.split(a.entrypoint)
    if a.user:
        body["User"] = a.user
    if a.workdir:
        body["WorkingDir"] = a.workdir
    tty = not a.no_tty and not a.detach and sys.stdin.isatty() and sys.stdout.isatty()
    body.update(Tty=tty, OpenStdin=not a.detach, AttachStdin=not a.detach,
                AttachStdout=not a.detach, AttachStderr=not a.detach, StdinOnce=not a.detach)
    endpoints = body["NetworkingConfig"]["EndpointsConfig"]
    first = body["HostConfig"].get("NetworkMode")
    body["NetworkingConfig"] = {"EndpointsConfig": {k: v for k, v in endpoints.items() if k == first}}
    if a.rm:
        body["HostConfig"]["AutoRemove"] = True
    name = a.name or convert.container_name(c.p.name, a.service, 1, oneoff=oneoff)
    cid = c.api.create(name, body)
    for net, ep in endpoints.items():
        if net != first:
            c.api.connect(net, cid, ep)
    if a.detach:
        c.api.start(cid)
        ctx.out(name)
        return 0
    return run_verb(["start", "-a", "-i", cid])


def _cmd_top(ctx, g, args, run_verb) -> int:
    p = _sub("top")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    for x in _of_services(c.containers(all=False), a.services):
        top = c.api.c.get(f"/containers/{x['Id']}/top")
        ctx.out(x["Names"][0].lstrip("/"))
        _print_table(ctx, [top["Titles"]] + top["Processes"])
        ctx.out("")
    return 0


def _cmd_port(ctx, g, args, run_verb) -> int:
    p = _sub("port")
    p.add_argument("--protocol", default="tcp")
    p.add_argument("--index", type=int, default=1)
    p.add_argument("service")
    p.add_argument("private_port")
    a = p.parse_args(args)
    c = _compose(ctx, g, [a.service])
    info = c.api.inspect(c.find(a.service, a.index)["Id"])
    bindings = (info["NetworkSettings"].get("Ports") or {}).get(f"{a.private_port}/{a.protocol}") or []
    if not bindings:
        raise errors.NotFound(f"no port {a.private_port}/{a.protocol} for container "
                              f"{info['Name'].lstrip('/')}")
    b = bindings[0]
    ctx.out(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
    return 0


def _cmd_images(ctx, g, args, run_verb) -> int:
    p = _sub("images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("services", nargs="*")
    a = p.parse_args(args)
    c = _compose(ctx, g, a.services)
    rows = [["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]]
    for x in _of_services(c.containers(), a.services):
        img = c.api.image(x["ImageID"]) or {}
        ref = x["Image"]
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        iid = (img.get("Id") or x["ImageID"]).removeprefix("sha256:")[:12]
        if a.quiet:
            ctx.out(iid)
            continue
        size = img.get("Size", 0)
        rows.append([x["Names"][0].lstrip("/"), repo, tag, iid, f"{size / 1e6:.3g}MB"])
    if not a.quiet:
        _print_table(ctx, rows)
    return 0
