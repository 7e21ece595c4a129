"""conchd's autoscaler: the control loop over services that carry an ``x-autoscale``
policy (``io.conch.autoscale.*`` labels on their replicas; see :mod:`.policy`).

Every second it looks for such services (replicas grouped by
``com.docker.compose.project`` + ``.service``, one-offs excluded); a service is synced
once per its ``sync_period``: each running replica's CPU counter (its cgroup's
``usage_ns``) is read, the delta since the previous sync against its CPU limit gives the
utilisation (and, with ``target_requests_per_second``, the shared port's nft connection
counter gives the request rate), the policy gives a recommendation, the stabilisation windows the count to go
to. Scaling up clones the lowest-numbered replica's record (its create config, labels,
networks and aliases, a new ``container-number`` and name) and starts it; scaling down
stops the highest-numbered running replicas (which drains their shared ports first:
``conch.engine.network.shared_ports``) and removes them. Each change publishes a
``service`` / ``scale`` event (name ``<project>/<service>``, ``replicas_from``,
``replicas_to``, ``cpu_percent``, ``target``) and writes the state into every replica's
record as labels (``io.conch.autoscale.desired``, ``.cpu_percent``, ``.last_scale``), so
``docker inspect`` and ``conch compose ps`` show it.

Durable state: the recommendations still inside the windows, per service, in
``<data-root>/scaling/<project>__<service>.json`` (atomic writes), so a restarted conchd
keeps its stabilisation history; the policy itself is in the records. Only services with
at least one running replica are touched: ``compose stop`` is never undone.

Ownership: :meth:`Autoscaler.run` is one task in conchd's TaskOwner (cancelled at
shutdown); a sync never overlaps another of the same service. While no service is
autoscaled it sleeps until a container is created (at most 30 s), so an idle conchd
does not read its records every second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import time

from conch.engine.durable import write_json
from conch.engine.scaling.policy import (PREFIX, Policy, cpu_limit, raw_desired,
                                         raw_desired_ratio, stabilised, trim, utilisation)
from conch.errors import ConchError

__all__ = ["Autoscaler"]

log = logging.getLogger(__name__)

PROJECT, SERVICE, NUMBER, ONEOFF = ("com.docker.compose.project", "com.docker.compose.service",
                                    "com.docker.compose.container-number",
                                    "com.docker.compose.oneoff")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
IDLE_RECHECK = 30.0  # seconds between looks while no service is autoscaled


def _number(c) -> int:
    try:
        return int(c.spec.labels.get(NUMBER, "0"))
    except ValueError:
        return 0


class Autoscaler:
    def __init__(self, containers, events, state_dir: str, *, tick: float = 1.0,
                 networks=None) -> None:
        self.containers = containers
        self.networks = networks  # NetworkService: shared ports' connection counters
        self._conns: dict[tuple[str, str], tuple[float, int]] = {}
        self.events = events
        self.state_dir = state_dir
        self.tick_seconds = tick
        self._samples: dict[str, tuple[float, int]] = {}  # cid -> (monotonic, usage ns)
        self._next: dict[tuple[str, str], float] = {}  # service -> next sync (monotonic)
        self._bad: set[tuple[str, str]] = set()  # services whose policy was logged bad
        self._first_tick = True

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            active = True
            try:
                active = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive one bad sync
                log.exception("autoscaler tick")
            if active:
                await asyncio.sleep(self.tick_seconds)
            else:
                await self._wait_for_candidates()

    async def _wait_for_candidates(self, limit: float = IDLE_RECHECK) -> None:
        """No autoscaled service: sleep until a container is created (a new replica may
        carry a policy) instead of listing the records every second (an idle conchd
        stays idle); re-checked every ``limit`` seconds all the same."""
        events = self.events.subscribe(filters={"type": ["container"], "event": ["create"]})
        try:
            await asyncio.wait_for(anext(events), limit)
        except (asyncio.TimeoutError, StopAsyncIteration):
            pass
        finally:
            await events.aclose()

    def groups(self) -> dict[tuple[str, str], list]:
        out: dict[tuple[str, str], list] = {}
        for c in self.containers.list():
            labels = c.spec.labels or {}
            if PREFIX + "max_replicas" in labels and labels.get(PROJECT) and \
                    labels.get(SERVICE) and labels.get(ONEOFF, "False") != "True":
                out.setdefault((labels[PROJECT], labels[SERVICE]), []).append(c)
        return out

    async def tick(self) -> bool:
        """One look at every autoscaled service; False when there is none."""
        groups = await asyncio.to_thread(self.groups)
        live = {c.id for members in groups.values() for c in members}
        for cid in [k for k in self._samples if k not in live]:
            del self._samples[cid]
        for key in [k for k in self._known_keys() if k not in groups]:
            self._forget(key)  # the service is gone (compose down): so is its state
        now = time.monotonic()
        for key, members in groups.items():
            members.sort(key=_number)
            try:
                policy = Policy.from_labels(members[0].spec.labels)
            except (ConchError, ValueError) as exc:
                if key not in self._bad:
                    log.warning("autoscale policy of %s/%s ignored: %s", *key, exc)
                    self._bad.add(key)
                continue
            if policy is None or now < self._next.get(key, 0.0):
                continue
            self._next[key] = now + policy.sync_period
            await self.sync(key, members, policy)
        return bool(groups)

    # -- one service -------------------------------------------------------------------

    async def _usage(self, cid: str) -> int | None:
        try:
            stats = await asyncio.to_thread(self.containers.stats, cid)
        except (ConchError, OSError):
            return None
        usage = (stats.get("cpu") or {}).get("usage_ns")
        return int(usage) if usage is not None else None

    async def sync(self, key: tuple[str, str], members: list, policy: Policy) -> None:
        running = [c for c in members if c.state.running]
        if not running or any(c.manually_stopped and not c.state.running for c in members):
            # stopped by hand (compose stop, or compose down stopping before it removes):
            # the user is acting on the service; not ours to undo or race with
            return
        samples = []
        for c in running:
            usage = await self._usage(c.id)
            mono = time.monotonic()
            prev = self._samples.get(c.id)
            if usage is None:
                continue
            self._samples[c.id] = (mono, usage)
            if prev is not None and mono - prev[0] > 0.2 and usage >= prev[1]:
                s = c.spec
                samples.append((usage - prev[1], mono - prev[0],
                                cpu_limit(s.nano_cpus, s.cpu_quota, s.cpu_period)))
        current = len(running)
        util = utilisation(samples) if policy.target_cpu_percent else None
        rps = await self._request_rate(key) if policy.target_requests_per_second else None
        wall = time.time()
        state = self._load(key)
        history = [(float(t), int(r)) for t, r in state.get("history", [])]
        recs = []
        if util is not None:
            recs.append(raw_desired(current, util, policy))
        if rps is not None:  # per replica against its target, the same formula
            recs.append(raw_desired_ratio(current, rps / current / policy.target_requests_per_second,
                                          policy))
        if not recs:
            if policy.min_replicas <= current <= policy.max_replicas:
                return  # nothing measured yet (new replicas): wait for the next period
            recs.append(max(policy.min_replicas, min(policy.max_replicas, current)))
        rec = max(recs)  # several metrics: the largest count (HPA)
        history = trim(history + [(wall, rec)], wall, policy)
        target = stabilised(current, wall, history, policy)
        state["history"] = history
        state["cpu_percent"] = None if util is None else round(util, 1)
        state["requests_per_second"] = None if rps is None else round(rps, 1)
        if target != current:
            log.info("autoscale %s/%s: %d -> %d (cpu %s%% of limit, target %s%%; %s req/s)", *key,
                     current, target, state["cpu_percent"], policy.target_cpu_percent,
                     state["requests_per_second"])
            state.update(desired=target, last_scale=wall, replicas_from=current)
            self._save(key, state)
            if target > current:
                await self._scale_up(members, target - current)
            else:
                await self._scale_down(running, current - target)
            self.events.publish("service", "scale", f"{key[0]}/{key[1]}", name=f"{key[0]}/{key[1]}",
                                project=key[0], service=key[1], replicas_from=current,
                                replicas_to=target, cpu_percent=state["cpu_percent"],
                                target=policy.target_cpu_percent or None,
                                requests_per_second=state["requests_per_second"],
                                target_requests_per_second=policy.target_requests_per_second or None)
            await self._label_state(key, state)
        else:
            self._save(key, state)

    async def _request_rate(self, key: tuple[str, str]) -> float | None:
        """New connections per second to the service's shared ports since the last sync
        (their nft counters); None without a shared port or a previous reading."""
        if self.networks is None:
            return None
        total = await asyncio.to_thread(self.networks.group_connections, f"{key[0]}/{key[1]}")
        mono = time.monotonic()
        prev = self._conns.get(key)
        if total is None:
            self._conns.pop(key, None)
            return None
        self._conns[key] = (mono, total)
        if prev is None or mono - prev[0] < 0.2 or total < prev[1]:
            return None
        return (total - prev[1]) / (mono - prev[0])

    async def _scale_up(self, members: list, n: int) -> None:
        template = next((c for c in members if c.state.running), members[0])
        used = {_number(c) for c in members}
        numbers = [i for i in range(1, len(used) + n + 2) if i not in used][:n]
        await asyncio.gather(*(self._clone(template, i) for i in numbers), return_exceptions=False)

    async def _clone(self, template, number: int) -> None:
        labels = {**template.spec.labels, NUMBER: str(number)}
        name = _replica_name(template.name, _number(template), number)
        endpoints = {net: {"aliases": list(cfg.get("aliases") or ()), "ipv4": ""}
                     for net, cfg in (template.networks or {}).items()}
        spec = dataclasses.replace(template.spec, labels=labels,
                                   endpoints=endpoints or template.spec.endpoints)
        api_config = json.loads(json.dumps(template.api_config or {}))
        if isinstance(api_config.get("Config"), dict):
            api_config["Config"]["Labels"] = labels
        elif "Labels" in api_config:
            api_config["Labels"] = labels
        try:
            c = await self.containers.create(spec, name, api_config=api_config)
            await self.containers.start(c.id)
        except ConchError as exc:
            log.warning("autoscale: replica %s not started: %s", name, exc)
            return
        try:  # the service was taken down meanwhile (compose down): no orphan replica
            self.containers.get(template.id)
            if self.containers.get(template.id).manually_stopped:
                raise ConchError("stopped by hand")
        except ConchError:
            log.info("autoscale: %s's service went away while it started: removed", name)
            try:
                await self.containers.remove(c.id, force=True)
            except ConchError:
                pass

    async def _scale_down(self, running: list, n: int) -> None:
        victims = sorted(running, key=_number, reverse=True)[:n]

        async def retire(c) -> None:
            try:
                await self.containers.stop(c.id, c.spec.stop_timeout)
            except ConchError:
                pass  # exited meanwhile
            try:
                await self.containers.remove(c.id, force=True)
            except ConchError as exc:
                log.warning("autoscale: removing %s: %s", c.name, exc)

        await asyncio.gather(*(retire(c) for c in victims))

    async def _label_state(self, key: tuple[str, str], state: dict) -> None:
        """The state as labels on every replica's record (docker inspect shows them)."""
        extra = {PREFIX + "desired": str(state["desired"]),
                 PREFIX + "cpu_percent": "" if state["cpu_percent"] is None else str(state["cpu_percent"]),
                 PREFIX + "last_scale": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state["last_scale"]))}
        for c in (await asyncio.to_thread(self.groups)).get(key, []):
            try:
                await self.containers.set_labels(c.id, extra)
            except (ConchError, AttributeError) as exc:
                log.debug("autoscale labels of %s: %s", c.name, exc)

    # -- durable state -----------------------------------------------------------------

    def _path(self, key: tuple[str, str]) -> str:
        return os.path.join(self.state_dir, _SAFE.sub("_", f"{key[0]}__{key[1]}") + ".json")

    def _load(self, key: tuple[str, str]) -> dict:
        try:
            with open(self._path(key)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def _known_keys(self) -> list[tuple[str, str]]:
        if self._first_tick:  # after a restart: state files of services gone meanwhile
            self._first_tick = False
            try:
                for name in os.listdir(self.state_dir):
                    project, sep, service = name.removesuffix(".json").partition("__")
                    if sep and name.endswith(".json"):
                        self._next.setdefault((project, service), 0.0)
            except FileNotFoundError:
                pass
        return list(self._next)

    def _forget(self, key: tuple[str, str]) -> None:
        self._next.pop(key, None)
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def _save(self, key: tuple[str, str], state: dict) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        write_json(self._path(key), state)


def _replica_name(template: str, old: int, new: int) -> str:
    """``proj-web-1`` -> ``proj-web-3`` (compose v2), ``proj_web_1`` -> ``proj_web_3`` (v1)."""
    for sep in ("-", "_"):
        suffix = f"{sep}{old}"
        if old and template.endswith(suffix):
            return template[: -len(suffix)] + f"{sep}{new}"
    return f"{template}-{new}"
