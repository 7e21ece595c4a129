"""/containers/*: create, list, inspect, start/stop/kill/restart, wait, rm, rename,
pause/unpause, logs, attach (hijacked), resize, top, stats, prune.

Each handler parses, calls one engine method (``engine.containers``), serialises with
``container_json``. Streams: ``logs`` writes stdcopy frames (or raw bytes for a TTY
container) as the body; ``attach`` hijacks the connection and pipes it to the
container's shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

from conch.api import container_json
from conch.api.attach_ws import attach_ws, replay_logs
from conch.engine.containers import detach_keys
from conch.api.body import CREATE_REQUEST, UPDATE_CONFIG, decode, verify_resources
from conch.api.hijack import hijack
from conch.api.params import (api_version, call_engine, engine_of, json_response,
                              parse_bool, parse_filters, parse_int, parse_timestamp)
from conch.api.streams import MULTIPLEXED_STREAM, RAW_STREAM, stdcopy_frame
from conch.errors import ConchError, InvalidArgument, NotModified, SystemCallError

_LIST_FILTERS = {"id", "name", "status", "label", "exited", "ancestor", "before", "since",
                 "health", "network", "volume", "is-task", "publish", "expose"}


def register(add) -> None:
    add("POST", "/containers/create", create)
    add("GET", "/containers/json", list_containers)
    add("POST", "/containers/prune", prune)
    add("GET", "/containers/{id}/json", inspect)
    add("POST", "/containers/{id}/start", start)
    add("POST", "/containers/{id}/stop", stop)
    add("POST", "/containers/{id}/restart", restart)
    add("POST", "/containers/{id}/kill", kill)
    add("POST", "/containers/{id}/pause", pause)
    add("POST", "/containers/{id}/unpause", unpause)
    add("POST", "/containers/{id}/rename", rename)
    add("POST", "/containers/{id}/wait", wait)
    add("DELETE", "/containers/{id}", remove)
    add("GET", "/containers/{id}/logs", logs)
    add("POST", "/containers/{id}/attach", attach)
    add("GET", "/containers/{id}/attach/ws", attach_ws)
    add("POST", "/containers/{id}/resize", resize)
    add("GET", "/containers/{id}/top", top)
    add("GET", "/containers/{id}/stats", stats)
    add("POST", "/containers/{id}/update", update)
    add("DELETE", "/containers/{id}/{link}", remove_link)


def _svc(request):
    return engine_of(request).containers


async def _json(request, schema, *, empty=None) -> Any:
    # typed as dockerd decodes it: a wrong type is a 400 in Go's words (conch.api.body)
    return decode(await request.read(), schema, empty=empty)


async def create(request: web.Request) -> web.StreamResponse:
    body = await _json(request, CREATE_REQUEST)
    verify_resources(body.get("HostConfig") or {})
    spec = container_json.create_spec(body)
    name = request.query.get("name") or None
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    c = await _svc(request).create(spec, name, api_config={
        "Config": config, "HostConfig": body.get("HostConfig") or {}})
    return json_response({"Id": c.id, "Warnings": []}, status=201)


def _matches(c, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "status" and c.state.status.value not in values:
            return False
        if key == "exited" and not (c.state.status.value == "exited" and str(c.state.exit_code) in values):
            return False
        if key == "ancestor" and not any(v in (c.image, c.image_id) or c.image_id.startswith("sha256:" + v)
                                         or c.image.split(":")[0] == v for v in values):
            return False
        if key == "label":
            for v in values:
                k, sep, val = v.partition("=")
                if k not in c.spec.labels or (sep and c.spec.labels[k] != val):
                    return False
        if key == "health":
            status = c.state.health.status if c.state.health else "none"
            if status not in values:
                return False
    return True


async def list_containers(request: web.Request) -> web.StreamResponse:
    all_ = parse_bool(request.query, "all")
    limit = parse_int(request.query, "limit", -1)
    filters = parse_filters(request.query, allowed=_LIST_FILTERS)
    items = await call_engine(_svc(request).list)
    items = [c for c in items if (all_ or limit > 0 or "status" in filters or c.state.running)
             and _matches(c, filters)]
    items.sort(key=lambda c: c.created, reverse=True)
    if limit and limit > 0:
        items = items[:limit]
    now = time.time_ns()
    return json_response([container_json.summary(c, now, net=_live_net(request, c)) for c in items])


def _live_net(request: web.Request, c) -> dict | None:
    networks = getattr(engine_of(request), "networks", None)
    return networks.settings(c.id) if networks is not None else None


async def inspect(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = await call_engine(svc.get, request.match_info["id"])
    rootfs = svc.paths.rootfs(c.id)
    graph = await call_engine(container_json.graph_driver_data, svc.snapshotter, c.id, rootfs)
    out = container_json.inspect(c, log_path=svc.paths.log(c.id), rootfs=rootfs,
                                 net=_live_net(request, c), image_exec=await _image_exec(svc, c),
                                 graph_data=graph)
    if api_version(request) < (1, 45):
        _legacy_aliases(out)
    return json_response(out)


_BUILTIN_NETWORKS = {"bridge", "host", "none", "default"}


def _legacy_aliases(out: dict) -> None:
    """moby getContainersByName below API 1.45: a user-defined network's Aliases also
    list the short container ID and the hostname (docker-compose 1.x looks for them)."""
    short, hostname = out["Id"][:12], (out.get("Config") or {}).get("Hostname", "")
    for name, ep in ((out.get("NetworkSettings") or {}).get("Networks") or {}).items():
        if name in _BUILTIN_NETWORKS or name.startswith("container:") or ep is None:
            continue
        aliases = list(ep.get("Aliases") or [])
        for extra in (short, hostname):
            if extra and extra not in aliases:
                aliases.append(extra)
        ep["Aliases"] = aliases


async def _image_exec(svc, c):
    """The container's image's execution config, for inspect's merged Config; None when
    the image was removed (``rmi -f``) or has none."""
    images = getattr(svc, "images", None)
    if images is None:
        return None
    try:
        image = await call_engine(images.get, c.image_id)
    except ConchError:
        return None
    return getattr(getattr(image, "config", None), "config", None)


async def start(request: web.Request) -> web.StreamResponse:
    try:
        await _svc(request).start(request.match_info["id"])
    except NotModified:
        return web.Response(status=304)
    return web.Response(status=204)


async def stop(request: web.Request) -> web.StreamResponse:
    try:
        await _svc(request).stop(request.match_info["id"], parse_int(request.query, "t"),
                                 request.query.get("signal") or None)
    except NotModified:
        return web.Response(status=304)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.StreamResponse:
    await _svc(request).restart(request.match_info["id"], parse_int(request.query, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.StreamResponse:
    await _svc(request).kill(request.match_info["id"], request.query.get("signal") or "KILL")
    return web.Response(status=204)


async def pause(request: web.Request) -> web.StreamResponse:
    await _svc(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.StreamResponse:
    await _svc(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def rename(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name", "")
    if not name:
        raise InvalidArgument("name cannot be empty")
    await _svc(request).rename(request.match_info["id"], name)
    return web.Response(status=204)


async def remove(request: web.Request) -> web.StreamResponse:
    await _svc(request).remove(request.match_info["id"], force=parse_bool(request.query, "force"),
                               volumes=parse_bool(request.query, "v"))
    return web.Response(status=204)


async def remove_link(request: web.Request) -> web.StreamResponse:
    """``DELETE /containers/<parent>/<alias>``: a legacy link's name (moby's route takes
    ``{name:.*}``). ``link=1`` removes the link (``docker rm --link``); without it the
    linked container itself is removed, as dockerd resolves the name."""
    svc = _svc(request)
    name = f"{request.match_info['id']}/{request.match_info['link']}"
    if parse_bool(request.query, "link"):
        await svc.remove_link(name)
    else:
        target = await call_engine(svc.linked, name)
        await svc.remove(target.id, force=parse_bool(request.query, "force"),
                         volumes=parse_bool(request.query, "v"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    filters = parse_filters(request.query, allowed={"until", "label"})
    deleted, space = [], 0
    for c in await call_engine(svc.list):
        if c.state.running or not _matches(c, {k: v for k, v in filters.items() if k == "label"}):
            continue
        size = await call_engine(_rw_size, svc, c.id)
        await svc.remove(c.id)
        deleted.append(c.id)
        space += size
    return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": space})


def _rw_size(svc, cid: str) -> int:
    """The bytes of a container's writable layer (its SizeRw), what dockerd's prune
    counts as reclaimed; 0 when its snapshot is already gone."""
    try:
        return int(svc.snapshotter.usage(cid).size)
    except ConchError:
        return 0


async def wait(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    cid = request.match_info["id"]
    condition = request.query.get("condition") or "not-running"
    svc.get(cid)  # 404 before the head goes out
    waiter = asyncio.ensure_future(svc.wait(cid, condition))
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)  # docker sends the head at once, the body at exit
    try:
        code = await waiter
        body = {"StatusCode": code, "Error": None}
    except Exception as exc:  # noqa: BLE001 - in-band error once the head is sent
        body = {"StatusCode": -1, "Error": {"Message": str(exc)}}
    await response.write(json.dumps(body).encode() + b"\n")
    await response.write_eof()
    return response


async def logs(request: web.Request) -> web.StreamResponse:
    from conch.engine.containers import logs as clogs

    svc = _svc(request)
    c = await call_engine(svc.get, request.match_info["id"])
    clogs.check_readable(c)
    q = request.query
    want = {"stdout": parse_bool(q, "stdout"), "stderr": parse_bool(q, "stderr")}
    if not (want["stdout"] or want["stderr"]):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow = parse_bool(q, "follow")
    timestamps = parse_bool(q, "timestamps")
    # moby daemon/logs.go: a tail that is not a number ("all", "abc") is every line
    try:
        tail = int(q.get("tail", "all"))
    except ValueError:
        tail = -1
    tail = max(tail, -1)
    since = parse_timestamp(q, "since") or 0
    until = parse_timestamp(q, "until") or 0
    path = svc.paths.log(c.id)
    # what is read and where the follow starts come from one read of the live file:
    # a line written meanwhile is sent once, neither twice nor never
    entries, offset = await asyncio.to_thread(clogs.snapshot, path, since_ns=since,
                                              until_ns=until, tail=tail)
    # opened before we answer: the client may remove the container (and its log) as soon
    # as it exits, before we have sent its last lines (docker-py's run does)
    live = clogs.open_live(path) if follow and c.state.running else None
    try:
        return await _send_logs(request, c, svc, entries, path, offset, live, want=want,
                                follow=follow, timestamps=timestamps, until=until)
    finally:
        if live is not None:
            live.close()


async def _send_logs(request, c, svc, entries, path, offset, live, *, want, follow,
                     timestamps, until) -> web.StreamResponse:
    from conch.engine.containers import logs as clogs

    tty = c.spec.tty
    response = web.StreamResponse(status=200)
    response.content_type = RAW_STREAM if tty or api_version(request) < (1, 42) else MULTIPLEXED_STREAM
    if tty:
        response.content_type = RAW_STREAM
    await response.prepare(request)

    async def emit(entry) -> None:
        if not want.get(entry.stream, False):
            return
        data = entry.data
        if timestamps:
            data = entry.time.encode() + b" " + data
        await response.write(data if tty else stdcopy_frame(1 if entry.stream == "stdout" else 2, data))

    for entry in entries:
        await emit(entry)
    if follow and c.state.running:
        stopped = svc.exited_event(c.id)
        async with contextlib.aclosing(clogs.follow(path, offset, stopped, until_ns=until,
                                                    live=live)) as follower:
            async for entry in follower:
                await emit(entry)
    await response.write_eof()
    return response


async def attach(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    q = request.query
    c = await call_engine(svc.get, request.match_info["id"])
    stdin, stdout, stderr = parse_bool(q, "stdin"), parse_bool(q, "stdout"), parse_bool(q, "stderr")
    keys = detach_keys.parse(q.get("detachKeys", ""))  # 400 before the upgrade
    logs, stream = parse_bool(q, "logs"), parse_bool(q, "stream")
    conn = await hijack(request, multiplexed=not c.spec.tty)
    try:
        if logs:  # moby ContainerAttach: the log first (stdout/stderr as asked), then live
            await replay_logs(svc, c, conn, stdout=stdout, stderr=stderr)
        if stream:
            await svc.attach(c.id, conn, stdin=stdin, stdout=stdout, stderr=stderr,
                             detach_keys=keys)
    finally:
        await conn.close()
    return conn.response



_UPDATE_FIELDS = {"Memory": "memory", "MemorySwap": "memory_swap",
                  "MemoryReservation": "memory_reservation", "NanoCpus": "nano_cpus",
                  "CpuShares": "cpu_shares", "CpuQuota": "cpu_quota", "CpuPeriod": "cpu_period",
                  "CpusetCpus": "cpuset_cpus", "CpusetMems": "cpuset_mems", "PidsLimit": "pids_limit"}


async def update(request: web.Request) -> web.StreamResponse:
    from conch.engine.model import RestartPolicy

    body = await _json(request, UPDATE_CONFIG, empty={})
    verify_resources(body, update=True)
    changes = {attr: body[key] for key, attr in _UPDATE_FIELDS.items() if body.get(key)}
    policy = body.get("RestartPolicy") or {}
    if policy.get("Name"):
        changes["restart_policy"] = RestartPolicy(name=policy["Name"],
                                                  max_retry=int(policy.get("MaximumRetryCount") or 0))
    try:
        await _svc(request).update(request.match_info["id"], **changes)
    except SystemCallError as exc:
        # the kernel refused a value the client sent (a cgroup write): the client's
        # error, in moby's words (daemon/update.go errCannotUpdate)
        raise InvalidArgument(f"Cannot update container {request.match_info['id']}: {exc}") from exc
    return json_response({"Warnings": []})


async def resize(request: web.Request) -> web.StreamResponse:
    h, w = parse_int(request.query, "h", 0), parse_int(request.query, "w", 0)
    await call_engine(_svc(request).resize, request.match_info["id"], h, w)
    return web.Response(status=200)


async def top(request: web.Request) -> web.StreamResponse:
    titles, rows = await _svc(request).top(request.match_info["id"], request.query.get("ps_args") or "-ef")
    return json_response({"Titles": titles, "Processes": rows})


async def stats(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    cid = request.match_info["id"]
    stream = parse_bool(request.query, "stream", True) and not parse_bool(request.query, "one-shot")
    c = await call_engine(svc.get, cid)
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)
    previous = None
    while True:
        current = await call_engine(svc.stats, c.id)
        doc = _stats_json(c, current, previous)
        await response.write(json.dumps(doc).encode() + b"\n")
        if not stream:
            break
        previous = current
        await asyncio.sleep(1)
        c = await call_engine(svc.get, c.id)
        if not c.state.running:
            break
    await response.write_eof()
    return response


def _cpu_json(s: dict | None) -> dict:
    if not s:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    cpu = s.get("cpu") or {}
    return {
        "cpu_usage": {"total_usage": cpu.get("usage_ns", 0),
                      "usage_in_kernelmode": cpu.get("system_ns", 0),
                      "usage_in_usermode": cpu.get("user_ns", 0)},
        "system_cpu_usage": s.get("system_cpu_ns", 0),
        "online_cpus": s.get("online_cpus", 1),
        "throttling_data": {"periods": cpu.get("periods", 0),
                            "throttled_periods": cpu.get("throttled_periods", 0),
                            "throttled_time": cpu.get("throttled_ns", 0)},
    }


def _stats_json(c, current: dict, previous: dict | None) -> dict:
    mem = current.get("memory") or {}
    pids = current.get("pids") or {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    return {
        "read": now,
        "preread": "0001-01-01T00:00:00Z" if previous is None else now,
        "name": "/" + c.name,
        "id": c.id,
        "pids_stats": {"current": pids.get("current", 0), **({"limit": pids["limit"]} if pids.get("limit") else {})},
        "cpu_stats": _cpu_json(current),
        "precpu_stats": _cpu_json(previous),
        "memory_stats": {"usage": mem.get("usage", 0), "max_usage": mem.get("max_usage", 0),
                         "limit": mem.get("limit") or mem.get("host_total", 0),
                         "stats": {"cache": mem.get("cache", 0),
                                   "inactive_file": mem.get("inactive_file", 0)}},
        "blkio_stats": {},
        "num_procs": 0,
        "storage_stats": {},
        "networks": {},
    }
