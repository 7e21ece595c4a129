"""Converging a loaded :class:`~conch.compose.loader.Project` on the engine: ``up``,
``down``, ``scale`` and the per-container verbs, over :class:`conch.compose.engine_ops.Api`.

``up`` in docker compose v2's order: networks and volumes first (created when missing,
labelled with the project), images (built or pulled), then services in ``depends_on``
order; before a service starts, each dependency's condition is waited for
(``service_started``, ``service_healthy``, ``service_completed_successfully``). A service's
containers are converged one by one: a container whose ``config-hash`` label differs from
the service's (or ``--force-recreate``) is replaced under the same number, missing numbers
are created, surplus ones (highest numbers first) stopped and removed, stopped ones started.

Replicas that publish the same host port share it: conchd spreads new connections over
the healthy replicas and takes a replica out of the balancer before it stops it (drain), so
scaling down loses no request (see ``conch.engine.network.shared_ports``).
"""

from __future__ import annotations

from itertools import groupby

from conch import errors
from conch.compose import convert
from conch.compose.engine_ops import Api
from conch.compose.loader import Project

__all__ = ["Compose", "service_order"]

_NUM = convert.LABEL["container-number"]
_HASH = convert.LABEL["config-hash"]
_SVC = convert.LABEL["service"]


def service_order(project: Project, only: list[str] | None = None) -> list[str]:
    """Services in dependency order (dependencies first); ``only`` pulls in their deps."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise errors.InvalidArgument(f"dependency cycle detected: {' -> '.join(chain + (name,))}")
        state[name] = 1
        for dep in project.services.get(name, {}).get("depends_on", {}):
            if dep in project.services:
                visit(dep, chain + (name,))
        state[name] = 2
        order.append(name)

    for name in (only or project.services):
        if name not in project.services:
            raise errors.NotFound(f"no such service: {name}")
        visit(name, ())
    return order


def _num(c: dict) -> int:
    try:
        return int(c["Labels"].get(_NUM, "0"))
    except ValueError:
        return 0


class Compose:
    def __init__(self, project: Project, client, *, err=None, out=None) -> None:
        self.p = project
        self.api = Api(client)
        self.err = err
        self.out = out
        import threading

        self._say_lock = threading.Lock()

    def say(self, what: str, status: str) -> None:
        if self.err is not None:
            with self._say_lock:  # replicas are handled by parallel threads
                self.err.write(f" {what}  {status}\n")
                self.err.flush()

    # -- names --------------------------------------------------------------------------

    def net_names(self) -> dict[str, str]:
        nets = dict(self.p.networks)
        nets.setdefault("default", {})
        return {k: convert.network_name(self.p.name, k, v) for k, v in nets.items()}

    def image_of(self, service: str) -> str:
        return convert.image_name(self.p.name, service, self.p.services[service])

    # -- resources ----------------------------------------------------------------------

    def ensure_networks(self, services: list[str]) -> dict[str, str]:
        names = self.net_names()
        used = {n for s in services for n in self.p.services[s]["networks"]}
        for key in sorted(used):
            spec = self.p.networks.get(key, {})
            name = names[key]
            existing = self.api.network(name)
            if spec.get("external"):
                if existing is None:
                    raise errors.NotFound(f"network {name} declared as external, but could not be found")
                continue
            if existing is not None:
                continue
            ipam = spec.get("ipam") or {}
            body = {"Name": name, "Driver": spec.get("driver") or "bridge", "CheckDuplicate": True,
                    "Internal": bool(spec.get("internal")), "Attachable": bool(spec.get("attachable")),
                    "Options": spec.get("driver_opts") or {},
                    "Labels": {**(spec.get("labels") or {}), convert.LABEL["project"]: self.p.name,
                               convert.LABEL["network"]: key,
                               convert.LABEL["version"]: convert.COMPOSE_VERSION}}
            if ipam.get("config"):
                body["IPAM"] = {"Driver": ipam.get("driver") or "default",
                                "Config": [{"Subnet": c.get("subnet"), "Gateway": c.get("gateway"),
                                            "IPRange": c.get("ip_range")} for c in ipam["config"]]}
            self.api.create_network(body)
            self.say(f"Network {name}", "Created")
        return names

    def ensure_volumes(self, services: list[str]) -> None:
        used = {v["source"] for s in services for v in self.p.services[s]["volumes"]
                if v["type"] == "volume" and v["source"]}
        for key in sorted(used):
            spec = self.p.volumes.get(key, {})
            name = convert.volume_name(self.p.name, key, spec)
            if self.api.volume(name) is not None:
                continue
            if spec.get("external"):
                raise errors.NotFound(f"external volume \"{name}\" not found")
            self.api.create_volume({
                "Name": name, "Driver": spec.get("driver") or "local",
                "DriverOpts": spec.get("driver_opts") or {},
                "Labels": {**(spec.get("labels") or {}), convert.LABEL["project"]: self.p.name,
                           convert.LABEL["volume"]: key,
                           convert.LABEL["version"]: convert.COMPOSE_VERSION}})
            self.say(f"Volume \"{name}\"", "Created")

    # -- images -------------------------------------------------------------------------

    def build(self, services: list[str] | None = None, *, no_cache: bool = False,
              only_missing: bool = False) -> None:
        for name in services or list(self.p.services):
            svc = self.p.services[name]
            if not svc.get("build"):
                continue
            tag = self.image_of(name)
            if only_missing and self.api.image(tag) is not None:
                continue
            self.say(f"Service {name}", "Building")
            labels = {convert.LABEL["project"]: self.p.name, convert.LABEL["service"]: name,
                      **(svc["build"].get("labels") or {})}
            self.api.build(svc["build"], tag, labels, self.out if not only_missing else None,
                           no_cache=no_cache)
            self.say(f"Service {name}", "Built")

    def pull(self, services: list[str] | None = None, *, missing_only: bool = False) -> None:
        for name in services or list(self.p.services):
            svc = self.p.services[name]
            if not svc.get("image") or (svc.get("build") and missing_only):
                continue
            if missing_only and self.api.image(svc["image"]) is not None:
                continue
            self.say(f"{name}", "Pulling")
            self.api.pull(svc["image"], self.err)
            self.say(f"{name}", "Pulled")

    # -- containers ---------------------------------------------------------------------

    def containers(self, service: str | None = None, *, all: bool = True) -> list[dict]:
        return self.api.containers(self.p.name, service=service, all=all)

    def _create(self, service: str, number: int, names: dict[str, str]) -> str:
        svc = self.p.services[service]
        body = convert.create_body(self.p, service, number, image=self.image_of(service),
                                   net_names=names)
        endpoints = body["NetworkingConfig"]["EndpointsConfig"]
        first = body["HostConfig"]["NetworkMode"]
        extra = {k: v for k, v in endpoints.items() if k != first}
        body["NetworkingConfig"] = {"EndpointsConfig": {k: v for k, v in endpoints.items() if k == first}}
        name = convert.container_name(self.p.name, service, number, svc)
        cid = self.api.create(name, body)
        for net, ep in extra.items():
            self.api.connect(net, cid, ep)
        self.say(f"Container {name}", "Created")
        return cid

    def _start(self, cid: str, name: str) -> None:
        self.say(f"Container {name}", "Starting")
        self.api.start(cid)
        self.say(f"Container {name}", "Started")

    def _remove(self, c: dict, *, timeout: int | None = None) -> None:
        name = c["Names"][0].lstrip("/")
        if c.get("State") == "running":
            self.say(f"Container {name}", "Stopping")
            self.api.stop(c["Id"], timeout)
            self.say(f"Container {name}", "Stopped")
        self.say(f"Container {name}", "Removing")
        self.api.remove(c["Id"])
        self.say(f"Container {name}", "Removed")

    def wait_dependencies(self, service: str, timeout: float = 120.0) -> None:
        for dep, spec in self.p.services[service]["depends_on"].items():
            if dep not in self.p.services:
                continue
            cond = spec["condition"]
            for c in self.containers(dep):
                name = c["Names"][0].lstrip("/")
                if cond == "service_healthy":
                    self.say(f"Container {name}", "Waiting")
                    info = self.api.wait_state(c["Id"], _healthy, timeout, "to be healthy")
                    if ((info["State"].get("Health") or {}).get("Status")) != "healthy":
                        raise errors.ConchError(f"dependency failed to start: container {name} is unhealthy")
                    self.say(f"Container {name}", "Healthy")
                elif cond == "service_completed_successfully":
                    self.say(f"Container {name}", "Waiting")
                    info = self.api.wait_state(c["Id"], _exited, timeout, "to complete")
                    code = info["State"]["ExitCode"]
                    if code != 0:
                        raise errors.ConchError(f"service \"{dep}\" didn't complete successfully: exit {code}")
                    self.say(f"Container {name}", "Exited")

    def converge(self, service: str, replicas: int, names: dict[str, str], *,
                 force_recreate: bool = False, no_recreate: bool = False,
                 start: bool = True, timeout: int | None = None) -> None:
        svc = self.p.services[service]
        want_hash = convert.config_hash(svc)
        # a rebuilt or re-pulled image is a change too (compose v2 compares image IDs)
        image = self.api.image(self.image_of(service))
        image_id = image["Id"] if image else None
        current = self.containers(service)
        by_num = {}
        for c in current:
            n = _num(c)
            if n in by_num or n < 1:  # a duplicate number: keep one
                self._remove(c, timeout=timeout)
                continue
            by_num[n] = c
        # surplus first, highest numbers first (conchd drains each before it stops it);
        # replicas are independent, so they are removed/created in parallel as compose does
        surplus = []
        for n in sorted(by_num, reverse=True):
            if len(by_num) <= replicas:
                break
            surplus.append(by_num.pop(n))
        _parallel([lambda c=c: self._remove(c, timeout=timeout) for c in surplus])
        jobs = []
        for n in sorted(by_num):
            c = by_num[n]
            stale = (c["Labels"].get(_HASH) != want_hash or force_recreate
                     or (image_id is not None and c.get("ImageID") not in (None, image_id)))
            if stale and not no_recreate:
                self.say(f"Container {c['Names'][0].lstrip('/')}", "Recreate")
                jobs.append(lambda c=c, n=n: (self._remove(c, timeout=timeout),
                                              self._create_start(service, n, names, start)))
            elif start and c.get("State") != "running":
                jobs.append(lambda c=c: self._start(c["Id"], c["Names"][0].lstrip("/")))
            else:
                self.say(f"Container {c['Names'][0].lstrip('/')}", "Running")
        free = (n for n in range(1, 1 << 20) if n not in by_num)
        if svc.get("container_name") and replicas > 1:
            raise errors.InvalidArgument(f"service {service!r}: container_name "
                                         f"{svc['container_name']!r} cannot be scaled")
        for _ in range(replicas - len(by_num)):
            jobs.append(lambda n=next(free): self._create_start(service, n, names, start))
        _parallel(jobs)

    def _create_start(self, service: str, n: int, names: dict[str, str], start: bool) -> None:
        cid = self._create(service, n, names)
        if start:
            self._start(cid, convert.container_name(self.p.name, service, n, self.p.services[service]))

    def desired_replicas(self, service: str, scale: dict[str, int]) -> int:
        if service in scale:
            return scale[service]
        svc = self.p.services[service]
        auto = svc.get("x-autoscale")
        if auto:
            # conchd's autoscaler owns the count between min and max: keep what runs
            lo, hi = int(auto.get("min_replicas", 1)), int(auto.get("max_replicas", 1))
            running = len([c for c in self.containers(service) if c.get("State") == "running"])
            return min(max(running, lo), hi)
        return svc["replicas"]

    def up(self, services: list[str] | None = None, *, scale: dict[str, int] | None = None,
           build: bool = False, no_build: bool = False, force_recreate: bool = False,
           no_recreate: bool = False, no_deps: bool = False, remove_orphans: bool = False,
           wait: bool = False, wait_timeout: float = 120.0, no_start: bool = False,
           timeout: int | None = None, pull: str = "missing") -> None:
        scale = scale or {}
        order = service_order(self.p, services) if not no_deps or not services else list(services)
        for name, n in scale.items():
            if name not in self.p.services:
                raise errors.NotFound(f"no such service: {name}")
        names = self.ensure_networks(order)
        self.ensure_volumes(order)
        if build:
            self.build(order)
        elif not no_build:
            self.build(order, only_missing=True)
        if pull != "never":
            self.pull(order, missing_only=pull != "always")
        if remove_orphans:
            self.remove_orphans(timeout=timeout)
        for name in order:
            if not no_start:
                self.wait_dependencies(name)
            self.converge(name, self.desired_replicas(name, scale), names,
                          force_recreate=force_recreate and (not services or name in services),
                          no_recreate=no_recreate, start=not no_start, timeout=timeout)
        if wait:
            self.wait_running(order, wait_timeout)

    def wait_running(self, services: list[str], timeout: float) -> None:
        for name in services:
            for c in self.containers(name):
                info = self.api.wait_state(c["Id"], _ready, timeout, "to be running/healthy")
                health = (info["State"].get("Health") or {}).get("Status")
                if health == "unhealthy" or (not info["State"]["Running"] and info["State"]["ExitCode"]):
                    raise errors.ConchError(f"container {info['Name'].lstrip('/')} is "
                                            f"{health or 'exited'}")

    def remove_orphans(self, *, timeout: int | None = None) -> None:
        for c in self.containers():
            svc = c["Labels"].get(_SVC)
            if svc not in self.p.services:
                self._remove(c, timeout=timeout)

    def orphans(self) -> list[dict]:
        return [c for c in self.containers() if c["Labels"].get(_SVC) not in self.p.services]

    def scale(self, counts: dict[str, int], *, no_deps: bool = False) -> None:
        names = self.ensure_networks(list(counts))
        for name, n in counts.items():
            if name not in self.p.services:
                raise errors.NotFound(f"no such service: {name}")
            self.converge(name, n, names, no_recreate=True)

    def down(self, *, volumes: bool = False, rmi: str | None = None,
             remove_orphans: bool = False, timeout: int | None = None) -> None:
        items = self.api.containers(self.p.name, oneoff=None)
        known = set(self.p.services) | set(self.p.disabled)
        order = {s: i for i, s in enumerate(service_order(self.p))}
        # dependents stop first: reverse dependency order
        items.sort(key=lambda c: -order.get(c["Labels"].get(_SVC), -1))
        items = [c for c in items if c["Labels"].get(_SVC) in known or remove_orphans
                 or c["Labels"].get(convert.LABEL["oneoff"]) == "True"]
        for _, group in groupby(items, key=lambda c: c["Labels"].get(_SVC)):
            _parallel([lambda c=c: self._remove(c, timeout=timeout) for c in group])
        names = self.net_names()
        for key in sorted(names):
            if self.p.networks.get(key, {}).get("external"):
                continue
            net = self.api.network(names[key])
            if net is not None and (net.get("Labels") or {}).get(convert.LABEL["project"]) == self.p.name:
                self.say(f"Network {names[key]}", "Removing")
                self.api.remove_network(names[key])
                self.say(f"Network {names[key]}", "Removed")
        if volumes:
            for key, spec in self.p.volumes.items():
                if spec.get("external"):
                    continue
                name = convert.volume_name(self.p.name, key, spec)
                if self.api.volume(name) is not None:
                    self.say(f"Volume {name}", "Removing")
                    self.api.remove_volume(name)
                    self.say(f"Volume {name}", "Removed")
        if rmi:
            for name, svc in self.p.services.items():
                if rmi == "all" or not svc.get("image"):
                    self.api.remove_image(self.image_of(name))

    def each(self, services: list[str] | None, action: str, *, timeout: int | None = None) -> None:
        targets = [c for c in self.containers() if not services or c["Labels"].get(_SVC) in services]
        if action == "stop":
            order = {s: i for i, s in enumerate(service_order(self.p))}
            targets.sort(key=lambda c: -order.get(c["Labels"].get(_SVC), -1))
        for c in targets:
            name = c["Names"][0].lstrip("/")
            if action == "start":
                if c.get("State") != "running":
                    self._start(c["Id"], name)
            elif action == "stop":
                if c.get("State") == "running":
                    self.say(f"Container {name}", "Stopping")
                    self.api.stop(c["Id"], timeout)
                    self.say(f"Container {name}", "Stopped")
            elif action == "restart":
                self.say(f"Container {name}", "Restarting")
                self.api.restart(c["Id"], timeout)
                self.say(f"Container {name}", "Started")

    def find(self, service: str, index: int = 1) -> dict:
        for c in self.containers(service):
            if _num(c) == index:
                return c
        raise errors.NotFound(f"service \"{service}\" is not running container #{index}")


def _parallel(jobs: list, workers: int = 8) -> None:
    """Run independent container jobs at once (compose's parallelism); the first error
    is raised after all have finished."""
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = [pool.submit(job) for job in jobs]
    for f in futures:
        f.result()


def _healthy(info: dict) -> bool:
    state = info["State"]
    health = (state.get("Health") or {}).get("Status")
    if health in ("healthy", "unhealthy"):
        return True
    if not state.get("Health"):
        return state.get("Running", False)  # no healthcheck: compose fails; running will do
    return not state.get("Running") and not state.get("Restarting")


def _exited(info: dict) -> bool:
    return info["State"]["Status"] in ("exited", "dead")


def _ready(info: dict) -> bool:
    state = info["State"]
    health = (state.get("Health") or {}).get("Status")
    if health:
        return health in ("healthy", "unhealthy")
    return state.get("Running") or state.get("Status") in ("exited", "dead")

