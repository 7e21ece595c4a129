"""A normalised service -> Engine API bodies (pure): names, labels, config hash and the
``POST /containers/create`` body, as docker compose v2 makes them.

Names: containers ``<project>-<service>-<n>`` (v2's separator; ``container_name`` when
set), networks ``<project>_<net>``, volumes ``<project>_<vol>``, built images
``<project>-<service>``. Labels are v2's ``com.docker.compose.*`` so ``docker compose``
(and docker-compose 1.29, which reads project/service/container-number/oneoff) see a conch
compose project as their own. The config hash is the sha256 of the service's canonical
JSON without what scaling changes (replicas, scale), so only a changed service is
recreated.

``x-autoscale`` becomes ``io.conch.autoscale.*`` labels on every replica: conchd's
autoscaler (``conch.engine.scaling``) reads its policy from them, so the policy lives in
the records and survives a conchd restart.
"""

from __future__ import annotations

import hashlib
import json

from conch.errors import InvalidArgument
from conch.compose.normalize import duration_ns, size_bytes

__all__ = ["LABEL", "COMPOSE_VERSION", "container_name", "config_hash", "create_body",
           "network_name", "volume_name", "image_name", "autoscale_labels"]

COMPOSE_VERSION = "2.29.7"  # the docker compose v2 release whose labels these are
P = "com.docker.compose."
LABEL = {k: P + k for k in ("project", "service", "container-number", "oneoff", "config-hash",
                            "version", "image", "depends_on", "network", "volume",
                            "project.working_dir", "project.config_files",
                            "project.environment_file", "replace")}
AUTOSCALE_PREFIX = "io.conch.autoscale."
_AUTOSCALE_KEYS = ("min_replicas", "max_replicas", "target_cpu_percent", "tolerance",
                   "sync_period", "scale_up_window", "scale_down_window",
                   "target_requests_per_second")


def container_name(project: str, service: str, number: int, svc: dict | None = None,
                   oneoff: str | None = None) -> str:
    if svc and svc.get("container_name") and oneoff is None:
        return svc["container_name"]
    if oneoff:
        return f"{project}-{service}-run-{oneoff}"
    return f"{project}-{service}-{number}"


def network_name(project: str, key: str, spec: dict) -> str:
    if spec.get("external"):
        return spec.get("name") or key
    return spec.get("name") or f"{project}_{key}"


def volume_name(project: str, key: str, spec: dict) -> str:
    if spec.get("external"):
        return spec.get("name") or key
    return spec.get("name") or f"{project}_{key}"


def image_name(project: str, service: str, svc: dict) -> str:
    return svc.get("image") or f"{project}-{service}"


def config_hash(svc: dict) -> str:
    keep = {k: v for k, v in svc.items() if k not in ("replicas", "scale", "profiles")}
    deploy = dict(keep.get("deploy") or {})
    deploy.pop("replicas", None)
    keep["deploy"] = deploy
    blob = json.dumps(keep, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def autoscale_labels(svc: dict, where: str) -> dict[str, str]:
    spec = svc.get("x-autoscale")
    if not spec:
        return {}
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{where}.x-autoscale must be a mapping")
    unknown = set(spec) - set(_AUTOSCALE_KEYS)
    if unknown:
        raise InvalidArgument(f"{where}.x-autoscale additional property "
                              f"{sorted(unknown)[0]!r} is not allowed")
    lo, hi = int(spec.get("min_replicas", 1)), int(spec.get("max_replicas", 0))
    if lo < 1 or hi < lo:
        raise InvalidArgument(f"{where}.x-autoscale: need 1 <= min_replicas <= max_replicas")
    if "target_cpu_percent" not in spec and "target_requests_per_second" not in spec:
        raise InvalidArgument(f"{where}.x-autoscale: target_cpu_percent (or "
                              "target_requests_per_second) is required")
    out = {}
    for key in _AUTOSCALE_KEYS:
        if key in spec:
            value = spec[key]
            if key.endswith(("_window", "_period")):
                value = f"{duration_ns(value, where=f'{where}.x-autoscale.{key}') / 1e9:g}"
            out[AUTOSCALE_PREFIX + key] = str(value)
    return out


def _cpus(svc: dict) -> float | None:
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    value = limits.get("cpus", svc.get("cpus"))
    return float(value) if value not in (None, "") else None


def _memory(svc: dict, key: str, legacy: str) -> int | None:
    res = ((svc.get("deploy") or {}).get("resources") or {})
    value = (res.get(key) or {}).get("memory", svc.get(legacy))
    return size_bytes(value) if value not in (None, "") else None


def _restart(svc: dict) -> dict:
    policy = svc.get("restart")
    if not policy:
        cond = ((svc.get("deploy") or {}).get("restart_policy") or {}).get("condition")
        policy = {"any": "always", "on-failure": "on-failure", "none": "no"}.get(cond or "", "no")
    name, _, count = str(policy).partition(":")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}


def _mounts(project: str, svc: dict, project_volumes: dict) -> list[dict]:
    mounts = []
    for v in svc["volumes"]:
        if v["type"] == "volume":
            src = volume_name(project, v["source"], project_volumes.get(v["source"], {})) \
                if v["source"] else ""
            m = {"Type": "volume", "Source": src, "Target": v["target"], "ReadOnly": v["read_only"]}
            if src:
                m["VolumeOptions"] = {"Labels": {LABEL["project"]: project,
                                                 LABEL["volume"]: v["source"]}}
        elif v["type"] == "bind":
            m = {"Type": "bind", "Source": v["source"], "Target": v["target"],
                 "ReadOnly": v["read_only"]}
        else:
            m = {"Type": "tmpfs", "Target": v["target"]}
        mounts.append(m)
    return mounts


def _file_mounts(svc: dict, project) -> list[dict]:
    """secrets and configs ``file:`` as read-only binds (compose does the same for
    file-based ones: /run/secrets/<name>, and /<name> for configs)."""
    out = []
    for kind, default_dir in (("secrets", "/run/secrets/"), ("configs", "/")):
        table = getattr(project, kind)
        for ref in svc[kind]:
            spec = table[ref["source"]]
            if not spec.get("file"):
                raise InvalidArgument(f"{kind[:-1]} {ref['source']!r}: only file-based "
                                      f"{kind} are supported")
            target = ref.get("target") or ref["source"]
            if not target.startswith("/"):
                target = default_dir + target
            out.append({"Type": "bind", "Source": spec["file"], "Target": target, "ReadOnly": True})
    return out


def create_body(project, service: str, number: int, *, image: str, net_names: dict[str, str],
                oneoff: str | None = None, command: list[str] | None = None,
                extra_env: dict | None = None, ports: bool = True) -> dict:
    """The ``POST /containers/create`` body for replica ``number`` of ``service``."""
    svc = project.services[service]
    where = f"services.{service}"
    labels = {**svc["labels"], **autoscale_labels(svc, where),
              LABEL["project"]: project.name, LABEL["service"]: service,
              LABEL["container-number"]: str(number), LABEL["oneoff"]: "True" if oneoff else "False",
              LABEL["config-hash"]: config_hash(svc), LABEL["version"]: COMPOSE_VERSION,
              LABEL["image"]: image,
              LABEL["project.working_dir"]: project.working_dir,
              LABEL["project.config_files"]: ",".join(project.config_files),
              LABEL["depends_on"]: ",".join(f"{d}:{v['condition']}:{str(v['restart']).lower()}"
                                            for d, v in svc["depends_on"].items())}
    env = {**svc["environment"], **(extra_env or {})}
    host: dict = {
        "RestartPolicy": _restart(svc) if not oneoff else {"Name": ""},
        "Mounts": _mounts(project.name, svc, project.volumes) + _file_mounts(svc, project),
        "Init": svc.get("init"), "Privileged": bool(svc.get("privileged")),
        "CapAdd": svc.get("cap_add"), "CapDrop": svc.get("cap_drop"),
        "Dns": svc.get("dns") if isinstance(svc.get("dns"), list) else ([svc["dns"]] if svc.get("dns") else None),
        "ExtraHosts": [f"{k}:{v}" for k, v in _hosts(svc.get("extra_hosts")).items()] or None,
        "ReadonlyRootfs": bool(svc.get("read_only")),
        "Sysctls": svc.get("sysctls") if isinstance(svc.get("sysctls"), dict) else None,
        "PidsLimit": svc.get("pids_limit"),
    }
    if (cpus := _cpus(svc)) is not None:
        host["NanoCpus"] = int(cpus * 1e9)
    if (mem := _memory(svc, "limits", "mem_limit")) is not None:
        host["Memory"] = mem
    if (res := _memory(svc, "reservations", "mem_reservation")) is not None:
        host["MemoryReservation"] = res
    if svc.get("cpu_shares"):
        host["CpuShares"] = int(svc["cpu_shares"])
    if svc.get("shm_size"):
        host["ShmSize"] = size_bytes(svc["shm_size"])
    if svc.get("tmpfs"):
        tmpfs = svc["tmpfs"] if isinstance(svc["tmpfs"], list) else [svc["tmpfs"]]
        host["Tmpfs"] = {t.split(":")[0]: t.partition(":")[2] for t in tmpfs}
    exposed = {}
    if ports:
        bindings: dict[str, list] = {}
        for p in svc["ports"]:
            key = f"{p['target']}/{p['protocol']}"
            bindings.setdefault(key, []).append({"HostIp": p["host_ip"], "HostPort": p["published"]})
            exposed[key] = {}
        host["PortBindings"] = bindings
    for e in svc["expose"]:
        exposed[e if "/" in e else f"{e}/tcp"] = {}
    if svc.get("network_mode"):
        host["NetworkMode"] = svc["network_mode"]
        endpoints = {}
    else:
        first = next(iter(svc["networks"]))
        host["NetworkMode"] = net_names[first]
        endpoints = {net_names[k]: _endpoint(service, v, number, oneoff)
                     for k, v in svc["networks"].items()}
    if svc.get("logging"):
        host["LogConfig"] = {"Type": svc["logging"].get("driver", "json-file"),
                             "Config": svc["logging"].get("options") or {}}
    body = {
        "Image": image, "Labels": labels,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Cmd": command if command is not None else svc["command"],
        "Entrypoint": svc["entrypoint"],
        "WorkingDir": svc.get("working_dir") or "", "User": svc.get("user") or "",
        "Hostname": svc.get("hostname") or "", "Domainname": svc.get("domainname") or "",
        "Tty": bool(svc.get("tty")), "OpenStdin": bool(svc.get("stdin_open")),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "StopSignal": svc.get("stop_signal"),
        "ExposedPorts": exposed or None,
        "HostConfig": {k: v for k, v in host.items() if v is not None},
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }
    if "stop_grace_period" in svc:
        body["StopTimeout"] = int(svc["stop_grace_period"] // 1_000_000_000)
    if svc["healthcheck"]:
        hc = svc["healthcheck"]
        body["Healthcheck"] = {"Test": hc.get("test"), "Interval": hc.get("interval", 0),
                               "Timeout": hc.get("timeout", 0), "Retries": hc.get("retries", 0),
                               "StartPeriod": hc.get("start_period", 0)}
    return {k: v for k, v in body.items() if v is not None}


def _hosts(value) -> dict:
    if not value:
        return {}
    if isinstance(value, dict):
        return {k: str(v) for k, v in value.items()}
    out = {}
    for item in value:
        k, _, v = str(item).partition(":") if "=" not in str(item) else str(item).partition("=")
        out[k] = v
    return out


def _endpoint(service: str, spec: dict, number: int, oneoff: str | None) -> dict:
    aliases = [service, *(spec.get("aliases") or ())] if not oneoff else list(spec.get("aliases") or ())
    ep: dict = {"Aliases": list(dict.fromkeys(aliases))}
    if spec.get("ipv4_address"):
        ep["IPAMConfig"] = {"IPv4Address": spec["ipv4_address"]}
    return ep
