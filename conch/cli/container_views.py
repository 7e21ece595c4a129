"""Container verbs that show: ps, top, port, diff, logs and stats (docker/cli's
``cli/command/container``), with the row builders ``--format`` renders.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context
from conch.cli.verb_common import filters_json, inspect_container, quote_path, timestamp_param


# -- ps ---------------------------------------------------------------------------------------

PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
    "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
    "State": "STATE", "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL", "Platform": "PLATFORM",
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
        methods={"Label": lambda key="": labels.get(key, ""),
                 # docker's .Platform: the image manifest's platform, a nil *Platform here
                 "Platform": fmt.nil_pointer("*formatter.Platform")},
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
    if ns.format and not ns.size:  # docker/cli buildContainerListOptions: .Size asks for sizes
        if "Size" in fmt.preflight(ns.format, ps_row({"State": ""}, trunc=True, now=time.time())):
            params["size"] = 1
    containers = ctx.client.get("/containers/json", **params) or []
    template = ns.format or PS_DEFAULT
    if ns.quiet:
        template = "{{.ID}}"
    elif ns.size and not ns.format:
        template += "\t{{.Size}}"
    now = time.time()
    rows = [ps_row(c, trunc=not ns.no_trunc, now=now) for c in containers]
    ctx.stdout.write(fmt.render(template, rows, PS_HEADERS,  # docker ps words its errors so
                                parse_prefix="failed to parse template: ",
                                exec_prefix="failed to execute template: ", default=PS_DEFAULT))
    return 0


def cmd_top(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER [ps OPTIONS]", "Display the running processes of a container")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv, stop_after=1)
    params = {"ps_args": " ".join(ns.rest)} if ns.rest else {}
    top = ctx.client.get(f"/containers/{quote_path(ns.container)}/top", **params)
    rows = [top.get("Titles") or []] + [list(r) for r in top.get("Processes") or []]
    ctx.stdout.write(fmt.tabwrite(rows, minwidth=20))
    return 0


def cmd_port(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    ns = p.parse(argv)
    info = inspect_container(ctx, ns.container)
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
    for change in ctx.client.get(f"/containers/{quote_path(ns.container)}/changes") or []:
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
    info = inspect_container(ctx, ns.container)
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
            return stats_row(ctx.client.get(f"/containers/{quote_path(name)}/stats", stream=0),
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
        text = fmt.render(template, rows, STATS_HEADERS, type_name="*container.statsContext",
                          default=STATS_DEFAULT)
        if ns.no_stream:
            ctx.stdout.write(text)
            return 0
        ctx.stdout.write("\033[2J\033[H" + text)
        ctx.stdout.flush()
        time.sleep(0.5)  # each sample already spans ~1 s on the daemon side
