"""``run``/``create`` flags -> the Engine API's create body (Config + HostConfig +
NetworkingConfig) and query parameters (:class:`CreateRequest`), as docker/cli's
``container/opts.go`` builds them from the values :mod:`conch.cli.flag_values` parses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    import argparse
    from typing import Any

from conch.cli.flag_values import (OptionError, add_host, device, env_list, expose, kv_map, labels,
                                   memory_swap, mount, nano_cpus, positive_duration, publish,
                                   ram_in_bytes, read_kv_file, restart_policy, tmpfs, ulimit,
                                   volume)


class CreateRequest:
    """What ``POST /containers/create`` needs: the body and the query parameters.
    (A plain class: ``dataclasses`` would add ~10 ms to every ``conch run``.)"""

    __slots__ = ("body", "name", "platform", "pull", "warnings")

    def __init__(self, body: dict[str, Any], name: str | None = None,
                 platform: str | None = None, pull: str = "missing",
                 warnings: list[str] | None = None) -> None:
        self.body = body
        self.name = name
        self.platform = platform
        self.pull = pull
        self.warnings = warnings if warnings is not None else []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CreateRequest) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return "CreateRequest(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _healthcheck(ns) -> dict[str, Any] | None:
    any_health = any(getattr(ns, k) not in (None,) for k in (
        "health_cmd", "health_interval", "health_timeout", "health_retries",
        "health_start_period", "health_start_interval"))
    if ns.no_healthcheck:
        if any_health:
            raise OptionError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not any_health:
        return None
    hc: dict[str, Any] = {}
    if ns.health_cmd:
        hc["Test"] = ["CMD-SHELL", ns.health_cmd]
    for attr, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod"),
                      ("health_start_interval", "StartInterval")):
        value = getattr(ns, attr)
        if value is not None:
            hc[key] = positive_duration("--" + attr.replace("_", "-"), value)
    if ns.health_retries is not None:
        if ns.health_retries < 0:
            raise OptionError("--health-retries cannot be negative")
        hc["Retries"] = ns.health_retries
    return hc


def build(ns: argparse.Namespace, command: list[str], *, run: bool) -> CreateRequest:
    """Turn parsed flags into the create request, validating as docker/cli does."""
    attach = [a.lower() for a in ns.attach]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise OptionError(f'invalid argument "{a}" for "-a, --attach" flag: valid streams '
                              "are STDIN, STDOUT and STDERR")
    detach = getattr(ns, "detach", False)
    if run and detach and attach:
        raise OptionError("Conflicting options: -a and -d")
    attach_stdin = "stdin" in attach or ns.interactive
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach
    if run and detach:
        attach_stdin = attach_stdout = attach_stderr = False
    if not run:  # docker create: attach flags are recorded, nothing is attached now
        attach_stdin = "stdin" in attach or ns.interactive

    env = env_list([line for path in ns.env_file for line in read_kv_file(path)] + ns.env)
    label_map = labels([line for path in ns.label_file for line in read_kv_file(path)] + ns.label)

    config: dict[str, Any] = {
        "Hostname": ns.hostname or "",
        "Domainname": ns.domainname or "",
        "User": ns.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr,
        "Tty": ns.tty,
        "OpenStdin": ns.interactive,
        "StdinOnce": bool(run and not detach and ns.interactive and attach_stdin),
        "Env": env,
        "Cmd": command or None,
        "Image": ns.image,
        "Volumes": {},
        "WorkingDir": ns.workdir or "",
        "Entrypoint": None,
        "Labels": label_map,
    }
    if ns.entrypoint is not None:
        config["Entrypoint"] = [ns.entrypoint] if ns.entrypoint else [""]
    if ns.stop_signal:
        config["StopSignal"] = ns.stop_signal
    if ns.stop_timeout is not None:
        config["StopTimeout"] = ns.stop_timeout
    if ns.mac_address:
        config["MacAddress"] = ns.mac_address
    health = _healthcheck(ns)
    if health is not None:
        config["Healthcheck"] = health

    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in ns.publish:
        e, b = publish(spec)
        exposed.update(e)
        for k, v in b.items():
            bindings.setdefault(k, []).extend(v)
    for spec in ns.expose:
        for key in expose(spec):
            exposed[key] = {}
    if exposed:
        config["ExposedPorts"] = exposed

    binds: list[str] = []
    for spec in ns.volume:
        volume(spec, binds, config["Volumes"])

    restart = restart_policy(ns.restart) if ns.restart else {"Name": "no"}
    if ns.rm and restart["Name"] != "no":
        raise OptionError("Conflicting options: --restart and --rm")

    host: dict[str, Any] = {
        "Binds": binds or None,
        "NetworkMode": ns.network or "default",
        "PortBindings": bindings,
        "RestartPolicy": restart,
        "AutoRemove": ns.rm,
        "VolumesFrom": ns.volumes_from or None,
        "CapAdd": ns.cap_add or None,
        "CapDrop": ns.cap_drop or None,
        "Dns": ns.dns,
        "DnsOptions": ns.dns_option,
        "DnsSearch": ns.dns_search,
        "ExtraHosts": [add_host(h) for h in ns.add_host] or None,
        "GroupAdd": ns.group_add or None,
        "Links": ns.link or None,
        "Privileged": ns.privileged,
        "PublishAllPorts": ns.publish_all,
        "ReadonlyRootfs": ns.read_only,
        "SecurityOpt": ns.security_opt or None,
        "Tmpfs": tmpfs(ns.tmpfs) or None,
        "Sysctls": kv_map("--sysctl", ns.sysctl) or None,
        "Mounts": [mount(m) for m in ns.mount] or None,
        "Ulimits": [ulimit(u) for u in ns.ulimit] or None,
        "Devices": [device(d) for d in ns.device] or None,
    }
    if ns.init:
        host["Init"] = True
    if ns.log_driver or ns.log_opt:
        host["LogConfig"] = {"Type": ns.log_driver or "", "Config": kv_map("--log-opt", ns.log_opt)}
    if ns.memory is not None:
        host["Memory"] = ram_in_bytes(ns.memory)
    if ns.memory_swap is not None:
        host["MemorySwap"] = memory_swap(ns.memory_swap)
    if ns.memory_reservation is not None:
        host["MemoryReservation"] = ram_in_bytes(ns.memory_reservation)
    if ns.memory_swappiness is not None:
        host["MemorySwappiness"] = ns.memory_swappiness
    if ns.oom_kill_disable:
        host["OomKillDisable"] = True
    if ns.oom_score_adj is not None:
        if not -1000 <= ns.oom_score_adj <= 1000:
            raise OptionError("Invalid value: {}, range for oom score adj is [-1000, 1000]"
                              .format(ns.oom_score_adj))
        host["OomScoreAdj"] = ns.oom_score_adj
    if ns.cpus is not None:
        host["NanoCpus"] = nano_cpus(ns.cpus)
    for attr, key in (("cpu_shares", "CpuShares"), ("cpu_period", "CpuPeriod"),
                      ("cpu_quota", "CpuQuota"), ("cpuset_cpus", "CpusetCpus"),
                      ("cpuset_mems", "CpusetMems"), ("pids_limit", "PidsLimit"),
                      ("ipc", "IpcMode"), ("pid", "PidMode"), ("uts", "UTSMode"),
                      ("userns", "UsernsMode"), ("cgroupns", "CgroupnsMode"),
                      ("cgroup_parent", "CgroupParent"), ("runtime", "Runtime")):
        value = getattr(ns, attr)
        if value is not None:
            host[key] = value
    if ns.shm_size is not None:
        host["ShmSize"] = ram_in_bytes(ns.shm_size)
    host = {k: v for k, v in host.items() if v is not None}

    networking: dict[str, Any] = {}
    if ns.network_alias or ns.ip or ns.ip6:
        if not ns.network or ns.network in ("default", "bridge", "host", "none"):
            if ns.network_alias:
                raise OptionError("network-scoped aliases are only supported for user-defined "
                                  "networks")
        endpoint: dict[str, Any] = {}
        if ns.network_alias:
            endpoint["Aliases"] = ns.network_alias
        if ns.ip or ns.ip6:
            ipam = {}
            if ns.ip:
                ipam["IPv4Address"] = ns.ip
            if ns.ip6:
                ipam["IPv6Address"] = ns.ip6
            endpoint["IPAMConfig"] = ipam
        networking = {"EndpointsConfig": {ns.network or "default": endpoint}}

    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = networking
    return CreateRequest(body=body, name=ns.name, platform=ns.platform, pull=ns.pull)
