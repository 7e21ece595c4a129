"""Docker's container JSON ↔ the engine's values (``conch.engine.model``).

``create_spec`` reads a ``POST /containers/create`` body (Config + HostConfig +
NetworkingConfig, API 1.50); ``inspect`` and ``summary`` write ``GET
/containers/{id}/json`` and ``GET /containers/json`` items. Fields are Docker's
(api/types/container); what the engine does not implement yet is refused by the engine
with a message, not dropped here.
"""

from __future__ import annotations

import os
from typing import Any

from conch.engine.model import Container, CreateSpec, HealthConfig, RestartPolicy, Status
from conch.errors import ConchError, InvalidArgument

_ZERO_TIME = "0001-01-01T00:00:00Z"


def _tuple(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # docker accepts a bare string for Cmd/Entrypoint
        return (value,)
    if not isinstance(value, list):
        raise InvalidArgument(f"expected a list of strings, got {type(value).__name__}")
    return tuple(str(v) for v in value)


def create_spec(body: dict) -> CreateSpec:
    if not isinstance(body, dict):
        raise InvalidArgument("the create request body must be a JSON object")
    image = body.get("Image") or ""
    if not image:
        raise InvalidArgument("no image specified" if "Image" not in body else "invalid reference format")
    host = body.get("HostConfig") or {}
    health = body.get("Healthcheck")
    restart = host.get("RestartPolicy") or {}
    policy = restart.get("Name") or "no"
    if policy not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy '{policy}'")
    if policy != "on-failure" and restart.get("MaximumRetryCount"):
        raise InvalidArgument(f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
    log_config = host.get("LogConfig") or {}
    # Go's zero values for what a Ulimit leaves out (conch.api.body checked the types)
    ulimits = tuple((u.get("Name") or "", int(u.get("Soft") or 0), int(u.get("Hard") or 0))
                    for u in host.get("Ulimits") or () if u is not None)
    network = host.get("NetworkMode") or ""
    return CreateSpec(
        image=image,
        cmd=_tuple(body.get("Cmd")),
        entrypoint=_tuple(body.get("Entrypoint")),
        env=tuple(body.get("Env") or ()),
        working_dir=body.get("WorkingDir") or "",
        user=body.get("User") or "",
        hostname=body.get("Hostname") or "",
        domainname=body.get("Domainname") or "",
        labels=dict(body.get("Labels") or {}),
        tty=bool(body.get("Tty")),
        open_stdin=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")),
        stop_signal=body.get("StopSignal") or "",
        stop_timeout=body.get("StopTimeout"),
        healthcheck=HealthConfig(
            test=tuple(health.get("Test") or ()), interval_ns=int(health.get("Interval") or 0),
            timeout_ns=int(health.get("Timeout") or 0), retries=int(health.get("Retries") or 0),
            start_period_ns=int(health.get("StartPeriod") or 0)) if health else None,
        exposed_ports=tuple((body.get("ExposedPorts") or {}).keys()),
        volumes=tuple((body.get("Volumes") or {}).keys()),
        binds=tuple(host.get("Binds") or ()),
        auto_remove=bool(host.get("AutoRemove")),
        restart_policy=RestartPolicy(name=policy, max_retry=int(restart.get("MaximumRetryCount") or 0)),
        memory=int(host.get("Memory") or 0),
        memory_swap=int(host.get("MemorySwap") or 0),
        memory_reservation=int(host.get("MemoryReservation") or 0),
        nano_cpus=int(host.get("NanoCpus") or 0),
        cpu_shares=int(host.get("CpuShares") or 0),
        cpu_quota=int(host.get("CpuQuota") or 0),
        cpu_period=int(host.get("CpuPeriod") or 0),
        cpuset_cpus=host.get("CpusetCpus") or "",
        cpuset_mems=host.get("CpusetMems") or "",
        pids_limit=host.get("PidsLimit"),
        init=bool(host.get("Init")),
        read_only=bool(host.get("ReadonlyRootfs")),
        cap_add=tuple(host.get("CapAdd") or ()),
        cap_drop=tuple(host.get("CapDrop") or ()),
        privileged=bool(host.get("Privileged")),
        security_opt=tuple(host.get("SecurityOpt") or ()),
        tmpfs=dict(host.get("Tmpfs") or {}),
        shm_size=int(host.get("ShmSize") or 0),
        ulimits=ulimits,
        network_mode=network,
        pid_mode=host.get("PidMode") or "",
        ipc_mode=host.get("IpcMode") or "",
        uts_mode=host.get("UTSMode") or "",
        dns=tuple(host.get("Dns") or ()),
        dns_search=tuple(host.get("DnsSearch") or ()),
        dns_options=tuple(host.get("DnsOptions") or ()),
        extra_hosts=tuple(host.get("ExtraHosts") or ()),
        sysctls=dict(host.get("Sysctls") or {}),
        oom_score_adj=int(host.get("OomScoreAdj") or 0),
        log_driver=log_config.get("Type") or "json-file",
        console_size=console_size(host.get("ConsoleSize")),
        log_opts=dict(log_config.get("Config") or {}),
        port_bindings=dict(host.get("PortBindings") or {}),
        mounts=tuple(host.get("Mounts") or ()),
        publish_all=bool(host.get("PublishAllPorts")),
        links=tuple(host.get("Links") or ()),
        volumes_from=tuple(host.get("VolumesFrom") or ()),
        endpoints=_endpoints(body.get("NetworkingConfig"), network, body.get("MacAddress") or ""),
        cgroupns_mode=_cgroupns(host.get("CgroupnsMode")),
        memory_swappiness=_swappiness(host.get("MemorySwappiness")),
        masked_paths=_paths(host.get("MaskedPaths"), "MaskedPaths"),
        readonly_paths=_paths(host.get("ReadonlyPaths"), "ReadonlyPaths"),
        group_add=tuple(str(g) for g in host.get("GroupAdd") or ()),
        runtime=host.get("Runtime") or "",
    )


def console_size(value) -> tuple[int, int] | None:
    """``ConsoleSize`` ([height, width], as the CLI sends it at create and exec start)."""
    if not value or len(value) != 2 or not any(value):
        return None
    return int(value[0] or 0), int(value[1] or 0)


def _cgroupns(mode) -> str:
    """moby CgroupnsMode.Valid: "", "host" or "private"."""
    if mode in (None, "", "host", "private"):
        return mode or ""
    raise InvalidArgument(f"invalid cgroup namespace mode: {mode}")


def _swappiness(value) -> int | None:
    """-1 (what the docker CLI sends by default) and null mean "not set", shown as null
    (moby verifyPlatformContainerResources); otherwise 0-100."""
    if value is None or value == -1:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise InvalidArgument(f"Invalid value: {value}, valid memory swappiness range is 0-100")
    return value


def _paths(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise InvalidArgument(f"{what}: expected a list of paths")
    return tuple(value)


def endpoint_settings(ep: dict | None) -> dict:
    """One EndpointSettings (create's EndpointsConfig entry, connect's EndpointConfig) ->
    the engine's endpoint config: what docker keeps and shows in inspect."""
    ep = ep or {}
    ipam = ep.get("IPAMConfig") or {}
    return {"aliases": list(ep.get("Aliases") or ()), "ipv4": ipam.get("IPv4Address") or "",
            "ipv6": ipam.get("IPv6Address") or "",
            "link_local_ips": list(ipam.get("LinkLocalIPs") or ()),
            "mac": ep.get("MacAddress") or "", "links": list(ep.get("Links") or ()),
            "driver_opts": dict(ep.get("DriverOpts") or {})}


def _endpoints(networking, network_mode: str = "", mac: str = "") -> dict:
    """NetworkingConfig.EndpointsConfig -> network name -> endpoint config; the
    deprecated Config.MacAddress goes to NetworkMode's endpoint when that one names
    none (moby: API < 1.44 clients, and the CLI still sends both)."""
    out = {name: endpoint_settings(ep)
           for name, ep in ((networking or {}).get("EndpointsConfig") or {}).items()}
    if mac:
        key = network_mode or "default"
        if key == "default" and "bridge" in out:
            key = "bridge"
        ep = out.setdefault(key, endpoint_settings(None))
        ep["mac"] = ep["mac"] or mac
    return out


def network_mode(c: Container) -> str:
    mode = c.spec.network_mode or "default"
    return "bridge" if mode == "default" else mode


def _endpoint_json(cfg: dict, ep: dict | None) -> dict[str, Any]:
    ep = ep or {}
    ipam = {k: v for k, v in (("IPv4Address", cfg.get("ipv4")), ("IPv6Address", cfg.get("ipv6")),
                              ("LinkLocalIPs", list(cfg.get("link_local_ips") or ()))) if v}
    return {
        "IPAMConfig": ipam or None,
        "Links": list(cfg.get("links") or ()) or None,
        "Aliases": list(cfg.get("aliases") or ()) or None,
        "MacAddress": ep.get("mac") or cfg.get("mac") or "",
        "DriverOpts": dict(cfg.get("driver_opts") or {}) or None,
        "NetworkID": cfg.get("id", ""), "EndpointID": ep.get("endpoint_id", ""),
        "Gateway": ep.get("gateway", ""), "IPAddress": ep.get("ip", ""),
        "IPPrefixLen": ep.get("prefixlen", 0), "IPv6Gateway": ep.get("gateway6", ""),
        "GlobalIPv6Address": ep.get("ip6", ""), "GlobalIPv6PrefixLen": ep.get("prefixlen6", 0),
        "DNSNames": list(ep.get("dns_names") or ()) or None,
    }


def _ports(c: Container, live: dict | None) -> dict[str, Any]:
    """Ports: each exposed/bound port -> its host bindings (null when not published)."""
    if not live:
        return {}
    out: dict[str, Any] = {k: None for k in live.get("exposed") or c.spec.exposed_ports}
    for key in c.spec.port_bindings:
        out.setdefault(key if "/" in key else f"{key}/tcp", None)
    for p in live.get("ports", ()):
        key = f"{p['container_port']}/{p['proto']}"
        out[key] = (out.get(key) or []) + [{"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}]
        if p.get("container_ip6"):  # published on "::" too (docker 28)
            out[key].append({"HostIp": "::", "HostPort": str(p["host_port"])})
    return out


def network_settings(c: Container, live: dict | None) -> dict[str, Any]:
    """NetworkSettings as docker inspect shows it; ``live`` is the running container's
    sandbox state (conch.engine.network.sandbox), None when it does not run."""
    eps = (live or {}).get("endpoints", {})
    networks = {name: _endpoint_json(cfg, eps.get(cfg.get("id"))) for name, cfg in c.networks.items()}
    if not networks and network_mode(c) in ("host", "none"):
        networks = {network_mode(c): _endpoint_json({}, None)}
    bridge = next((eps.get(cfg.get("id")) for name, cfg in c.networks.items() if name == "bridge"), None) or {}
    return {
        "Bridge": "", "SandboxID": (live or {}).get("id", ""),
        "SandboxKey": (live or {}).get("netns", ""), "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": _ports(c, live),
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": bridge.get("endpoint_id", ""), "Gateway": bridge.get("gateway", ""),
        "GlobalIPv6Address": bridge.get("ip6", ""), "GlobalIPv6PrefixLen": bridge.get("prefixlen6", 0),
        "IPAddress": bridge.get("ip", ""), "IPPrefixLen": bridge.get("prefixlen", 0),
        "IPv6Gateway": bridge.get("gateway6", ""), "MacAddress": bridge.get("mac", ""),
        "Networks": networks,
    }


def summary_ports(c: Container, live: dict | None) -> list[dict[str, Any]]:
    out = []
    for key, bindings in _ports(c, live).items():
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto})
        for b in bindings or ():
            out.append({"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]),
                        "Type": proto})
    return out


def _config(c: Container, image_exec: Any = None) -> dict[str, Any]:
    """Config as docker inspect shows it: the request's, merged over the image's config
    (``image_exec``, an ``ExecutionConfig``) as dockerd merges them at create (moby
    ``daemon.merge``): Env, Cmd/Entrypoint, User, WorkingDir, ExposedPorts, Volumes,
    Labels, StopSignal and Healthcheck the request left unset come from the image."""
    from conch.engine.containers.changes import container_exec_config
    from conch.images.presentation import container_config

    given = dict(c.api_config.get("Config") or {})
    s = c.spec
    merged = container_config(container_exec_config(c, image_exec))
    given["Hostname"] = given.get("Hostname") or s.hostname or c.id[:12]
    given.setdefault("Domainname", s.domainname)
    for key in ("AttachStdin", "AttachStdout", "AttachStderr"):
        given.setdefault(key, False)
    given.setdefault("Tty", s.tty)
    given.setdefault("OpenStdin", s.open_stdin)
    given.setdefault("StdinOnce", s.stdin_once)
    given["Image"] = c.image
    for key in ("User", "Cmd", "Entrypoint", "WorkingDir", "Volumes", "OnBuild"):
        given[key] = merged.get(key)
    given["Env"] = merged.get("Env") or []
    given["Labels"] = merged.get("Labels") or {}
    for key in ("ExposedPorts", "Healthcheck", "StopSignal"):
        if key in merged:
            given[key] = merged[key]
    return given


def _host_config(c: Container, default_runtime: str = "conch") -> dict[str, Any]:
    from conch.engine.containers import ociconfig

    s = c.spec
    given = dict(c.api_config.get("HostConfig") or {})
    given.update({
        "Binds": list(s.binds) or None,
        "VolumesFrom": list(s.volumes_from) or None,
        "NetworkMode": network_mode(c),
        "PublishAllPorts": s.publish_all,
        "Links": [f"/{ln.partition(':')[0].lstrip('/')}:/{c.name}/"
                  f"{(ln.partition(':')[2] or ln.partition(':')[0]).lstrip('/')}" for ln in s.links] or None,
        "RestartPolicy": {"Name": s.restart_policy.name, "MaximumRetryCount": s.restart_policy.max_retry},
        "AutoRemove": s.auto_remove,
        "LogConfig": {"Type": s.log_driver, "Config": dict(s.log_opts)},
        "Memory": s.memory, "MemorySwap": s.memory_swap, "MemoryReservation": s.memory_reservation,
        "NanoCpus": s.nano_cpus, "CpuShares": s.cpu_shares, "CpuQuota": s.cpu_quota,
        "CpuPeriod": s.cpu_period, "CpusetCpus": s.cpuset_cpus, "CpusetMems": s.cpuset_mems,
        "PidsLimit": s.pids_limit, "Init": s.init, "ReadonlyRootfs": s.read_only,
        "CapAdd": list(s.cap_add) or None, "CapDrop": list(s.cap_drop) or None,
        "Privileged": s.privileged, "SecurityOpt": list(s.security_opt) or None,
        "Tmpfs": dict(s.tmpfs) or None, "ShmSize": s.shm_size or 67108864,
        "Ulimits": [{"Name": n, "Soft": so, "Hard": h} for n, so, h in s.ulimits] or None,
        "Dns": list(s.dns), "DnsSearch": list(s.dns_search), "DnsOptions": list(s.dns_options),
        "ExtraHosts": list(s.extra_hosts) or None, "OomScoreAdj": s.oom_score_adj,
        "PortBindings": dict(s.port_bindings),
        "PidMode": s.pid_mode, "IpcMode": s.ipc_mode or "private", "UTSMode": s.uts_mode,
        "CgroupnsMode": ociconfig.cgroupns_mode(s),
        "MemorySwappiness": s.memory_swappiness,
        "MaskedPaths": ociconfig.masked_paths(s), "ReadonlyPaths": ociconfig.readonly_paths(s),
        "GroupAdd": list(s.group_add) or None,
    })
    given["Runtime"] = s.runtime or given.get("Runtime") or default_runtime
    if not s.tmpfs:
        given.pop("Tmpfs", None)  # omitempty in moby's HostConfig
    return given


def _state(c: Container) -> dict[str, Any]:
    st = c.state
    out = {
        "Status": st.status.value,
        # moby State.SetRestarting: Running stays true through the restart back-off
        "Running": st.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING),
        "Paused": st.status == Status.PAUSED,
        "Restarting": st.status == Status.RESTARTING,
        "OOMKilled": st.oom_killed,
        "Dead": st.status == Status.DEAD,
        "Pid": st.pid,
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": st.started_at,
        "FinishedAt": st.finished_at,
    }
    if st.health is not None:
        out["Health"] = {"Status": st.health.status, "FailingStreak": st.health.failing_streak,
                         "Log": [{"Start": e.get("start"), "End": e.get("end"),
                                  "ExitCode": e.get("exit_code"), "Output": e.get("output")}
                                 for e in st.health.log]}
    return out


def _mounts(c: Container) -> list[dict[str, Any]]:
    out = []
    for m in c.mounts:
        item = {"Type": m.get("type", "bind"), "Source": m.get("source", ""),
                "Destination": m.get("destination", ""), "Mode": m.get("mode", ""),
                "RW": m.get("rw", True), "Propagation": m.get("propagation", "rprivate")}
        if m.get("name"):
            item = {"Type": "volume", "Name": m["name"], **item, "Driver": m.get("driver", "local")}
        out.append(item)
    return out


def graph_driver_data(snapshotter, cid: str, merged: str) -> dict[str, str]:
    """overlay2's ``GraphDriver.Data`` for a container: its snapshot's parents (LowerDir,
    top first), its own upper and work dirs, and its mounted root (MergedDir)."""
    layer_dirs = getattr(snapshotter, "layer_dirs", None)
    if layer_dirs is None:
        return {"MergedDir": merged}
    try:
        own, lowers = layer_dirs(cid)
    except ConchError:  # the snapshot is gone (a container being removed)
        return {"MergedDir": merged}
    data = {"MergedDir": merged, "UpperDir": str(own / "fs"), "WorkDir": str(own / "work")}
    if lowers:
        data = {"LowerDir": ":".join(map(str, lowers)), **data}
    return data


def inspect(c: Container, *, log_path: str = "", rootfs: str = "",
            net: dict | None = None, image_exec: Any = None,
            graph_data: dict | None = None) -> dict[str, Any]:
    """``GET /containers/{id}/json``; ``image_exec`` is the image's ``ExecutionConfig``
    (None when the image is gone), merged under the container's Config."""
    d = os.path.dirname(log_path) if log_path else ""
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": list(c.args),
        "State": _state(c),
        "Image": c.image_id,
        "ResolvConfPath": os.path.join(d, "resolv.conf") if d else "",
        "HostnamePath": os.path.join(d, "hostname") if d else "",
        "HostsPath": os.path.join(d, "hosts") if d else "",
        "LogPath": log_path if c.spec.log_driver in ("", "json-file") else "",  # file drivers' own
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(c),
        "GraphDriver": {"Name": "overlay2", "Data": graph_data or {"MergedDir": rootfs}},
        "Mounts": _mounts(c),
        "Config": _config(c, image_exec),
        "NetworkSettings": network_settings(c, net),
    }


def _status_text(c: Container, now_ns: int) -> str:
    from conch.engine.containers.logs import rfc3339_to_ns

    st = c.state
    if st.status in (Status.RUNNING, Status.PAUSED):
        text = "Up " + human_duration(now_ns - rfc3339_to_ns(st.started_at))
        if st.health is not None:
            text += {"starting": " (health: starting)", "healthy": " (healthy)",
                     "unhealthy": " (unhealthy)"}.get(st.health.status, "")
        return text + (" (Paused)" if st.status == Status.PAUSED else "")
    if st.status == Status.RESTARTING:
        return f"Restarting ({st.exit_code}) " + human_duration(now_ns - rfc3339_to_ns(st.finished_at)) + " ago"
    if st.status == Status.EXITED:
        return f"Exited ({st.exit_code}) " + human_duration(now_ns - rfc3339_to_ns(st.finished_at)) + " ago"
    if st.status == Status.CREATED:
        return "Created"
    return st.status.value.capitalize()


def human_duration(ns: int) -> str:
    """go-units HumanDuration, as docker ps prints it."""
    seconds = max(ns, 0) / 1e9
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if int(minutes) == 1:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = round(minutes / 60)
    if hours == 1:
        return "About an hour"
    if minutes < 48 * 60:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def summary(c: Container, now_ns: int, net: dict | None = None) -> dict[str, Any]:
    from conch.engine.containers.logs import rfc3339_to_ns

    command = " ".join([c.path, *c.args])
    network = network_mode(c)
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": command,
        "Created": rfc3339_to_ns(c.created) // 1_000_000_000,
        "Ports": summary_ports(c, net),
        "Labels": dict(c.spec.labels),
        "State": c.state.status.value,
        "Status": _status_text(c, now_ns),
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Networks": network_settings(c, net)["Networks"]},
        "Mounts": _mounts(c),
    }
