"""inspect, version, info, events, system df (docker/cli ``cli/command/system`` and
``inspect``)."""

from __future__ import annotations

import sys
import time
TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context, describe_error

API_VERSION = "1.50"


def _q(value: str) -> str:
    from conch.client.lean import quote  # not urllib.parse: ~3 ms of start-up

    return quote(value, safe="/:@")


# -- inspect ----------------------------------------------------------------------------------

# object type -> (path template, query for --size)
_KINDS: dict[str, str] = {
    "container": "/containers/{}/json",
    "image": "/images/{}/json",
    "network": "/networks/{}",
    "volume": "/volumes/{}",
}


def _fetch(ctx: Context, kind: str, name: str, size: bool) -> dict[str, Any]:
    params = {"size": 1} if size and kind == "container" else None
    return ctx.client.get(_KINDS[kind].format(_q(name)), **(params or {}))


def inspect_objects(ctx: Context, names: list[str], kinds: list[str], fmt_str: str | None,
                    size: bool = False, raw: bool = True) -> int:
    """docker inspect: try each kind in order; print JSON (or the template per object).

    ``raw``: docker/cli hands the inspector the response's raw JSON too (every inspect but
    ``volume inspect``): a template that fails on the typed value is tried on the raw JSON,
    and ``-f json`` prints the raw JSON; without it, the typed value marshalled."""
    found: list[tuple[str, dict[str, Any]]] = []
    status = 0
    missing = []
    tmpl = None
    if fmt_str and fmt_str != "json":
        # parsed before any request: a bad template is a usage error (docker: 64)
        tmpl = fmt.Template(fmt_str, parse_status=64)  # inspect keeps \\t as typed
    for name in names:
        obj = None
        for kind in kinds:
            try:
                obj = _fetch(ctx, kind, name, size)
                break
            except errors.NotFound:
                continue
            except errors.ConchError as exc:
                if len(kinds) == 1:
                    raise
                # an object type the daemon does not serve (yet) is not this object
                if getattr(exc, "http_status", 500) in (404, 501):
                    continue
                raise
        if obj is None:
            missing.append(name)
            status = 1
            continue
        found.append((kind, obj))
    failures = []
    if tmpl is not None:
        for kind, obj in found:
            try:
                ctx.out(fmt.render_inspect(tmpl, obj, kind, raw=raw))
            except fmt.TemplateError as exc:
                failures.append(str(exc))
                status = 1
    elif fmt_str == "json":  # docker's JSONInspector: the raw objects, compact, in one array
        from conch.client import lean

        if raw:
            ctx.out("[" + ",".join(lean.dumps(obj, compact=True, ascii=False) for _, obj in found) + "]")
        else:
            ctx.out("[" + ",".join(fmt.marshal_typed(obj, kind) for kind, obj in found) + "]")
    else:
        objs = [obj for _, obj in found]
        ctx.out(fmt.go_json(objs, indent=4) if objs else "[]")
    if tmpl is not None and len(failures) == len(found):
        ctx.out("")  # docker's TemplateInspector.Flush: a newline when nothing was written
    what = {"container": "container", "image": "image", "volume": "volume"}.get(kinds[0]) if len(kinds) == 1 else None
    for name in missing:
        ctx.err(f"Error: No such {what or 'object'}: {name}")
    for msg in failures:
        ctx.err(msg)
    return status


def _inspect_parser(ctx: Context, summary: str, typed: bool):
    p = ctx.parser("[OPTIONS] NAME|ID [NAME|ID...]", summary)
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes if the type is container")
    if typed:
        p.add_argument("--type", help="Return JSON for specified type")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    return p


def cmd_inspect(ctx: Context, argv: list[str]) -> int:
    ns = _inspect_parser(ctx, "Return low-level information on conch objects", True).parse(argv)
    if ns.type and ns.type not in _KINDS:  # docker/cli inspect's words; checked before a request
        if ns.type in ("config", "node", "plugin", "secret", "service", "task"):
            raise CommandError(f"Error response from daemon: {ns.type} objects are not supported by conch")
        raise CommandError(f'unknown type: "{ns.type}": must be one of "config", "container", "image", '
                           '"network", "node", "plugin", "secret", "service", "task", "volume"')
    kinds = [ns.type] if ns.type else ["container", "image", "network", "volume"]
    return inspect_objects(ctx, ns.names, kinds, ns.format, ns.size)


def cmd_container_inspect(ctx: Context, argv: list[str]) -> int:
    ns = _inspect_parser(ctx, "Display detailed information on one or more containers", False).parse(argv)
    return inspect_objects(ctx, ns.names, ["container"], ns.format, ns.size)


def cmd_image_inspect(ctx: Context, argv: list[str]) -> int:
    ns = _inspect_parser(ctx, "Display detailed information on one or more images", False).parse(argv)
    return inspect_objects(ctx, ns.names, ["image"], ns.format)


# -- version / info -----------------------------------------------------------------------------


def _client_info() -> dict[str, Any]:
    import platform as _platform  # here, not at the top: it imports re (~10 ms)

    from conch.cli.main import _version

    machine = _platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "Platform": {"Name": "conch"},
        "Version": _version(),
        "ApiVersion": API_VERSION,
        "DefaultAPIVersion": API_VERSION,
        "GoVersion": "python" + _platform.python_version(),
        "Os": sys.platform if sys.platform != "linux" else "linux",
        "Arch": arch,
        "Context": "default",
    }


def cmd_version(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS]", "Show the conch version information")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    ns = p.parse(argv)
    client = _client_info()
    server = None
    server_error = None
    try:
        server = ctx.client.get("/version")
    except errors.ConchError as exc:
        server_error = describe_error(exc, ctx.host)
    if ns.format:
        fmt.render_plain(ctx, ns.format, {"Client": client, "Server": server}, "system.versionInfo",
                         name="version")
    else:
        ctx.out("Client:")
        ctx.out(f" Version:           {client['Version']}")
        ctx.out(f" API version:       {client['ApiVersion']}")
        ctx.out(f" Python version:    {sys.version.split()[0]}")  # platform.python_version()
        ctx.out(f" OS/Arch:           {client['Os']}/{client['Arch']}")
        ctx.out(f" Context:           {client['Context']}")
        if server is not None:
            ctx.out()
            name = (server.get("Platform") or {}).get("Name") or "conch"
            ctx.out(f"Server: {name}")
            for comp in server.get("Components") or [{"Name": "Engine", "Version": server.get("Version"),
                                                        "Details": {}}]:
                ctx.out(f" {comp.get('Name')}:")
                ctx.out(f"  Version:          {comp.get('Version')}")
                if comp.get("Name") == "Engine":
                    ctx.out(f"  API version:      {server.get('ApiVersion')} (minimum version "
                            f"{server.get('MinAPIVersion')})")
                    ctx.out(f"  OS/Arch:          {server.get('Os')}/{server.get('Arch')}")
                    ctx.out(f"  Experimental:     {str(bool(server.get('Experimental'))).lower()}")
                for key, value in (comp.get("Details") or {}).items():
                    if comp.get("Name") == "Engine" and key in ("ApiVersion", "MinAPIVersion", "Os", "Arch", "Experimental"):
                        continue
                    ctx.out(f"  {key + ':':<18}{value}")
    if server_error:
        ctx.err(server_error)
        return 1
    return 0


def cmd_info(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS]", "Display system-wide information")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    ns = p.parse(argv)
    tmpl = fmt.Template("{{json .}}" if ns.format == "json" else ns.format,
                        parse_status=64) if ns.format else None
    info = ctx.client.get("/info")
    if tmpl is not None:
        fmt.render_plain(ctx, ns.format, info, "system.dockerInfo", tmpl=tmpl)
        return 0
    o = ctx.out
    o("Client:")
    o(f" Version:    {_client_info()['Version']}")
    o(f" Context:    default")
    o(f" Debug Mode: {str(ctx.debug).lower()}")
    o()
    o("Server:")
    o(f" Containers: {info.get('Containers', 0)}")
    o(f"  Running: {info.get('ContainersRunning', 0)}")
    o(f"  Paused: {info.get('ContainersPaused', 0)}")
    o(f"  Stopped: {info.get('ContainersStopped', 0)}")
    o(f" Images: {info.get('Images', 0)}")
    for label, key in (("Server Version", "ServerVersion"), ("Storage Driver", "Driver"),
                       ("Logging Driver", "LoggingDriver"), ("Cgroup Driver", "CgroupDriver"),
                       ("Cgroup Version", "CgroupVersion")):
        if key in info:
            o(f" {label}: {info[key]}")
    for k, v in info.get("DriverStatus") or []:
        o(f"  {k}: {v}")
    runtimes = info.get("Runtimes") or {}
    if runtimes:
        o(f" Runtimes: {' '.join(sorted(runtimes))}")
        o(f" Default Runtime: {info.get('DefaultRuntime', '')}")
    for label, key in (("Kernel Version", "KernelVersion"), ("Operating System", "OperatingSystem"),
                       ("OSType", "OSType"), ("Architecture", "Architecture"), ("CPUs", "NCPU")):
        if key in info:
            o(f" {label}: {info[key]}")
    if "MemTotal" in info:
        o(f" Total Memory: {fmt.bytes_size(info['MemTotal'])}")
    for label, key in (("Name", "Name"), ("ID", "ID"), ("Docker Root Dir", "DockerRootDir")):
        if key in info:
            o(f" {label}: {info[key]}")
    o(f" Debug Mode: {str(bool(info.get('Debug'))).lower()}")
    if info.get("Labels"):
        o(" Labels:")
        for label in info["Labels"]:
            o(f"  {label}")
    o(f" Experimental: {str(bool(info.get('ExperimentalBuild'))).lower()}")
    o(f" Live Restore Enabled: {str(bool(info.get('LiveRestoreEnabled'))).lower()}")
    for w in info.get("Warnings") or []:
        ctx.err(w)
    return 0


# -- events --------------------------------------------------------------------------------------


def event_line(ev: dict[str, Any]) -> str:
    """docker's ``printOutput``: local RFC 3339 time with nanoseconds, type, action, id, attrs."""
    from datetime import datetime

    nano = ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000
    dt = datetime.fromtimestamp(nano // 1_000_000_000).astimezone()
    offset = dt.strftime("%z")
    zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{nano % 1_000_000_000:09d}" + zone
    actor = ev.get("Actor") or {}
    line = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', ev.get('id', ''))}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return line


def cmd_events(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import filters_json, timestamp_param

    p = ctx.parser("[OPTIONS]", "Get real time events from the server")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    ns = p.parse(argv)
    params: dict[str, Any] = {}
    if ns.since:
        params["since"] = timestamp_param(ns.since)
    if ns.until:
        params["until"] = timestamp_param(ns.until)
    if ns.filter:
        params["filters"] = filters_json(ns.filter)
    tmpl = None
    if ns.format:
        tmpl = fmt.events_template(ns.format)
    for ev in ctx.client.stream_json("GET", "/events", params=params):
        ctx.out(tmpl.render(fmt.typed_value(ev, "*events.Message")) if tmpl else event_line(ev))
        ctx.stdout.flush()
    return 0


# -- system df --------------------------------------------------------------------------------------

DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
DF_DEFAULT = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


def df_rows(df: dict[str, Any]) -> list[fmt.Row]:
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []
    cache = df.get("BuildCache") or []
    rows = []

    def pct(part, total):
        return f" ({int(part * 100 / total)}%)" if total else ""

    img_size = df.get("LayersSize") or sum(i.get("Size", 0) for i in images)
    img_active = sum(1 for i in images if (i.get("Containers") or 0) > 0)
    used = sum(i.get("Size", 0) - max(i.get("SharedSize", 0), 0) for i in images
               if (i.get("Containers") or 0) > 0)
    reclaim = max(img_size - used, 0)
    rows.append(fmt.Row(Type="Images", TotalCount=str(len(images)), Active=str(img_active),
                        Size=fmt.human_size(img_size, 4),
                        Reclaimable=fmt.human_size(reclaim, 4) + pct(reclaim, img_size)))
    c_size = sum(c.get("SizeRw", 0) or 0 for c in containers)
    c_active = sum(1 for c in containers if c.get("State") in ("running", "paused", "restarting"))
    c_reclaim = sum(c.get("SizeRw", 0) or 0 for c in containers
                    if c.get("State") not in ("running", "paused", "restarting"))
    rows.append(fmt.Row(Type="Containers", TotalCount=str(len(containers)), Active=str(c_active),
                        Size=fmt.human_size(c_size, 4),
                        Reclaimable=fmt.human_size(c_reclaim, 4) + pct(c_reclaim, c_size)))
    v_size = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes)
    v_active = sum(1 for v in volumes if ((v.get("UsageData") or {}).get("RefCount") or 0) > 0)
    v_reclaim = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes
                    if not (v.get("UsageData") or {}).get("RefCount"))
    rows.append(fmt.Row(Type="Local Volumes", TotalCount=str(len(volumes)), Active=str(v_active),
                        Size=fmt.human_size(v_size, 4),
                        Reclaimable=fmt.human_size(v_reclaim, 4) + pct(v_reclaim, v_size)))
    b_size = sum(b.get("Size", 0) for b in cache)
    b_active = sum(1 for b in cache if b.get("InUse"))
    b_reclaim = sum(b.get("Size", 0) for b in cache if not b.get("InUse") and not b.get("Shared"))
    rows.append(fmt.Row(Type="Build Cache", TotalCount=str(len(cache)), Active=str(b_active),
                        Size=fmt.human_size(b_size, 4), Reclaimable=fmt.human_size(b_reclaim, 4)))
    if "LogsSize" in df:
        # conch's extra row (docker omits logs): one log per container; a removed
        # container's log goes with it, so reclaimable is what stopped ones hold.
        l_size = df["LogsSize"] or 0
        l_reclaim = sum(c.get("LogsSize", 0) or 0 for c in containers
                        if c.get("State") not in ("running", "paused", "restarting"))
        rows.append(fmt.Row(Type="Container Logs", TotalCount=str(len(containers)),
                            Active=str(c_active), Size=fmt.human_size(l_size, 4),
                            Reclaimable=fmt.human_size(l_reclaim, 4) + pct(l_reclaim, l_size)))
    return rows


def cmd_df(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS]", "Show conch disk usage")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    ns = p.parse(argv)
    df = ctx.client.get("/system/df")
    ctx.stdout.write(fmt.render(ns.format or DF_DEFAULT, df_rows(df), DF_HEADERS,
                                type_name="*formatter.diskUsageImagesContext", default=DF_DEFAULT))
    if ns.verbose:
        from conch.cli.images import IMAGES_HEADERS, image_rows

        ctx.out("\nImages space usage:\n")
        ctx.stdout.write(fmt.render(
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t"
            "{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
            image_rows(df.get("Images") or []), IMAGES_HEADERS))
    return 0


# -- prune: system and builder ----------------------------------------------------------------
def cmd_builder_prune(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import confirm

    p = ctx.parser("[OPTIONS]", "Remove build cache")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused build cache, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    ns = p.parse(argv)
    if not ns.force and not confirm(ctx, "WARNING! This will remove all dangling build cache."):
        return 0
    _print_build_prune(ctx, ctx.client.post("/build/prune") or {})
    ctx.out(f"Total:\t{fmt.human_size(0)}")
    return 0


def _print_build_prune(ctx: Context, report: dict) -> int:
    _print_list(ctx, "Deleted build cache objects:", report.get("CachesDeleted"))
    return int(report.get("SpaceReclaimed") or 0)


def cmd_system_prune(ctx: Context, argv: list[str]) -> int:
    """docker system prune: stopped containers, unused networks, dangling (-a: unused)
    images, (--volumes) unused anonymous volumes, build cache -- one endpoint each, in
    docker's order, with docker's warning and report."""
    from conch.cli.verb_common import confirm, filters_json

    p = ctx.parser("[OPTIONS]", "Remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("--filter", action="append", default=[], help='Provide filter values (e.g. "label=<key>=<value>")')
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    ns = p.parse(argv)
    what = ["all stopped containers", "all networks not used by at least one container"]
    if ns.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if ns.all
                else "all dangling images")
    what.append("unused build cache" if ns.all else "all dangling build cache")
    warning = "WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in what)
    if not ns.force and not confirm(ctx, warning):
        return 0
    filters = filters_json(ns.filter) if ns.filter else None
    params = {"filters": filters} if filters else {}
    reclaimed = 0
    report = ctx.client.post("/containers/prune", **params) or {}
    _print_list(ctx, "Deleted Containers:", report.get("ContainersDeleted"))
    reclaimed += int(report.get("SpaceReclaimed") or 0)
    report = ctx.client.post("/networks/prune", **params) or {}
    _print_list(ctx, "Deleted Networks:", report.get("NetworksDeleted"))
    if ns.volumes:
        report = ctx.client.post("/volumes/prune", **params) or {}
        _print_list(ctx, "Deleted Volumes:", report.get("VolumesDeleted"))
        reclaimed += int(report.get("SpaceReclaimed") or 0)
    image_filters = list(ns.filter) + [f"dangling={'false' if ns.all else 'true'}"]
    report = ctx.client.post("/images/prune", filters=filters_json(image_filters)) or {}
    items = [f"untagged: {i['Untagged']}" if i.get("Untagged") else f"deleted: {i['Deleted']}"
             for i in report.get("ImagesDeleted") or [] if i.get("Untagged") or i.get("Deleted")]
    _print_list(ctx, "Deleted Images:", items)
    reclaimed += int(report.get("SpaceReclaimed") or 0)
    reclaimed += _print_build_prune(ctx, ctx.client.post("/build/prune") or {})
    ctx.out(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0


def _print_list(ctx: Context, title: str, items) -> None:
    if items:
        ctx.out(title)
        for item in items:
            ctx.out(item)
        ctx.out()
