"""Network verbs: network create, ls, inspect, rm, prune, connect, disconnect (docker/cli's
``cli/command/network``)."""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context, UsageError, describe_error

LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
              "CreatedAt": "CREATED AT"}
LS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f'invalid argument "{item}" for "{flag}" flag: invalid key')
        out[key] = value
    return out


def cmd_create(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] NETWORK", "Create a network")
    A = p.add_argument
    A("-d", "--driver", default="bridge", help='Driver to manage the Network (default "bridge")')
    A("--subnet", action="append", default=[], help="Subnet in CIDR format that represents a network segment")
    A("--gateway", action="append", default=[], help="IPv4 or IPv6 Gateway for the master subnet")
    A("--ip-range", action="append", default=[], help="Allocate container ip from a sub-range")
    A("--internal", action="store_true", help="Restrict external access to the network")
    A("--attachable", action="store_true", help="Enable manual container attachment")
    A("--ipv6", action="store_true", help="Enable or disable IPv6 networking")
    A("--ipam-driver", default="default", help='IP Address Management Driver (default "default")')
    A("--ipam-opt", action="append", default=[], help="Set IPAM driver specific options")
    A("--label", action="append", default=[], help="Set metadata on a network")
    A("-o", "--opt", action="append", default=[], help="Set driver specific options")
    A("name", metavar="NETWORK")
    ns = p.parse(argv)
    if len(ns.gateway) > len(ns.subnet) or len(ns.ip_range) > len(ns.subnet):
        raise UsageError("every ip-range or gateway must have a corresponding subnet")
    config = []
    for i, subnet in enumerate(ns.subnet):
        item = {"Subnet": subnet}
        if i < len(ns.gateway):
            item["Gateway"] = ns.gateway[i]
        if i < len(ns.ip_range):
            item["IPRange"] = ns.ip_range[i]
        config.append(item)
    body = {"Name": ns.name, "Driver": ns.driver, "Internal": ns.internal,
            "Attachable": ns.attachable, "EnableIPv6": ns.ipv6,
            "IPAM": {"Driver": ns.ipam_driver, "Config": config,
                     "Options": _key_values(ns.ipam_opt, "--ipam-opt")},
            "Options": _key_values(ns.opt, "--opt"), "Labels": _key_values(ns.label, "--label")}
    out = ctx.client.post("/networks/create", body) or {}
    ctx.out(out.get("Id", ""))
    return 0


def _go_time(rfc3339: str) -> str:
    """time.Time's String(), as docker's networkContext.CreatedAt prints it."""
    from conch.cli.gotemplate.typed import go_time

    return go_time(rfc3339) if rfc3339 else "0001-01-01 00:00:00 +0000 UTC"


def _row(n: dict[str, Any], trunc: bool) -> fmt.Row:
    labels = n.get("Labels") or {}
    return fmt.Row(ID=n.get("Id", "")[:12] if trunc else n.get("Id", ""), Name=n.get("Name", ""),
                   Driver=n.get("Driver", ""), Scope=n.get("Scope", "local"),
                   IPv4=str(bool(n.get("EnableIPv4", True))).lower(),
                   IPv6=str(bool(n.get("EnableIPv6"))).lower(),
                   Internal=str(bool(n.get("Internal"))).lower(),
                   Labels=",".join(f"{k}={v}" for k, v in labels.items()),
                   CreatedAt=_go_time(n.get("Created", "")),
                   methods={"Label": lambda key: labels.get(key, "")})


def cmd_ls(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import filters_json

    p = ctx.parser("[OPTIONS]", "List networks")
    p.add_argument("-f", "--filter", action="append", default=[], help='Provide filter values (e.g. "driver=bridge")')
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    ns = p.parse(argv)
    params = {"filters": filters_json(ns.filter)} if ns.filter else {}
    nets = sorted(ctx.client.get("/networks", **params) or [], key=lambda n: n.get("Name", ""))
    rows = [_row(n, not ns.no_trunc) for n in nets]
    if ns.quiet and not ns.format:
        ctx.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    ctx.stdout.write(fmt.render(ns.format or LS_DEFAULT, rows, LS_HEADERS,
                                type_name="*network.networkContext", default=LS_DEFAULT))
    return 0


def cmd_inspect(ctx: Context, argv: list[str]) -> int:
    from conch.cli.system import inspect_objects

    p = ctx.parser("[OPTIONS] NETWORK [NETWORK...]", "Display detailed information on one or more networks")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    ns = p.parse(argv)
    return inspect_objects(ctx, ns.names, ["network"], ns.format)


def cmd_rm(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] NETWORK [NETWORK...]", "Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    ns = p.parse(argv)
    status = 0
    for name in ns.names:
        try:
            ctx.client.request("DELETE", f"/networks/{_q(name)}").read()
        except errors.NotFound as exc:
            if not ns.force:
                ctx.err(describe_error(exc, ctx.host))
                status = 1
            continue
        except errors.ConchError as exc:
            ctx.err(describe_error(exc, ctx.host))
            status = 1
            continue
        ctx.out(name)
    return status


def cmd_prune(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import confirm, filters_json

    p = ctx.parser("[OPTIONS]", "Remove all unused networks")
    p.add_argument("--filter", action="append", default=[], help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    ns = p.parse(argv)
    if not ns.force and not confirm(ctx, "WARNING! This will remove all custom networks not used "
                                         "by at least one container."):
        return 0
    params = {"filters": filters_json(ns.filter)} if ns.filter else {}
    report = ctx.client.post("/networks/prune", **params) or {}
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        ctx.out("Deleted Networks:")
        for name in deleted:
            ctx.out(name)
    return 0


def cmd_connect(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] NETWORK CONTAINER", "Connect a container to a network")
    p.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
    p.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    p.add_argument("--link", action="append", default=[], help="Add link to another container")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    endpoint: dict[str, Any] = {"Aliases": ns.alias or None, "Links": ns.link or None}
    if ns.ip or ns.ip6:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ns.ip), ("IPv6Address", ns.ip6)) if v}
    ctx.client.post(f"/networks/{_q(ns.network)}/connect",
                    {"Container": ns.container, "EndpointConfig": endpoint})
    return 0


def cmd_disconnect(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    ns = p.parse(argv)
    ctx.client.post(f"/networks/{_q(ns.network)}/disconnect",
                    {"Container": ns.container, "Force": ns.force})
    return 0


__all__ = ["CommandError", "cmd_connect", "cmd_create", "cmd_disconnect", "cmd_inspect",
           "cmd_ls", "cmd_prune", "cmd_rm"]
