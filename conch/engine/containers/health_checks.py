"""The health check loop of a running container: probe every interval, record the
result, publish health_status events (the probe and the rules are
:mod:`conch.engine.containers.health`). A mixin of
:class:`conch.engine.containers.service.ContainerService`.
"""

from __future__ import annotations

import asyncio
import logging
import os

from conch.engine.containers import health
from conch.engine.model import Status, now_rfc3339
from conch.errors import NotFound

log = logging.getLogger(__name__)


class HealthChecks:
    def _start_health(self, cid: str, hc) -> None:
        old = self._health_tasks.pop(cid, None)
        if old is not None:
            old.cancel()
        coro = self._health_loop(cid, hc)
        create = self.tasks.create_task if self.tasks is not None else asyncio.get_running_loop().create_task
        self._health_tasks[cid] = create(coro)

    async def _health_loop(self, cid: str, hc) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        interval = hc.interval_ns / 1e9 if hc.interval_ns else health.DEFAULT_INTERVAL
        timeout = hc.timeout_ns / 1e9 if hc.timeout_ns else health.DEFAULT_TIMEOUT
        start_period = hc.start_period_ns / 1e9
        args = health.command(hc)
        try:
            while True:
                await asyncio.sleep(interval)
                begin = now_rfc3339()
                code, output = await health.probe(self.paths.socket(cid),
                                                  os.path.join(self.paths.dir(cid), "execs"),
                                                  self.paths.bundle(cid), args, timeout)
                async with self._lock(cid):
                    try:
                        c = self.get(cid)
                    except NotFound:
                        return
                    if c.state.status != Status.RUNNING or c.state.health is None:
                        return
                    before = c.state.health.status
                    new = health.record(c.state.health, hc, code, output, begin,
                                        loop.time() - started < start_period)
                    if new.status != before and self.networks is not None:
                        # shared ports take healthy replicas only; changed before the
                        # record, so whoever sees the new status sees the balancer follow
                        await asyncio.to_thread(self.networks.health_changed, cid, new.status)
                    self._save(c.with_state(health=new))
                if new.status != before:
                    self.events.publish("container", f"health_status: {new.status}", cid,
                                        name=c.name, image=c.image)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a probe must never take the daemon down
            log.exception("health check of %s", cid[:12])

