"""System routes: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/system/df``.

Engine calls (one per route; see ``conch.api`` for the fields read):
``engine.version()``, ``engine.info()``, ``engine.events.subscribe(since=, until=,
filters=)``, ``engine.disk_usage()``. Values may be dataclasses or mappings with
snake_case fields; anything missing gets dockerd's neutral default.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from conch.api.params import (API_VERSION, MIN_API_VERSION, api_version, call_engine, engine_of,
                              field,
                              json_response,
                              parse_filters, parse_timestamp)
from conch.api.routes_images import image_summary
from conch.api.streams import stream_json_lines
from conch.errors import InvalidArgument

EVENT_FILTERS = {"config", "container", "daemon", "event", "image", "label", "network", "node",
                 "plugin", "scope", "secret", "service", "type", "volume"}


def register(add) -> None:
    add("GET", "/_ping", ping)
    add("HEAD", "/_ping", ping)
    add("GET", "/version", version)
    add("GET", "/info", info)
    add("GET", "/events", events)
    add("GET", "/system/df", disk_usage)


async def ping(request: web.Request) -> web.StreamResponse:
    # dockerd: "OK" text/plain, no-cache; HEAD gets the same head and no body.
    return web.Response(text="OK", content_type="text/plain",
                        headers={"Cache-Control": "no-cache, no-store, must-revalidate",
                                 "Pragma": "no-cache"})


def version_json(v: Any) -> dict[str, Any]:
    ver = field(v, "version", "0.0.0")
    details = {
        "ApiVersion": API_VERSION,
        "Arch": field(v, "arch", "amd64"),
        "BuildTime": field(v, "build_time", ""),
        "Experimental": "false",
        "GitCommit": field(v, "git_commit", ""),
        "GoVersion": "n/a",
        "KernelVersion": field(v, "kernel_version", ""),
        "MinAPIVersion": MIN_API_VERSION,
        "Os": field(v, "os", "linux"),
    }
    components = [{"Name": "Engine", "Version": ver, "Details": details}]
    for name, cversion in dict(field(v, "components", {}) or {}).items():
        components.append({"Name": name, "Version": cversion, "Details": {}})
    return {
        "Platform": {"Name": field(v, "platform_name", "conch Engine")},
        "Components": components,
        "Version": ver,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": details["GitCommit"],
        "GoVersion": "n/a",
        "Os": details["Os"],
        "Arch": details["Arch"],
        "KernelVersion": details["KernelVersion"],
        "BuildTime": details["BuildTime"],
    }


async def version(request: web.Request) -> web.StreamResponse:
    return json_response(version_json(await call_engine(engine_of(request).version)))


def _now_rfc3339() -> str:
    return dt.datetime.now().astimezone().isoformat()


def info_json(i: Any) -> dict[str, Any]:
    """Docker's SystemInfo from the engine's snake_case info record."""
    f = lambda name, default=None: field(i, name, default)  # noqa: E731
    runtimes = dict(f("runtimes", {}) or {})
    return {
        "ID": f("id", ""),
        "Containers": f("containers", 0),
        "ContainersRunning": f("containers_running", 0),
        "ContainersPaused": f("containers_paused", 0),
        "ContainersStopped": f("containers_stopped", 0),
        "Images": f("images", 0),
        "Driver": f("driver", "overlay2"),
        "DriverStatus": [list(p) for p in (f("driver_status", ()) or ())],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file", "local", "none"]},
        "MemoryLimit": f("memory_limit", True),
        "SwapLimit": f("swap_limit", True),
        "CpuCfsPeriod": f("cpu_cfs_period", True),
        "CpuCfsQuota": f("cpu_cfs_quota", True),
        "CPUShares": f("cpu_shares", True),
        "CPUSet": f("cpuset", True),
        "PidsLimit": f("pids_limit", True),
        "OomKillDisable": f("oom_kill_disable", False),
        "IPv4Forwarding": f("ipv4_forwarding", True),
        "Debug": f("debug", False),
        "NFd": f("n_fd", 0),
        "NGoroutines": f("n_tasks", 0),
        "SystemTime": f("system_time", "") or _now_rfc3339(),
        "LoggingDriver": f("logging_driver", "json-file"),
        "CgroupDriver": f("cgroup_driver", "cgroupfs"),
        "CgroupVersion": str(f("cgroup_version", "1")),
        "NEventsListener": f("n_events_listener", 0),
        "KernelVersion": f("kernel_version", ""),
        "OperatingSystem": f("operating_system", ""),
        "OSVersion": f("os_version", ""),
        "OSType": f("os_type", "linux"),
        "Architecture": f("architecture", "x86_64"),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True,
                                           "Official": True}},
            "Mirrors": None,
        },
        "NCPU": f("ncpu", 1),
        "MemTotal": f("mem_total", 0),
        "GenericResources": None,
        "DockerRootDir": f("root_dir", "/var/lib/conch"),
        "HttpProxy": f("http_proxy", ""),
        "HttpsProxy": f("https_proxy", ""),
        "NoProxy": f("no_proxy", ""),
        "Name": f("name", ""),
        "Labels": list(f("labels", ()) or ()),
        "ExperimentalBuild": False,
        "ServerVersion": f("server_version", "0.0.0"),
        "Runtimes": {name: {"path": path} for name, path in runtimes.items()},
        "DefaultRuntime": f("default_runtime", "conch"),
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": f("live_restore", True),
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "FirewallBackend": {"Driver": "nftables"},
        "SecurityOptions": list(f("security_options", ("name=seccomp,profile=builtin",))),
        "CDISpecDirs": [],
        "Warnings": list(f("warnings", ()) or ()),
    }


async def info(request: web.Request) -> web.StreamResponse:
    out = info_json(await call_engine(engine_of(request).info))
    return json_response(info_for_version(out, api_version(request)))


def info_for_version(out: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    """moby getInfo's version gates: fields dropped in later versions come back for older
    clients (always empty or false, as dockerd fills them)."""
    if version < (1, 47):
        out["RegistryConfig"] = {"AllowNondistributableArtifactsCIDRs": None,
                                 "AllowNondistributableArtifactsHostnames": None,
                                 **out["RegistryConfig"]}
    if version < (1, 49):
        out.pop("FirewallBackend", None)
        for key in ("ContainerdCommit", "RuncCommit", "InitCommit"):
            out[key] = {"ID": out[key]["ID"], "Expected": out[key]["ID"]}
    if version < (1, 50):
        out["BridgeNfIptables"] = False
        out["BridgeNfIp6tables"] = False
    return out


def event_json(ev: Any) -> dict[str, Any]:
    """Docker's events.Message. Container and image events also carry the pre-1.22
    ``status``/``id``/``from`` fields, as dockerd still sends them at 1.50."""
    type_ = field(ev, "type")
    action = field(ev, "action")
    actor_id = field(ev, "actor_id", "")
    attributes = dict(field(ev, "attributes", {}) or {})
    time_nano = int(field(ev, "time_nano", 0))
    out: dict[str, Any] = {}
    if type_ in ("container", "image"):
        out["status"] = action
        out["id"] = actor_id
        if type_ == "container" and "image" in attributes:
            out["from"] = attributes["image"]
    out.update({
        "Type": type_,
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": attributes},
        "scope": field(ev, "scope", "local"),
        "time": time_nano // 1_000_000_000,
        "timeNano": time_nano,
    })
    return out


async def events(request: web.Request) -> web.StreamResponse:
    since = parse_timestamp(request.query, "since")
    until = parse_timestamp(request.query, "until")
    filters = parse_filters(request.query, allowed=EVENT_FILTERS)
    if since is not None and until is not None and until < since:
        raise InvalidArgument(f"`since` time ({request.query['since']}) cannot be after `until` "
                              f"time ({request.query['until']})")
    # subscribe() returns an async iterator (no await): past events from ``since``, then
    # live ones, ending at ``until`` (or when the client goes away: handler cancellation).
    stream = engine_of(request).events.subscribe(since=since, until=until, filters=filters)
    if api_version(request) < (1, 46):
        stream = _without_image_create(stream)  # moby: image create events are 1.46's
    return await stream_json_lines(request, stream, serialise=event_json)


async def _without_image_create(stream):
    async for ev in stream:
        if not (field(ev, "type") == "image" and field(ev, "action") == "create"):
            yield ev


def _container_usage(c: Any) -> dict[str, Any]:
    return {
        "Id": field(c, "id", ""),
        "Names": ["/" + n.lstrip("/") for n in ([field(c, "name", "")] if field(c, "name") else [])],
        "Image": field(c, "image", ""),
        "ImageID": field(c, "image_id", ""),
        "Command": field(c, "command", ""),
        "Created": int(field(c, "created", 0) or 0),
        "State": field(c, "state", ""),
        "Status": field(c, "status", ""),
        "SizeRw": int(field(c, "size_rw", 0) or 0),
        "SizeRootFs": int(field(c, "size_root_fs", 0) or 0),
        "Labels": dict(field(c, "labels", {}) or {}),
        "Mounts": [],
        "LogsSize": int(field(c, "logs_size", 0) or 0),  # conch's; docker ignores it
    }


def _volume_usage(v: Any) -> dict[str, Any]:
    return {
        "Name": field(v, "name", ""),
        "Driver": field(v, "driver", "local"),
        "Mountpoint": field(v, "mountpoint", ""),
        "Labels": dict(field(v, "labels", {}) or {}),
        "Scope": "local",
        "Options": None,
        "CreatedAt": field(v, "created_at", ""),
        "UsageData": {"Size": int(field(v, "size", -1)), "RefCount": int(field(v, "ref_count", 0))},
    }


def _image_usage(image: Any, du: Any) -> dict[str, Any]:
    out = image_summary(image)
    image_id = out["Id"]
    counts = field(du, "image_containers", None)
    if counts is not None:
        out["Containers"] = int(counts.get(image_id, 0))
    shared = field(du, "shared_sizes", None)
    if shared is not None:
        out["SharedSize"] = int(shared.get(image_id, 0))
    return out


async def disk_usage(request: web.Request) -> web.StreamResponse:
    """dockerd's ``/system/df``, plus ``LogsSize`` (conch's: bytes of container logs;
    docker has no such key and its CLI ignores unknown ones)."""
    version = api_version(request)
    wanted = set(_DF_TYPES)
    types = request.query.getall("type", [])
    if types and version >= (1, 42):  # moby getDiskUsage: ?type= selects the sections
        for t in types:
            if t not in _DF_TYPES:
                raise InvalidArgument(f"unknown object type: {t}")
        wanted = set(types)
    du = await call_engine(engine_of(request).disk_usage)
    images = [_image_usage(img, du) for img in field(du, "images", ()) or ()]
    if version < (1, 44):
        for img in images:
            img["VirtualSize"] = img["Size"]
    return json_response({
        "LayersSize": int(field(du, "layers_size", 0) or 0) if "image" in wanted else 0,
        "Images": images if "image" in wanted else None,
        "Containers": ([_container_usage(c) for c in field(du, "containers", ()) or ()]
                       if "container" in wanted else None),
        "Volumes": ([_volume_usage(v) for v in field(du, "volumes", ()) or ()]
                    if "volume" in wanted else None),
        "BuildCache": [] if "build-cache" in wanted else None,
        "BuilderSize": 0,
        "LogsSize": int(field(du, "logs_size", 0) or 0),
    })


_DF_TYPES = ("container", "image", "volume", "build-cache")
