"""Prometheus metrics at ``--metrics-addr HOST:PORT`` ``/metrics`` (text exposition 0.0.4).

dockerd's names where dockerd has the metric (``engine_daemon_engine_info``,
``engine_daemon_container_states_containers{state=running|paused|stopped}``), conch's own
for the rest: ``conch_api_requests_total{method,route,code}``,
``conch_api_request_duration_seconds`` (histogram, same labels but code) and
``conch_images``. Written by hand: the format is a few lines of text, not worth a
dependency. The API middleware counts by route *template* (``/containers/{id}/json``),
never by raw path, so label cardinality stays bounded.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from typing import AsyncIterator

from aiohttp import web

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}" if pairs else ""


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) else str(v)


class Metrics:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.requests: dict[tuple[str, str, str], int] = {}
        # (method, route) -> [bucket counts..., sum, count]
        self.durations: dict[tuple[str, str], list] = {}

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        key = (method, route, str(code))
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.durations.setdefault((method, route), [0] * len(BUCKETS) + [0.0, 0])
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(BUCKETS):
            h[i] += 1
        h[-2] += seconds
        h[-1] += 1

    def instrument(self, app: web.Application) -> None:
        """Count every API request (outermost middleware: it sees the final status)."""

        @web.middleware
        async def count(request: web.Request, handler):
            start = time.monotonic()
            code = 500
            try:
                resp = await handler(request)
                code = resp.status
                return resp
            except web.HTTPException as exc:
                code = exc.status
                raise
            finally:
                info = request.match_info
                route = getattr(getattr(info.route, "resource", None), "canonical", None) \
                    if info.route is not None else None
                if not route or info.http_exception is not None:
                    route = "unmatched"
                elif route.startswith("/v{api_version"):
                    route = route[route.index("}") + 1:]
                self.observe(request.method, route, code, time.monotonic() - start)

        app.middlewares.insert(0, count)

    def render(self) -> str:
        from conch.engine.model import Status

        out = []
        v = self.engine.version()
        out += ["# HELP engine_daemon_engine_info The information related to the engine and the "
                "OS it is running on",
                "# TYPE engine_daemon_engine_info gauge",
                "engine_daemon_engine_info" + _labels([
                    ("architecture", v.arch), ("commit", v.git_commit),
                    ("daemon_id", getattr(self.engine, "_id", "")), ("graphdriver", "overlay2"),
                    ("kernel", v.kernel_version), ("os", v.os), ("os_type", "linux"),
                    ("version", v.version)]) + " 1"]
        states = {"running": 0, "paused": 0, "stopped": 0}
        for c in self.engine.containers.list():
            s = c.state.status
            states["running" if s in (Status.RUNNING, Status.RESTARTING) else
                   "paused" if s == Status.PAUSED else "stopped"] += 1
        out += ["# HELP engine_daemon_container_states_containers The count of containers in "
                "various states", "# TYPE engine_daemon_container_states_containers gauge"]
        out += [f'engine_daemon_container_states_containers{{state="{k}"}} {n}'
                for k, n in states.items()]
        out += ["# HELP conch_images The number of images", "# TYPE conch_images gauge",
                f"conch_images {len(self.engine.images.service.list())}"]
        out += ["# HELP conch_api_requests_total API requests by method, route and status code",
                "# TYPE conch_api_requests_total counter"]
        for (method, route, code), n in sorted(self.requests.items()):
            out.append("conch_api_requests_total"
                       + _labels([("method", method), ("route", route), ("code", code)]) + f" {n}")
        out += ["# HELP conch_api_request_duration_seconds API request durations by method and "
                "route", "# TYPE conch_api_request_duration_seconds histogram"]
        for (method, route), h in sorted(self.durations.items()):
            base = [("method", method), ("route", route)]
            cum = 0
            for bound, n in zip(BUCKETS + (float("inf"),), h[:len(BUCKETS)] + [0]):
                cum += n
                if bound == float("inf"):
                    cum = h[-1]
                out.append("conch_api_request_duration_seconds_bucket"
                           + _labels(base + [("le", _num(bound))]) + f" {cum}")
            out.append("conch_api_request_duration_seconds_sum" + _labels(base) + f" {_num(h[-2])}")
            out.append("conch_api_request_duration_seconds_count" + _labels(base) + f" {h[-1]}")
        return "\n".join(out) + "\n"


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-addr {addr!r}: want HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@contextlib.asynccontextmanager
async def serving_metrics(metrics: Metrics, addr: str) -> AsyncIterator[None]:
    host, port = parse_addr(addr)

    async def handle(request: web.Request) -> web.Response:
        body = metrics.render()  # on the loop: the engine's objects are the loop's
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
