"""``conchd``: serve the Docker Engine API on a unix socket, in the foreground.

    conchd [--data-root DIR] [--exec-root DIR] [-H unix:///path.sock]
           [--runtime conch|runc|crun|PATH] [--shim PATH] [--log-level LEVEL]
           [--insecure-registry HOST[:PORT]|CIDR ...]

Two conchd with different roots and sockets run side by side without touching each other:
everything they own lives under their own --data-root and --exec-root (cgroups are
named after container ids, which are random). A second conchd on the same data root is
refused (a lock file). SIGTERM and SIGINT stop it cleanly: the API closes, monitors stop,
containers keep running under their shims and are found again at the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys

log = logging.getLogger("conchd")

DEFAULT_DATA_ROOT = "/var/lib/conch"
DEFAULT_EXEC_ROOT = "/run/conch"
DEFAULT_HOST = "unix:///run/conch/conch.sock"
DEFAULT_TLS_DIR = "/etc/conch/tls"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conchd", description="conch's daemon (Docker Engine API)")
    p.add_argument("--config-file", default=None,
                   help="daemon configuration file (default /etc/conch/daemon.json): docker's "
                        "daemon.json keys; a key also given as a flag is an error")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    p.add_argument("--exec-root", default=DEFAULT_EXEC_ROOT)
    p.add_argument("-H", "--host", action="append", default=None,
                   help="unix:///path, tcp://ADDR:PORT or fd:// (systemd socket activation); "
                        f"repeatable (default {DEFAULT_HOST})")
    p.add_argument("--tls", action="store_true", help="serve tcp:// hosts over TLS")
    p.add_argument("--tlsverify", action="store_true",
                   help="TLS, and refuse clients without a certificate signed by --tlscacert")
    p.add_argument("--tlscacert", default=DEFAULT_TLS_DIR + "/ca.pem")
    p.add_argument("--tlscert", default=DEFAULT_TLS_DIR + "/cert.pem")
    p.add_argument("--tlskey", default=DEFAULT_TLS_DIR + "/key.pem")
    p.add_argument("--metrics-addr", default="",
                   help="serve Prometheus metrics on HOST:PORT at /metrics (off by default)")
    p.add_argument("--runtime", "--default-runtime", dest="runtime", default="conch",
                   help="conch, runc, crun, or a path")
    p.add_argument("--add-runtime", action="append", default=[], metavar="NAME=PATH",
                   help="another OCI runtime containers may ask for (HostConfig.Runtime, "
                        "docker run --runtime NAME); repeatable. conch, runc and crun are "
                        "offered when installed")
    p.add_argument("--shim", default="", help="path of conch-shim (default: next to python)")
    p.add_argument("--warm-runtime", action="store_true",
                   help="keep a pre-started Python conch-runtime for the next start (~10 MiB "
                        "while idle); only containers its C front leaves to Python gain")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]|CIDR",
                   help="registry reached over plain HTTP when HTTPS fails (repeatable); "
                        "localhost and 127.0.0.0/8 always are")
    p.add_argument("--bridge-name", default="conch0",
                   help="the default bridge network's device (default conch0)")
    p.add_argument("--bip", default="172.17.0.1/16",
                   help="the default bridge's address and prefix (default 172.17.0.1/16)")
    p.add_argument("--nft-table", default="conch",
                   help="this daemon's nftables table (default conch)")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="default log driver options for containers (repeatable)")
    p.add_argument("--default-ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                   help="default ulimits for containers (repeatable)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "warn", "error", "critical"])
    return p


def parse(argv) -> argparse.Namespace:
    """Flags, then the configuration file (conch.daemon.config) where no flag was given."""
    from conch.daemon import config

    p = parser()
    args = p.parse_args(argv)
    path = args.config_file or config.DEFAULT_CONFIG_FILE
    try:
        data = config.load(path, required=args.config_file is not None)
        args = config.merge(p, argv, args, data, path)
    except config.ConfigError as exc:
        raise SystemExit(f"conchd: {exc}") from None
    if not args.host:
        args.host = [DEFAULT_HOST]
    return args


def find_runtime(name: str) -> str:
    if "/" in name:
        return name
    if name == "conch":
        here = os.path.join(os.path.dirname(sys.executable), "conch-runtime")
        if os.path.exists(here):
            return here
        name = "conch-runtime"
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"conchd: runtime {name!r} not found")
    return found


def find_shim(given: str) -> str:
    candidates = [given] if given else [
        os.path.join(os.path.dirname(sys.executable), "conch-shim"),
        os.path.join(os.path.dirname(__file__), "..", "..", "build", "conch-shim"),
        shutil.which("conch-shim") or "",
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    raise SystemExit("conchd: conch-shim not found: run `make setup` (it builds build/conch-shim)")


def find_init() -> str:
    """conch-init for `run --init` (optional: without it --init is refused clearly)."""
    for path in (os.path.join(os.path.dirname(sys.executable), "conch-init"),
                 os.path.join(os.path.dirname(__file__), "..", "..", "build", "conch-init"),
                 shutil.which("conch-init") or ""):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return ""


def _lock(data_root: str) -> int:
    fd = os.open(os.path.join(data_root, "conchd.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"conchd: another conchd is using --data-root {data_root}") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _own_kernel_objects(args):
    """Lock the default bridge, its subnet and the nft table (conch.daemon.owner): a second
    conchd sharing one is refused here, before it touches the kernel."""
    import atexit

    from conch.daemon.owner import OwnerConflict, OwnerLocks

    owners = OwnerLocks(bridge=args.bridge_name, bip=args.bip, nft_table=args.nft_table)
    try:
        owners.acquire()
    except OwnerConflict as exc:
        raise SystemExit(f"conchd: {exc}") from None
    atexit.register(owners.release)  # a start that fails later still drops its lock files
    return owners


def build_engine(args, tasks):
    """The composition root: every concrete object conchd uses is made here."""
    from pathlib import Path

    from conch.content.store import ContentStore
    from conch.engine.containers.service import Paths
    from conch.engine.engine import Engine
    from conch.images.store import ImageService
    from conch.metadata.db import Database
    from conch.snapshots.overlay import OverlaySnapshotter
    from conch.volumes.store import VolumeStore

    root = Path(args.data_root)
    paths = Paths(args.data_root, args.exec_root)
    content = ContentStore(root / "content")
    snapshotter = OverlaySnapshotter(root / "snapshots")
    db = Database(root / "metadata.db")
    images = ImageService(root / "images", content, snapshotter, db)
    engine = Engine(paths=paths, db=db, images=images, snapshotter=snapshotter,
                  runtime=find_runtime(args.runtime), shim=find_shim(args.shim), init=find_init(),
                  runtime_name=args.runtime if "/" not in args.runtime else "custom", tasks=tasks,
                  volumes=VolumeStore(root / "volumes"),
                  registries=_registries(args.insecure_registry), networks=build_networks(args),
                  runtimes=runtimes(args.add_runtime), warm_runtime=args.warm_runtime)
    engine.containers.default_log_opts = log_opts(args.log_opt)
    engine.containers.default_ulimits = default_ulimits(args.default_ulimit)
    return engine


def _registries(insecure):
    """The Registries, made at the first pull/push/login/search: an idle conchd does not
    import the registry client (its idle RSS, issue 3)."""
    def make():
        from conch.registry.client.transport import Registries

        return Registries(insecure)
    return make


def log_opts(items) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"conchd: --log-opt {item!r}: want KEY=VALUE")
        out[key] = value
    return out


def default_ulimits(items) -> tuple[tuple[str, int, int], ...]:
    """``NAME=SOFT[:HARD]`` (go-units ParseUlimit) -> (name, soft, hard)."""
    out = []
    for item in items:
        name, sep, limits = item.partition("=")
        soft_s, colon, hard_s = limits.partition(":")
        try:
            soft = int(soft_s)
            hard = int(hard_s) if colon else soft
        except ValueError:
            soft = hard = -2
        if not sep or not name or soft < -1 or hard < -1 or (hard != -1 and soft > hard):
            raise SystemExit(f"conchd: invalid default ulimit {item!r}: want NAME=SOFT[:HARD]")
        out.append((name, soft, hard))
    return tuple(out)


def runtimes(added) -> dict[str, str]:
    """The runtimes a container may name (besides the default): conch-runtime, runc and
    crun where installed, then ``--add-runtime NAME=PATH``."""
    out = {}
    for name in ("conch", "runc", "crun"):
        try:
            out[name] = find_runtime(name)
        except SystemExit:
            pass
    for item in added:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"conchd: --add-runtime {item!r}: want NAME=PATH")
        out[name] = find_runtime(path if "/" in path else path)
    return out


def build_networks(args):
    """The network service: nftables table, port reservations, socket-level publishing
    for host processes (eBPF, falls back to nft alone), embedded DNS."""
    from conch.engine.network.service import NetworkService
    from conch.network.dns import DnsServer
    from conch.network.firewall import Firewall
    from conch.network.ports import PortReservation
    from conch.network.socklb import SocketLB

    return NetworkService(data_root=args.data_root, exec_root=args.exec_root, events=None,
                          firewall=Firewall(args.nft_table), ports=PortReservation(),
                          dns_factory=lambda lookup, client_upstreams: DnsServer(
                              lookup=lookup, client_upstreams=client_upstreams),
                          bridge_name=args.bridge_name, bridge_cidr=args.bip, socklb=SocketLB())


def _remove_cgroup_parent() -> None:
    """Containers' cgroups live under /conch (conch.engine.containers.ociconfig): the daemon owns
    that parent and removes it when no container (of any conchd) is left in it."""
    from conch.cgroups import remove_empty
    from conch.errors import ConchError

    try:
        remove_empty("/conch")
    except ConchError as exc:
        log.warning("removing the /conch cgroup parent: %s", exc)


def _sweep_snapshots(engine, exec_root: str) -> None:
    """What a crash left in the snapshotter: a build step's scratch root and snapshot,
    and directories no snapshot row names (a layer extraction's scratch directory)."""
    from conch.engine.build.step_images import sweep_leftovers

    sweep_leftovers(engine.containers.snapshotter, exec_root)
    engine.containers.snapshotter.cleanup()
    # the build cache is never fsynced: entries a crash left dangling go, and the step
    # snapshots of deferred stages no entry names (conch.engine.build.step_results)
    from pathlib import Path

    from conch.engine.build.step_results import reconcile

    reconcile(Path(engine.containers.paths.data_root) / "build-cache", engine.images,
              engine.containers.snapshotter)
    # blobs and committed snapshots no image references (a crash between writing and
    # naming, a failed pull or build): nothing writes yet, so everything is collected
    from conch.images import gc

    gc.collect(engine.images.service)


class TaskOwner:
    """Owns the engine's background tasks (container monitors, exec watchers): they are
    cancelled together when the daemon stops."""

    def __init__(self):
        self._tasks: set[asyncio.Task] = set()

    def create_task(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def serve(args) -> None:
    from conch.api import (routes_archive, routes_build, routes_containers, routes_exec,
                           routes_networks, routes_volumes)
    from conch.api.server import ROUTE_MODULES, create_app
    from conch.daemon.listeners import ListenError, notify, serving, tls_context, validate

    try:
        validate(args.host, args.tls or args.tlsverify)
        tls = tls_context(args)
        if args.metrics_addr:
            from conch.daemon.metrics import parse_addr

            parse_addr(args.metrics_addr)
    except (ListenError, ValueError) as exc:
        raise SystemExit(f"conchd: {exc}") from None
    for d in (args.data_root, args.exec_root):
        os.makedirs(d, mode=0o711, exist_ok=True)
    lock_fd = _lock(args.data_root)
    owners = _own_kernel_objects(args)
    tasks = TaskOwner()
    engine = build_engine(args, tasks)
    # networks first (bridges, rules, live sandboxes found again), then the containers'
    # reconcile (dead ones tear their sandbox down), then what no running container owns
    await engine.networks.start()
    await engine.containers.reconcile()
    await asyncio.to_thread(_sweep_snapshots, engine, args.exec_root)
    await engine.networks.reconcile(c.id for c in engine.containers.list() if c.state.running)
    engine.containers.refill_warm()
    from conch.daemon.memory import trim_when_idle

    tasks.create_task(trim_when_idle())
    from conch.engine.scaling.autoscaler import Autoscaler  # x-autoscale services (issue 12)

    tasks.create_task(engine.networks.resume_shared())  # replicas not yet in their port's balancer
    tasks.create_task(Autoscaler(engine.containers, engine.events,
                                 os.path.join(args.data_root, "scaling"),
                                 networks=engine.networks).run())
    app = create_app(engine, modules=ROUTE_MODULES + (routes_containers, routes_exec, routes_archive,
                                                          routes_volumes, routes_networks,
                                                          routes_build))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # streams (logs -f, events, attach) must not hold SIGTERM up: 0.5 s, then closed
        metrics = None
        if args.metrics_addr:
            from conch.daemon.metrics import Metrics

            metrics = Metrics(engine)
            metrics.instrument(app)  # before the API's runner freezes the middlewares
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(serving(app, args.host, tls=tls,
                                                        shutdown_timeout=0.5))
                if metrics is not None:
                    from conch.daemon.metrics import serving_metrics

                    await stack.enter_async_context(serving_metrics(metrics, args.metrics_addr))
            except (ListenError, OSError, ValueError) as exc:
                raise SystemExit(f"conchd: {exc}") from None
            log.info("conchd ready (data-root %s, runtime %s)", args.data_root, engine.runtime)
            notify("READY=1")  # systemd's Type=notify (contrib/systemd/conchd.service)
            await stop.wait()
            notify("STOPPING=1")
    finally:
        await tasks.cancel_all()
        if engine.containers.warm is not None:  # their shims and runtimes exit on EOF
            engine.containers.warm.close()
        await engine.networks.close()
        owners.release()  # after the bridge and table are gone, never before
        _remove_cgroup_parent()
        os.close(lock_fd)
    log.info("conchd stopped")


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    level = "warning" if args.log_level == "warn" else args.log_level
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("conchd: must run as root", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(args))
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(exc.code, file=sys.stderr)
            return 1
    except Exception as exc:  # noqa: BLE001 - the top: say what went wrong, exit non-zero
        from conch.errors import ConchError

        if isinstance(exc, ConchError):
            print(f"conchd: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
