"""``conch kube generate``: Kubernetes objects for what runs here, read through the API.

A name given on the command line is, in this order: a container; the containers of a pod
that ``conch kube play`` made (label ``io.conch.kube.pod``); a Deployment play made (label
``io.conch.kube.owner``: its first pod, one replica per pod); the containers of a compose
project (``com.docker.compose.project``, one workload per ``com.docker.compose.service``,
as many replicas as that service has containers). Each workload becomes a Deployment (or
a Pod with ``--type pod``) and, as needed:

- a PersistentVolumeClaim per named volume (anonymous volumes become ``emptyDir``);
- a ConfigMap per bind-mounted file (a Secret when it is mounted under /run/secrets, where
  compose puts secrets), mounted with ``subPath`` at the same place; bind-mounted
  directories become ``hostPath`` (with a comment: the node must have the path);
- with ``--service``, a Service for its ports (NodePort when a port is published).

Everything that has no Kubernetes equivalent is named in a ``# not translated:`` comment
at the top of the document it belongs to: nothing is dropped silently. What is only the
image's own (its Env, Cmd, Entrypoint, WorkingDir) is left to the image.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

from conch import errors
from conch.kube import names, quantity

POD_LABEL = "io.conch.kube.pod"
OWNER_LABEL = "io.conch.kube.owner"
PLAY_NETWORK = "conch-kube"  # play's pod network: the cluster network's stand-in
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
SECRETS_DIR = "/run/secrets/"
# labels conch (or compose) puts on containers for its own bookkeeping
_OWN_LABELS = ("io.conch.kube.", "io.conch.port-group", "com.docker.compose.")


@dataclass
class Doc:
    """One YAML document and the comments printed above it."""

    obj: dict
    notes: list[str] = field(default_factory=list)


@dataclass
class Workload:
    name: str
    containers: list[dict]  # inspect JSON, one per container of the pod
    replicas: int = 1
    origin: str = ""


# -- finding what to translate -------------------------------------------------------------

def resolve(client, ref: str) -> list[Workload]:
    try:
        c = client.get(f"/containers/{ref}/json")
        return [Workload(names.dns_label(c["Name"].lstrip("/")), [c], 1, f"container {ref}")]
    except errors.NotFound:
        pass
    pod = _listed(client, f"{POD_LABEL}={ref}")
    if pod:
        pod.sort(key=_pod_order)
        return [Workload(names.dns_label(ref), [_inspect(client, c) for c in pod], 1, f"pod {ref}")]
    played = _listed(client, f"{OWNER_LABEL}=Deployment/{ref}")
    if played:  # a Deployment that play made: its first pod, as many replicas as pods
        pods: dict[str, list[dict]] = {}
        for c in sorted(played, key=_pod_order):
            pods.setdefault(c["Labels"].get(POD_LABEL, ""), []).append(c)
        first = pods[sorted(pods)[0]]
        return [Workload(names.dns_label(ref), [_inspect(client, c) for c in first], len(pods),
                         f"deployment {ref}")]
    project = _listed(client, f"{PROJECT_LABEL}={ref}")
    if not project:
        raise errors.NotFound(f"no container, pod or compose project named {ref!r}")
    services: dict[str, list[dict]] = {}
    for c in project:
        services.setdefault(c["Labels"].get(SERVICE_LABEL, c["Names"][0].lstrip("/")), []).append(c)
    out = []
    for service, members in sorted(services.items()):
        members.sort(key=lambda c: int(c["Labels"].get(NUMBER_LABEL, "0") or 0))
        out.append(Workload(names.dns_label(service), [_inspect(client, members[0])],
                            len(members), f"compose project {ref}, service {service}"))
    return out


def _pod_order(c: dict) -> tuple:
    # play's order (the first container holds the pod's network namespace), else creation
    index = (c.get("Labels") or {}).get("io.conch.kube.index", "")
    return (int(index) if index.isdigit() else 1 << 30, c.get("Created", 0))


def _listed(client, label: str) -> list[dict]:
    return client.get("/containers/json", all=True, filters={"label": [label]}) or []


def _inspect(client, summary: dict) -> dict:
    return client.get(f"/containers/{summary['Id']}/json")


# -- the whole command ----------------------------------------------------------------------

def generate(client, refs: list[str], *, service: bool = False, replicas: int | None = None,
             kind: str = "deployment") -> list[Doc]:
    docs: list[Doc] = []
    for ref in refs:
        for wl in resolve(client, ref):
            if replicas is not None:
                wl.replicas = replicas
            docs += translate(client, wl, service=service, kind=kind)
    return docs


def translate(client, wl: Workload, *, service: bool, kind: str) -> list[Doc]:
    notes: list[str] = []
    extra: list[Doc] = []
    volumes: dict[str, dict] = {}
    containers = []
    for c in wl.containers:
        image = _image_config(client, c["Config"].get("Image") or c.get("Image", ""))
        played = (c["Config"].get("Labels") or {}).get("io.conch.kube.container")
        if played:
            cname = names.dns_label(played)
        elif len(wl.containers) == 1:
            cname = wl.name
        else:
            cname = names.dns_label(c["Name"].lstrip("/").removeprefix(wl.name + "-") or wl.name)
        spec = container_spec(c, image, cname, notes)
        spec_mounts(c, cname, wl, spec, volumes, extra, notes, _played_volumes(client, c))
        containers.append(spec)
    if kind != "pod" and wl.replicas > 1 and not service:
        for spec in containers:  # one host port cannot go to every replica
            for p in spec.get("ports") or []:
                if p.pop("hostPort", None) is not None:
                    p.pop("hostIP", None)
                    notes.append(f"{spec['name']}: host port of {p['containerPort']}/{p['protocol']} "
                                 f"with {wl.replicas} replicas (use --service)")
    first = wl.containers[0]
    pod_spec = {"containers": containers}
    pod_spec.update(pod_level(first, kind, notes))
    if volumes:
        pod_spec["volumes"] = list(volumes.values())
    labels, annotations = _labels(first["Config"].get("Labels") or {}, notes)
    labels["app"] = wl.name
    meta = {"name": wl.name, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    if kind == "pod":
        if wl.replicas != 1:
            notes.append(f"replicas {wl.replicas}: a Pod is one replica (use --type deployment)")
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
    else:
        template_meta = {"labels": dict(labels)}
        if annotations:
            template_meta["annotations"] = dict(annotations)
        obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
               "spec": {"replicas": wl.replicas, "selector": {"matchLabels": {"app": wl.name}},
                        "template": {"metadata": template_meta, "spec": pod_spec}}}
    head = [f"from {wl.origin}"] + [f"not translated: {n}" for n in notes]
    docs = [Doc(obj, head)] + extra
    if service:
        svc = service_doc(wl, containers)
        if svc is not None:
            docs.append(svc)
    return docs


def _image_config(client, ref: str) -> dict:
    try:
        return (client.get(f"/images/{ref}/json") or {}).get("Config") or {}
    except errors.NotFound:
        return {}


def _labels(all_labels: dict, notes: list[str]) -> tuple[dict, dict]:
    own = {k: v for k, v in all_labels.items() if not k.startswith(_OWN_LABELS)}
    good, rest = names.split_labels(own)
    annotations = {}
    for k, v in rest.items():
        if names.is_label_key(k):
            annotations[k] = v  # a valid key whose value is too long or odd: an annotation
        else:
            notes.append(f"label {k!r} (not a valid Kubernetes key)")
    return good, annotations


# -- one container ---------------------------------------------------------------------------

def container_spec(c: dict, image: dict, cname: str, notes: list[str]) -> dict:
    cfg, host = c["Config"], c["HostConfig"]
    spec: dict = {"name": cname, "image": cfg.get("Image") or c.get("Image")}
    entry, cmd = cfg.get("Entrypoint") or [], cfg.get("Cmd") or []
    if entry != (image.get("Entrypoint") or []):
        if entry:
            spec["command"] = list(entry)
        else:
            notes.append(f"{cname}: the image's entrypoint removed (--entrypoint '')")
    if cmd and (cmd != (image.get("Cmd") or []) or "command" in spec):
        spec["args"] = list(cmd)
    if cfg.get("WorkingDir") and cfg["WorkingDir"] != image.get("WorkingDir"):
        spec["workingDir"] = cfg["WorkingDir"]
    image_env = set(image.get("Env") or [])
    env = [e for e in cfg.get("Env") or [] if e not in image_env]
    if env:
        spec["env"] = [{"name": k, "value": v} for k, _, v in (e.partition("=") for e in env)]
    ports = container_ports(c, notes)
    if ports:
        spec["ports"] = ports
    res = resources(host, cname, notes)
    if res:
        spec["resources"] = res
    probe = liveness(cfg.get("Healthcheck"), cname, notes)
    if probe:
        spec["livenessProbe"] = probe
    sec = security(cfg, host, cname, notes)
    if sec:
        spec["securityContext"] = sec
    if cfg.get("Tty"):
        spec["tty"] = True
    if cfg.get("OpenStdin"):
        spec["stdin"] = True
    if cfg.get("StopSignal") and cfg["StopSignal"] not in ("SIGTERM", "15"):
        notes.append(f"{cname}: stop signal {cfg['StopSignal']}")
    return spec


def container_ports(c: dict, notes: list[str]) -> list[dict]:
    exposed = set((c["Config"].get("ExposedPorts") or {}))
    bindings = c["HostConfig"].get("PortBindings") or {}
    out = []
    for key in sorted(exposed | set(bindings), key=_port_key):
        num, _, proto = key.partition("/")
        port = {"containerPort": int(num), "protocol": (proto or "tcp").upper()}
        if port["protocol"] not in ("TCP", "UDP", "SCTP"):
            notes.append(f"port {key}")
            continue
        for b in bindings.get(key) or []:
            if b.get("HostPort"):
                port["hostPort"] = int(b["HostPort"].split("-")[0])
                if b.get("HostIp") not in (None, "", "0.0.0.0", "::"):
                    port["hostIP"] = b["HostIp"]
                break  # one hostPort per containerPort in Kubernetes
        if len(bindings.get(key) or []) > 1:
            notes.append(f"port {key}: published {len(bindings[key])} times, kept the first")
        out.append(port)
    return out


def _port_key(key: str) -> tuple[int, str]:
    num, _, proto = key.partition("/")
    return int(num.split("-")[0]), proto


def resources(host: dict, cname: str, notes: list[str]) -> dict:
    limits, requests = {}, {}
    if host.get("Memory"):
        limits["memory"] = quantity.format_memory(host["Memory"])
    if host.get("NanoCpus"):
        limits["cpu"] = quantity.format_cpu(host["NanoCpus"])
    elif host.get("CpuQuota") and host["CpuQuota"] > 0:
        period = host.get("CpuPeriod") or 100000
        limits["cpu"] = quantity.format_cpu(host["CpuQuota"] * 10**9 // period)
    if host.get("MemoryReservation"):
        requests["memory"] = quantity.format_memory(host["MemoryReservation"])
    if host.get("CpuShares"):
        requests["cpu"] = f"{max(1, -(-host['CpuShares'] * 1000 // 1024))}m"
    for key, what in (("MemorySwap", "memory+swap limit"), ("PidsLimit", "pids limit"),
                      ("BlkioWeight", "blkio weight"), ("CpusetCpus", "cpuset"),
                      ("CpusetMems", "cpuset mems"), ("KernelMemory", "kernel memory")):
        v = host.get(key)
        if v and v != -1 and not (key == "MemorySwap" and v == 2 * (host.get("Memory") or 0)):
            notes.append(f"{cname}: {what} {v}")
    out = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _seconds(ns: int | None, default: int) -> int:
    if not ns:
        return default
    return max(1, -(-ns // 10**9))


def liveness(hc: dict | None, cname: str, notes: list[str]) -> dict | None:
    if not hc or not hc.get("Test"):
        return None
    test = hc["Test"]
    if test[0] == "NONE":
        return None
    if test[0] == "CMD":
        command = list(test[1:])
    elif test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        notes.append(f"{cname}: healthcheck {test!r}")
        return None
    probe = {"exec": {"command": command},
             "periodSeconds": _seconds(hc.get("Interval"), 30),
             "timeoutSeconds": _seconds(hc.get("Timeout"), 30),
             "failureThreshold": hc.get("Retries") or 3}
    if hc.get("StartPeriod"):
        probe["initialDelaySeconds"] = _seconds(hc["StartPeriod"], 0)
    if hc.get("StartInterval"):
        notes.append(f"{cname}: healthcheck start interval")
    return probe


def security(cfg: dict, host: dict, cname: str, notes: list[str]) -> dict:
    sec: dict = {}
    user = cfg.get("User") or ""
    if user:
        uid, _, gid = user.partition(":")
        if uid.isdigit() and (not gid or gid.isdigit()):
            sec["runAsUser"] = int(uid)
            if gid:
                sec["runAsGroup"] = int(gid)
        else:
            notes.append(f"{cname}: user {user!r} (Kubernetes needs numeric ids)")
    if host.get("Privileged"):
        sec["privileged"] = True
    caps = {}
    if host.get("CapAdd"):
        caps["add"] = [c.upper().removeprefix("CAP_") for c in host["CapAdd"]]
    if host.get("CapDrop"):
        caps["drop"] = [c.upper().removeprefix("CAP_") for c in host["CapDrop"]]
    if caps:
        sec["capabilities"] = caps
    if host.get("ReadonlyRootfs"):
        sec["readOnlyRootFilesystem"] = True
    for opt in host.get("SecurityOpt") or []:
        notes.append(f"{cname}: security option {opt!r}")
    return sec


# -- volumes -----------------------------------------------------------------------------------

def _played_volumes(client, c: dict) -> dict[str, str]:
    """Named volumes of ``c`` that ``conch kube play`` made for an emptyDir:
    volume name -> the pod's volume name."""
    out = {}
    for m in c.get("Mounts") or []:
        if m.get("Type") != "volume" or not m.get("Name"):
            continue
        try:
            labels = (client.get(f"/volumes/{m['Name']}") or {}).get("Labels") or {}
        except errors.NotFound:
            continue
        pod = labels.get(POD_LABEL)
        if OWNER_LABEL in labels and pod and m["Name"].startswith(pod + "-"):
            out[m["Name"]] = m["Name"][len(pod) + 1:]
    return out


def spec_mounts(c: dict, cname: str, wl: Workload, spec: dict, volumes: dict,
                extra: list[Doc], notes: list[str], empty_dirs: dict[str, str] | None = None) -> None:
    mounts = []
    for m in c.get("Mounts") or []:
        vm = {"mountPath": m["Destination"]}
        if not m.get("RW", True):
            vm["readOnly"] = True
        kind = m.get("Type")
        if kind == "volume":
            name = m.get("Name") or ""
            if name in (empty_dirs or {}):  # play's emptyDir: one again
                vname = names.dns_label(empty_dirs[name])
                volumes.setdefault(vname, {"name": vname, "emptyDir": {}})
            elif len(name) == 64 and all(ch in "0123456789abcdef" for ch in name):
                vname = names.dns_label(f"anon-{name[:12]}")
                volumes.setdefault(vname, {"name": vname, "emptyDir": {}})
                notes.append(f"{cname}: anonymous volume at {m['Destination']} as an emptyDir "
                             f"(its data is not carried over)")
            else:
                claim = names.dns_subdomain(name)
                vname = names.dns_label(name)
                if vname not in volumes:
                    volumes[vname] = {"name": vname, "persistentVolumeClaim": {"claimName": claim}}
                    extra.append(pvc_doc(claim, name))
        elif kind == "bind":
            vname = _bind_volume(m, cname, wl, vm, volumes, extra, notes)
        elif kind == "tmpfs":
            vname = names.dns_label(f"tmpfs-{m['Destination']}")
            volumes[vname] = {"name": vname, "emptyDir": {"medium": "Memory"}}
        else:
            notes.append(f"{cname}: {kind} mount at {m['Destination']}")
            continue
        vm["name"] = vname
        mounts.append(dict(sorted(vm.items(), key=lambda kv: kv[0] != "name")))
    for dest, opts in sorted((c["HostConfig"].get("Tmpfs") or {}).items()):
        if any(vm["mountPath"] == dest for vm in mounts):
            continue
        vname = names.dns_label(f"tmpfs-{dest}")
        volumes[vname] = {"name": vname, "emptyDir": {"medium": "Memory"}}
        mounts.append({"name": vname, "mountPath": dest})
        if opts:
            notes.append(f"{cname}: tmpfs options {opts!r} at {dest}")
    if mounts:
        spec["volumeMounts"] = mounts


def _bind_volume(m: dict, cname: str, wl: Workload, vm: dict, volumes: dict,
                 extra: list[Doc], notes: list[str]) -> str:
    source, dest = m["Source"], m["Destination"]
    if os.path.isfile(source):
        try:
            with open(source, "rb") as f:
                data = f.read((1 << 20) + 1)
        except OSError:
            data = None
        if data is not None and len(data) <= 1 << 20:  # ConfigMaps hold at most 1 MiB
            secret = dest.startswith(SECRETS_DIR)
            obj_name = names.dns_subdomain(f"{wl.name}-{os.path.basename(dest)}")
            key = _config_key(os.path.basename(dest))
            vname = names.dns_label(f"{'secret' if secret else 'config'}-{os.path.basename(dest)}")
            ref = {"secretName": obj_name} if secret else {"name": obj_name}
            ref["items"] = [{"key": key, "path": key}]
            volumes[vname] = {"name": vname, ("secret" if secret else "configMap"): ref}
            vm["subPath"] = key
            extra.append(config_doc("Secret" if secret else "ConfigMap", obj_name, key, data, source))
            return vname
        notes.append(f"{cname}: bind of the file {source} (unreadable or over 1 MiB) as hostPath")
    else:
        notes.append(f"{cname}: bind mount {source} -> {dest} as hostPath (the node must have it)")
    vname = names.dns_label(f"host-{os.path.basename(source.rstrip('/')) or 'root'}")
    volumes[vname] = {"name": vname, "hostPath": {"path": source}}
    return vname


def _config_key(name: str) -> str:
    key = "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in name)
    return key.lstrip(".") or "data"


def pvc_doc(claim: str, volume: str) -> Doc:
    return Doc({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "labels": {"app.kubernetes.io/managed-by": "conch"}},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}},
               [f"from volume {volume}", "the size is a default: conch volumes have no size"])


def config_doc(kind: str, name: str, key: str, data: bytes, source: str) -> Doc:
    obj: dict = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    if kind == "Secret":
        obj["type"] = "Opaque"
        obj["data"] = {key: base64.b64encode(data).decode()}
    else:
        try:
            obj["data"] = {key: data.decode("utf-8")}
        except UnicodeDecodeError:
            obj["binaryData"] = {key: base64.b64encode(data).decode()}
    return Doc(obj, [f"from the file {source}"])


# -- pod level ---------------------------------------------------------------------------------

_DEFAULTS = {
    "NetworkMode": ("default", "bridge", ""), "IpcMode": ("", "private", "shareable"),
    "PidMode": ("",), "UTSMode": ("",), "UsernsMode": ("",), "CgroupnsMode": ("", "private", "host"),
    "Isolation": ("", "default"), "Runtime": ("", "runc", "conch"), "CgroupParent": ("",),
    "VolumeDriver": ("",), "Cgroup": ("",),
}
_LIST_FIELDS = {"Dns": "DNS servers", "DnsSearch": "DNS search domains", "DnsOptions": "DNS options",
                "Devices": "devices", "Ulimits": "ulimits", "Links": "links",
                "VolumesFrom": "volumes-from", "GroupAdd": "extra groups",
                "DeviceRequests": "device requests", "DeviceCgroupRules": "device cgroup rules"}


def pod_level(c: dict, kind: str, notes: list[str]) -> dict:
    host = c["HostConfig"]
    out: dict = {}
    mode = host.get("NetworkMode") or "default"
    if mode == "host":
        out["hostNetwork"] = True
    elif mode.startswith("container:"):
        notes.append(f"network {mode!r} (another container's namespace: containers that share "
                     "one belong in one pod)")
    elif mode not in (*_DEFAULTS["NetworkMode"], PLAY_NETWORK):
        notes.append(f"network {mode!r} (a pod has one flat cluster network)")
    extra_nets = [n for n in ((c.get("NetworkSettings") or {}).get("Networks") or {})
                  if n not in ("bridge", "host", "none", mode, PLAY_NETWORK)]
    for n in sorted(extra_nets):
        notes.append(f"network {n!r}")
    policy = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if kind == "pod":
        out["restartPolicy"] = {"always": "Always", "unless-stopped": "Always",
                                "on-failure": "OnFailure"}.get(policy, "Never")
        if policy == "on-failure" and (host["RestartPolicy"].get("MaximumRetryCount") or 0):
            notes.append(f"restart retry count {host['RestartPolicy']['MaximumRetryCount']}")
    elif policy not in ("always", "unless-stopped"):
        notes.append(f"restart policy {policy!r} (a Deployment's pods always restart)")
    aliases: dict[str, list[str]] = {}
    for entry in host.get("ExtraHosts") or []:
        name, _, ip = entry.partition(":")
        if ip == "host-gateway" or not ip:
            notes.append(f"extra host {entry!r}")
        else:
            aliases.setdefault(ip, []).append(name)
    if aliases:
        out["hostAliases"] = [{"ip": ip, "hostnames": hs} for ip, hs in aliases.items()]
    sysctls = host.get("Sysctls") or {}
    if sysctls:
        out["securityContext"] = {"sysctls": [{"name": k, "value": str(v)}
                                              for k, v in sorted(sysctls.items())]}
    hostname = c["Config"].get("Hostname") or ""
    played_pod = (c["Config"].get("Labels") or {}).get(POD_LABEL)
    if hostname and not c["Id"].startswith(hostname) and mode != "host" and hostname != played_pod:
        out["hostname"] = names.dns_label(hostname)
    for key, defaults in _DEFAULTS.items():
        if key != "NetworkMode" and (host.get(key) or "") not in defaults:
            notes.append(f"{key} {host[key]!r}")
    for key, what in _LIST_FIELDS.items():
        if host.get(key):
            notes.append(f"{what} {host[key]!r}")
    if c["Config"].get("StopTimeout") is not None:
        out["terminationGracePeriodSeconds"] = int(c["Config"]["StopTimeout"])
    for key, what in (("AutoRemove", "--rm"), ("OomKillDisable", "--oom-kill-disable"),
                      ("OomScoreAdj", "--oom-score-adj"), ("PublishAllPorts", "-P")):
        if host.get(key):
            notes.append(f"{what} {host[key]!r}")
    for key, what in (("Domainname", "domain name"), ("MacAddress", "MAC address")):
        if c["Config"].get(key):
            notes.append(f"{what} {c['Config'][key]!r}")
    if host.get("Init"):
        notes.append("--init (Kubernetes runs no init process for you)")
    log = (host.get("LogConfig") or {}).get("Type")
    if log and log not in ("json-file", "local", ""):
        notes.append(f"log driver {log!r}")
    if host.get("ShmSize") and host["ShmSize"] != 64 * 1024 * 1024:
        notes.append(f"shm size {host['ShmSize']}")
    return out


# -- services ----------------------------------------------------------------------------------

def service_doc(wl: Workload, containers: list[dict]) -> Doc | None:
    ports, notes = [], []
    published = False
    for spec in containers:
        for p in spec.get("ports") or []:
            entry = {"name": names.dns_label(f"{p['protocol'].lower()}-{p['containerPort']}"),
                     "protocol": p["protocol"], "port": p["containerPort"],
                     "targetPort": p["containerPort"]}
            host_port = p.pop("hostPort", None)
            p.pop("hostIP", None)  # the Service publishes it, not the pod
            if host_port is not None:
                published = True
                if 30000 <= host_port <= 32767:
                    entry["nodePort"] = host_port
                else:
                    notes.append(f"host port {host_port} -> {p['containerPort']}/{p['protocol']}: "
                                 f"outside the NodePort range 30000-32767 (the cluster picks one)")
            ports.append(entry)
    if not ports:
        return None
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": wl.name, "labels": {"app": wl.name}},
           "spec": {"selector": {"app": wl.name}, "ports": ports,
                    "type": "NodePort" if published else "ClusterIP"}}
    return Doc(obj, [f"ports of {wl.origin}"] + [f"not translated: {n}" for n in notes])


# -- YAML --------------------------------------------------------------------------------------

def dump(docs: list[Doc]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        # file contents (ConfigMaps) read best as literal blocks
        style = "|" if "\n" in value and value.isprintable() is False and "\r" not in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    out = []
    for d in docs:
        head = "".join(f"# {line}\n" for line in d.notes)
        out.append("---\n" + head + yaml.dump(d.obj, Dumper=Dumper, sort_keys=False,
                                               default_flow_style=False, width=1000,
                                               allow_unicode=True))
    return "".join(out)
