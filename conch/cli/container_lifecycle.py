"""Container verbs that change a container's state: stop, restart, kill, rm, pause,
unpause, wait, rename, update and container prune (docker/cli's ``cli/command/container``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context
from conch.cli.verb_common import confirm, each_name, filters_json, quote_path


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
    return each_name(ctx, ns.containers, lambda n: ctx.client.post(f"/containers/{quote_path(n)}/{verb}", **params))


def cmd_restart(ctx: Context, argv: list[str]) -> int:
    return cmd_stop(ctx, argv, verb="restart")


def cmd_kill(ctx: Context, argv: list[str]) -> int:
    p = _names_parser(ctx, "Kill one or more running containers")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    ns = p.parse(argv)
    params = {"signal": ns.signal} if ns.signal else {}
    return each_name(ctx, ns.containers, lambda n: ctx.client.post(f"/containers/{quote_path(n)}/kill", **params))


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
    return each_name(ctx, ns.containers, lambda n: ctx.client.delete(f"/containers/{quote_path(n)}", **params),
                 missing_ok=ns.force)


def cmd_pause(ctx: Context, argv: list[str], verb: str = "pause") -> int:
    p = _names_parser(ctx, f"{verb.capitalize()} all processes within one or more containers")
    ns = p.parse(argv)
    return each_name(ctx, ns.containers, lambda n: ctx.client.post(f"/containers/{quote_path(n)}/{verb}"))


def cmd_unpause(ctx: Context, argv: list[str]) -> int:
    return cmd_pause(ctx, argv, verb="unpause")


def cmd_wait(ctx: Context, argv: list[str]) -> int:
    p = _names_parser(ctx, "Block until one or more containers stop, then print their exit codes")
    ns = p.parse(argv)
    return each_name(ctx, ns.containers, lambda n: _wait_status(ctx, n))


def _wait_status(ctx: Context, name: str) -> int:
    # a body without StatusCode is a lost wait: an error, never a default of 0
    result = ctx.client.post(f"/containers/{quote_path(name)}/wait")
    if not isinstance(result, dict) or "StatusCode" not in result:
        raise errors.Unavailable("unexpected EOF")
    return int(result["StatusCode"])


def cmd_rename(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("CONTAINER NEW_NAME", "Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    ns = p.parse(argv)
    if not ns.new_name.strip():
        raise CommandError("Error: Neither old nor new names may be empty")
    ctx.client.post(f"/containers/{quote_path(ns.container)}/rename", name=ns.new_name)
    return 0


def cmd_update(ctx: Context, argv: list[str]) -> int:
    from conch.cli import flag_values

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
        body["NanoCpus"] = flag_values.nano_cpus(ns.cpus)
    if ns.memory is not None:
        body["Memory"] = flag_values.ram_in_bytes(ns.memory)
    if ns.memory_reservation is not None:
        body["MemoryReservation"] = flag_values.ram_in_bytes(ns.memory_reservation)
    if ns.memory_swap is not None:
        body["MemorySwap"] = flag_values.memory_swap(ns.memory_swap)
    if ns.restart is not None:
        body["RestartPolicy"] = flag_values.restart_policy(ns.restart)
    if not body:
        raise CommandError("you must provide one or more flags when using this command")

    def update(name):
        resp = ctx.client.post(f"/containers/{quote_path(name)}/update", body) or {}
        for w in resp.get("Warnings") or []:
            ctx.err(w)

    return each_name(ctx, ns.containers, update)


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
