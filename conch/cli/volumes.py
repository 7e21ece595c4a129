"""Volume verbs: volume create, ls, inspect, rm, prune (docker/cli's
``cli/command/volume``)."""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context, UsageError, describe_error

LS_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE",
              "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
              "Availability": "AVAILABILITY", "Group": "GROUP", "Status": "STATUS"}
LS_DEFAULT = "table {{.Driver}}\t{{.Name}}"


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f'invalid argument "{item}" for "{what}" flag: invalid key')
        out[key] = value
    return out


def cmd_create(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] [VOLUME]", "Create a volume")
    p.add_argument("-d", "--driver", default="local", help='Specify volume driver name (default "local")')
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("--name", help="Specify volume name")
    p.add_argument("name_arg", nargs="?", metavar="VOLUME")
    ns = p.parse(argv)
    if ns.name and ns.name_arg and ns.name != ns.name_arg:
        raise UsageError("conflicting options: cannot specify a volume-name through both --name and as a positional arg")
    body = {"Name": ns.name_arg or ns.name or "", "Driver": ns.driver,
            "DriverOpts": _key_values(ns.opt, "--opt"), "Labels": _key_values(ns.label, "--label")}
    v = ctx.client.post("/volumes/create", body) or {}
    ctx.out(v.get("Name", ""))
    return 0


def _row(v: dict[str, Any]) -> fmt.Row:
    labels = v.get("Labels") or {}
    return fmt.Row(Driver=v.get("Driver", ""), Name=v.get("Name", ""), Scope=v.get("Scope", "local"),
                   Mountpoint=v.get("Mountpoint", ""),
                   # cluster volumes' fields: "N/A" for a local one, as docker's volumeContext
                   Availability="N/A", Group="N/A", Status="N/A",
                   Labels=",".join(f"{k}={val}" for k, val in labels.items()),
                   Links="N/A", Size="N/A",
                   methods={"Label": lambda key: labels.get(key, "")})


def cmd_ls(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import filters_json

    p = ctx.parser("[OPTIONS]", "List volumes")
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. \"dangling=true\")")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    ns = p.parse(argv)
    params = {"filters": filters_json(ns.filter)} if ns.filter else {}
    report = ctx.client.get("/volumes", **params) or {}
    volumes = sorted(report.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    for w in report.get("Warnings") or []:
        ctx.err(w)
    if ns.quiet and not ns.format:
        ctx.stdout.write("".join(v.get("Name", "") + "\n" for v in volumes))
        return 0
    ctx.stdout.write(fmt.render(ns.format or LS_DEFAULT, [_row(v) for v in volumes], LS_HEADERS,
                                type_name="*formatter.volumeContext", default=LS_DEFAULT))
    return 0


def cmd_inspect(ctx: Context, argv: list[str]) -> int:
    from conch.cli.system import inspect_objects

    p = ctx.parser("[OPTIONS] VOLUME [VOLUME...]", "Display detailed information on one or more volumes")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    ns = p.parse(argv)
    return inspect_objects(ctx, ns.names, ["volume"], ns.format, raw=False)  # docker: VolumeInspect, no raw


def cmd_rm(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    ns = p.parse(argv)
    status = 0
    for name in ns.names:
        try:
            ctx.client.request("DELETE", f"/volumes/{_q(name)}",
                               params={"force": 1} if ns.force else {}).read()
        except errors.ConchError as exc:
            ctx.err(describe_error(exc, ctx.host))
            status = 1
            continue
        ctx.out(name)
    return status


def cmd_prune(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import confirm, filters_json

    p = ctx.parser("[OPTIONS]", "Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[], help='Provide filter values (e.g. "label=<label>")')
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    ns = p.parse(argv)
    warning = ("WARNING! This will remove all local volumes not used by at least one container."
               if ns.all else
               "WARNING! This will remove anonymous local volumes not used by at least one container.")
    if not ns.force and not confirm(ctx, warning):
        return 0
    filters = list(ns.filter) + (["all=true"] if ns.all else [])
    params = {"filters": filters_json(filters)} if filters else {}
    report = ctx.client.post("/volumes/prune", **params) or {}
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        ctx.out("Deleted Volumes:")
        for name in deleted:
            ctx.out(name)
        ctx.out()
    ctx.out(f"Total reclaimed space: {fmt.human_size(report.get('SpaceReclaimed') or 0)}")
    return 0


__all__ = ["CommandError", "cmd_create", "cmd_inspect", "cmd_ls", "cmd_prune", "cmd_rm"]
