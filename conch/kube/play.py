"""``conch kube play FILE``: Pods, Deployments, Services, ConfigMaps, Secrets and
PersistentVolumeClaims from Kubernetes YAML, run on this host through the API (as
``podman kube play`` does).

How each kind lands here:

- Pod: one container per entry of ``spec.containers``, named ``<pod>-<container>``. The
  first holds the pod's network (on the ``conch-kube`` network, with the pod's name and
  the names of the Services that select it as DNS aliases); the others join it
  (``--network container:<first>``), so they share localhost as in a pod.
- Deployment: ``spec.replicas`` such pods, named ``<deployment>-<i>``.
- Service: each port is published on the host: at ``nodePort`` when it has one, else at
  ``port``, to ``targetPort`` (a number or a container port's name) of the pods it
  selects. Every replica publishes it, in one port group (label ``io.conch.port-group``):
  conchd balances new connections over the replicas that listen (or are healthy), drains
  one before it stops (conch.engine.network.shared_ports). Every replica also answers the
  Service's name on the ``conch-kube`` network.
- ConfigMap, Secret: data for ``env`` (``valueFrom``, ``envFrom``) and for volumes, whose
  files are copied into each container before it starts (``PUT /containers/{id}/archive``:
  a directory of keys, or one key with ``subPath``).
- PersistentVolumeClaim: a named volume of the claim's name (kept by ``--down``, as podman
  keeps them: it holds data). ``emptyDir`` is a volume per pod, removed with it
  (``medium: Memory`` a tmpfs); ``hostPath`` a bind mount.

Every container and volume play makes carries ``io.conch.kube.owner=<Kind>/<name>``:
``--down`` removes what the file's objects own, ``--replace`` does that first. Fields and
kinds beyond conch.kube.schema are refused by name before anything is made. An unset
``imagePullPolicy`` means IfNotPresent (podman's default), whatever the tag.
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile
from dataclasses import dataclass, field

from conch import errors
from conch.kube import quantity, schema

OWNER = "io.conch.kube.owner"
POD = "io.conch.kube.pod"
PORT_GROUP = "io.conch.port-group"  # conchd: members share a published port, balanced
INDEX = "io.conch.kube.index"  # the container's place in the pod spec (generate keeps it)
NETWORK = "conch-kube"


@dataclass
class Workload:
    kind: str
    name: str
    template: dict  # {"metadata": ..., "spec": ...}
    replicas: int
    publish: list[tuple[int, str, int, str, str]] = field(default_factory=list)  # (host, ip, cport, proto, svc)
    aliases: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Plan:
    workloads: list[Workload]
    config: dict[str, dict[str, bytes]]  # "ConfigMap/name" / "Secret/name" -> key -> bytes
    claims: list[str]
    services: list[str]


def load(text: str) -> list[dict]:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise errors.InvalidArgument(f"invalid YAML: {exc}") from None
    if not docs:
        raise errors.InvalidArgument("no Kubernetes objects in the file")
    return docs


def plan(docs: list[dict]) -> Plan:
    workloads, config, claims, services = [], {}, [], []
    for i, doc in enumerate(docs):
        kind, name = schema.check(doc, i)
        if kind == "Pod":
            workloads.append(Workload("Pod", name, {"metadata": doc["metadata"], "spec": doc["spec"]}, 1))
        elif kind == "Deployment":
            spec = doc.get("spec") or {}
            template = spec.get("template") or {}
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.InvalidArgument(f"Deployment {name}: replicas {replicas!r}")
            match = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) != v for k, v in match.items()):
                raise errors.InvalidArgument(f"Deployment {name}: spec.selector does not match "
                                             "the template's labels")
            workloads.append(Workload("Deployment", name, template, replicas))
        elif kind in ("ConfigMap", "Secret"):
            config[f"{kind}/{name}"] = _config_data(kind, name, doc)
        elif kind == "PersistentVolumeClaim":
            claims.append(name)
    for doc in docs:
        if doc["kind"] == "Service":
            _plan_service(doc, workloads)
            services.append(doc["metadata"]["name"])
    for wl in workloads:
        _check_workload(wl, config)
    return Plan(workloads, config, claims, services)


def _config_data(kind: str, name: str, doc: dict) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in (doc.get("data") or {}).items():
        if kind == "Secret":
            try:
                out[key] = base64.b64decode(str(value), validate=True)
            except ValueError:
                raise errors.InvalidArgument(f"Secret {name}: data.{key} is not base64") from None
        else:
            out[key] = str(value).encode()
    for key, value in (doc.get("binaryData") or {}).items():
        out[key] = base64.b64decode(str(value))
    for key, value in (doc.get("stringData") or {}).items():
        out[key] = str(value).encode()
    return out


def _plan_service(doc: dict, workloads: list[Workload]) -> None:
    name = doc["metadata"]["name"]
    spec = doc.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise errors.InvalidArgument(f"Service {name}: type {kind!r} is not supported")
    selector = spec.get("selector") or {}
    targets = [wl for wl in workloads if selector and all(
        ((wl.template.get("metadata") or {}).get("labels") or {}).get(k) == v
        for k, v in selector.items())]
    if not targets:
        raise errors.InvalidArgument(f"Service {name}: its selector matches no Pod or "
                                     "Deployment in the file")
    for wl in targets:
        wl.aliases.append(name)
        for port in spec.get("ports") or []:
            proto = (port.get("protocol") or "TCP").upper()
            if proto not in ("TCP", "UDP", "SCTP"):
                raise errors.InvalidArgument(f"Service {name}: protocol {proto!r}")
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and not target.isdigit():
                target = _named_port(wl, target, name)
            host = port.get("nodePort") or port.get("port")
            if not isinstance(host, int) or not 0 < host < 65536:
                raise errors.InvalidArgument(f"Service {name}: port {host!r}")
            wl.publish.append((host, "", int(target), proto.lower(), name))


def _named_port(wl: Workload, port_name: str, svc: str) -> int:
    for c in wl.template["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == port_name:
                return int(p["containerPort"])
    raise errors.InvalidArgument(f"Service {svc}: targetPort {port_name!r} names no container "
                                 f"port of {wl.owner}")


def _check_workload(wl: Workload, config: dict) -> None:
    spec = wl.template.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        raise errors.InvalidArgument(f"{wl.owner}: no containers")
    if wl.kind == "Deployment" and spec.get("restartPolicy", "Always") != "Always":
        raise errors.InvalidArgument(f"{wl.owner}: a Deployment's restartPolicy must be Always")
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        raise errors.InvalidArgument(f"{wl.owner}: restartPolicy {spec['restartPolicy']!r}")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for c in containers:
        if not c.get("name") or not c.get("image"):
            raise errors.InvalidArgument(f"{wl.owner}: a container needs a name and an image")
        for p in c.get("ports") or []:
            if p.get("hostPort") and wl.replicas > 1:
                raise errors.InvalidArgument(
                    f"{wl.owner}: container {c['name']}: hostPort with {wl.replicas} replicas "
                    "(one host port cannot go to several containers; use a Service)")
        for vm in c.get("volumeMounts") or []:
            vol = volumes.get(vm.get("name"))
            if vol is None:
                raise errors.InvalidArgument(f"{wl.owner}: volumeMount {vm.get('name')!r} names no volume")
            if vm.get("subPath") and not (vol.get("configMap") or vol.get("secret")):
                raise errors.InvalidArgument(f"{wl.owner}: subPath is supported for configMap "
                                             "and secret volumes only")
        probe = (c.get("livenessProbe") or {})
        if c.get("livenessProbe") is not None and not (probe.get("exec") or {}).get("command"):
            raise errors.InvalidArgument(f"{wl.owner}: livenessProbe needs exec.command")
    for vol in volumes.values():
        kinds = [k for k in ("persistentVolumeClaim", "configMap", "secret", "emptyDir", "hostPath")
                 if k in vol]
        if len(kinds) != 1:
            raise errors.InvalidArgument(f"{wl.owner}: volume {vol['name']!r} needs exactly one "
                                         "source")
        for key, ref_key, kind in (("configMap", "name", "ConfigMap"), ("secret", "secretName", "Secret")):
            src = vol.get(key)
            if src is not None and f"{kind}/{src.get(ref_key)}" not in config and not src.get("optional"):
                raise errors.InvalidArgument(f"{wl.owner}: volume {vol['name']!r}: {kind} "
                                             f"{src.get(ref_key)!r} is not in the file")


# -- carrying it out -----------------------------------------------------------------------------

def play(client, text: str, *, replace: bool = False, out=print) -> None:
    p = plan(load(text))
    taken = [wl.owner for wl in p.workloads if _owned_containers(client, wl.owner)]
    if taken:
        if not replace:
            raise errors.Conflict(f"{', '.join(taken)} exists already (use --replace or --down)")
        down_plan(client, p, out=lambda *_: None)
    for claim in p.claims:
        _ensure_volume(client, claim, {"io.conch.kube.claim": claim})
    if any(not (wl.template["spec"].get("hostNetwork")) for wl in p.workloads):
        _ensure_network(client)
    for wl in p.workloads:
        for image, policy in {(c["image"], c.get("imagePullPolicy", "IfNotPresent"))
                              for c in wl.template["spec"]["containers"]}:
            _ensure_image(client, image, policy)
    made = []
    for wl in p.workloads:
        pods = [wl.name] if wl.kind == "Pod" else [f"{wl.name}-{i}" for i in range(wl.replicas)]
        made.append(wl)
        try:
            for pod in pods:
                _run_pod(client, p, wl, pod)
        except BaseException:
            # all or nothing: what this play made so far goes (claims' volumes stay)
            down_plan(client, Plan(made, p.config, [], p.services), out=lambda *_: None)
            raise
        out(f"{wl.kind.lower()}/{wl.name}: {len(pods)} pod{'s' if len(pods) != 1 else ''}"
            + (f" ({', '.join(pods)})" if pods else ""))
        for host, ip, cport, proto, svc in wl.publish:
            if pods and wl.template["spec"].get("hostNetwork"):
                out(f"service/{svc}: {pods[0]} uses the host's network: port {cport}/{proto} "
                    f"is its own (port {host} not published)")
            elif pods:
                out(f"service/{svc}: {ip or '0.0.0.0'}:{host} -> {', '.join(pods)}:{cport}/{proto}")
    for kind_name, data in p.config.items():
        out(f"{kind_name.lower()}: {len(data)} key{'s' if len(data) != 1 else ''} "
            "(copied into the containers that use it)")
    for claim in p.claims:
        out(f"persistentvolumeclaim/{claim}: volume {claim}")


def _owned_containers(client, owner: str) -> list[dict]:
    return client.get("/containers/json", all=True, filters={"label": [f"{OWNER}={owner}"]}) or []


def _ensure_volume(client, name: str, labels: dict) -> None:
    client.post("/volumes/create", {"Name": name, "Labels": labels})


def _ensure_network(client) -> None:
    try:
        client.get(f"/networks/{NETWORK}")
    except errors.NotFound:
        client.post("/networks/create", {"Name": NETWORK, "CheckDuplicate": True,
                                         "Labels": {"io.conch.kube": "network"}})


def _ensure_image(client, image: str, policy: str) -> None:
    if policy not in ("Always", "IfNotPresent", "Never"):
        raise errors.InvalidArgument(f"imagePullPolicy {policy!r}")
    if policy != "Always":
        try:
            client.get(f"/images/{image}/json")
            return
        except errors.NotFound:
            if policy == "Never":
                raise errors.NotFound(f"image {image!r} is not here and imagePullPolicy is Never") from None
    for _ in client.stream_json("POST", "/images/create", params={"fromImage": image}):
        pass


def _run_pod(client, p: Plan, wl: Workload, pod: str) -> None:
    spec = wl.template["spec"]
    labels = dict(((wl.template.get("metadata") or {}).get("labels") or {}))
    labels.update({OWNER: wl.owner, POD: pod})
    if wl.publish and not spec.get("hostNetwork"):
        labels[PORT_GROUP] = f"kube/{wl.owner}"  # the replicas share the Services' host ports
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for v in volumes.values():
        if "emptyDir" in v and (v["emptyDir"] or {}).get("medium") != "Memory":
            _ensure_volume(client, f"{pod}-{v['name']}", {OWNER: wl.owner, POD: pod})
    first_id = None
    for index, c in enumerate(spec["containers"]):
        body = container_body(p, wl, pod, c, volumes, dict(labels, **{INDEX: str(index)}))
        if first_id is None:
            if spec.get("hostNetwork"):
                body["HostConfig"]["NetworkMode"] = "host"
            else:
                body["HostConfig"]["NetworkMode"] = NETWORK
                body["NetworkingConfig"] = {"EndpointsConfig": {NETWORK: {
                    "Aliases": [pod, *wl.aliases]}}}
                if spec.get("hostname"):
                    body["Hostname"] = spec["hostname"]
                else:
                    body["Hostname"] = pod
            if not spec.get("hostNetwork"):  # on the host's network, its ports are the host's
                _publish(body, wl.publish)
                _publish(body, [(pt["hostPort"], pt.get("hostIP", ""), pt["containerPort"],
                                 pt.get("protocol", "TCP").lower(), "")
                                for ct in spec["containers"] for pt in ct.get("ports") or []
                                if pt.get("hostPort")])
        else:
            body["HostConfig"]["NetworkMode"] = f"container:{first_id}"
        created = client.post("/containers/create", body, name=f"{pod}-{c['name']}")
        cid = created["Id"]
        _copy_config_files(client, p, cid, c, volumes)
        client.post(f"/containers/{cid}/start")
        first_id = first_id or cid


def _publish(body: dict, ports) -> None:
    bindings = body["HostConfig"].setdefault("PortBindings", {})
    exposed = body.setdefault("ExposedPorts", {})
    for host, ip, cport, proto, _ in ports:
        key = f"{cport}/{proto}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": ip or "", "HostPort": str(host)})


def container_body(p: Plan, wl: Workload, pod: str, c: dict, volumes: dict, labels: dict) -> dict:
    spec = wl.template["spec"]
    host: dict = {}
    body: dict = {"Image": c["image"], "Labels": dict(labels, **{"io.conch.kube.container": c["name"]}),
                  "HostConfig": host}
    if c.get("command") is not None:
        body["Entrypoint"] = [str(a) for a in c["command"]]
        body["Cmd"] = [str(a) for a in c.get("args") or []]
    elif c.get("args") is not None:
        body["Cmd"] = [str(a) for a in c["args"]]
    if c.get("workingDir"):
        body["WorkingDir"] = c["workingDir"]
    body["Env"] = _env(p, wl, c)
    if c.get("tty"):
        body["Tty"] = True
    if c.get("stdin"):
        body["OpenStdin"] = True
    exposed = {f"{pt['containerPort']}/{pt.get('protocol', 'TCP').lower()}": {}
               for pt in c.get("ports") or []}
    if exposed:
        body["ExposedPorts"] = exposed
    _resources(host, c.get("resources") or {}, wl)
    if c.get("livenessProbe"):
        body["Healthcheck"] = _healthcheck(c["livenessProbe"])
    sec = c.get("securityContext") or {}
    if sec.get("runAsUser") is not None:
        body["User"] = str(sec["runAsUser"]) + (f":{sec['runAsGroup']}" if sec.get("runAsGroup") is not None else "")
    host["Privileged"] = bool(sec.get("privileged"))
    host["ReadonlyRootfs"] = bool(sec.get("readOnlyRootFilesystem"))
    caps = sec.get("capabilities") or {}
    if caps.get("add"):
        host["CapAdd"] = list(caps["add"])
    if caps.get("drop"):
        host["CapDrop"] = list(caps["drop"])
    restart = spec.get("restartPolicy", "Always")
    host["RestartPolicy"] = {"Name": {"Always": "always", "OnFailure": "on-failure",
                                      "Never": "no"}[restart]}
    if spec.get("hostAliases"):
        host["ExtraHosts"] = [f"{h}:{a['ip']}" for a in spec["hostAliases"] for h in a.get("hostnames") or []]
    sysctls = (spec.get("securityContext") or {}).get("sysctls") or []
    if sysctls:
        host["Sysctls"] = {s["name"]: str(s["value"]) for s in sysctls}
    if spec.get("terminationGracePeriodSeconds") is not None:
        body["StopTimeout"] = int(spec["terminationGracePeriodSeconds"])
    mounts, binds = [], []
    for vm in c.get("volumeMounts") or []:
        vol = volumes[vm["name"]]
        ro = bool(vm.get("readOnly"))
        if "persistentVolumeClaim" in vol:
            mounts.append({"Type": "volume", "Source": vol["persistentVolumeClaim"]["claimName"],
                           "Target": vm["mountPath"],
                           "ReadOnly": ro or bool(vol["persistentVolumeClaim"].get("readOnly"))})
        elif "emptyDir" in vol:
            if (vol["emptyDir"] or {}).get("medium") == "Memory":
                mounts.append({"Type": "tmpfs", "Target": vm["mountPath"]})
            else:
                mounts.append({"Type": "volume", "Source": f"{pod}-{vol['name']}",
                               "Target": vm["mountPath"], "ReadOnly": ro})
        elif "hostPath" in vol:
            binds.append(f"{vol['hostPath']['path']}:{vm['mountPath']}" + (":ro" if ro else ""))
        # configMap / secret: files copied in before start (_copy_config_files)
    if mounts:
        host["Mounts"] = mounts
    if binds:
        host["Binds"] = binds
    return body


def _env(p: Plan, wl: Workload, c: dict) -> list[str]:
    env: dict[str, str] = {}
    for src in c.get("envFrom") or []:
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = src.get(key)
            if ref is None:
                continue
            data = p.config.get(f"{kind}/{ref.get('name')}")
            if data is None:
                if ref.get("optional"):
                    continue
                raise errors.InvalidArgument(f"{wl.owner}: envFrom {kind} {ref.get('name')!r} is not in the file")
            for k, v in data.items():
                env[(src.get("prefix") or "") + k] = v.decode(errors="replace")
    for e in c.get("env") or []:
        if "valueFrom" in e and e["valueFrom"] is not None:
            value = _value_from(p, wl, e)
            if value is None:
                continue
            env[e["name"]] = value
        else:
            env[e["name"]] = "" if e.get("value") is None else str(e["value"])
    return [f"{k}={v}" for k, v in env.items()]


def _value_from(p: Plan, wl: Workload, e: dict) -> str | None:
    for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        ref = e["valueFrom"].get(key)
        if ref is None:
            continue
        data = p.config.get(f"{kind}/{ref.get('name')}") or {}
        if ref.get("key") in data:
            return data[ref["key"]].decode(errors="replace")
        if ref.get("optional"):
            return None
        raise errors.InvalidArgument(f"{wl.owner}: env {e['name']}: {kind} {ref.get('name')!r} "
                                     f"key {ref.get('key')!r} is not in the file")
    raise errors.InvalidArgument(f"{wl.owner}: env {e['name']}: valueFrom needs configMapKeyRef "
                                 "or secretKeyRef")


def _resources(host: dict, res: dict, wl: Workload) -> None:
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    try:
        if "memory" in limits:
            host["Memory"] = quantity.memory_bytes(limits["memory"])
        if "cpu" in limits:
            host["NanoCpus"] = quantity.nano_cpus(limits["cpu"])
        if "memory" in requests:
            host["MemoryReservation"] = quantity.memory_bytes(requests["memory"])
        if "cpu" in requests:
            host["CpuShares"] = max(2, quantity.nano_cpus(requests["cpu"]) * 1024 // 10**9)
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"{wl.owner}: resources: {exc}") from None


def _healthcheck(probe: dict) -> dict:
    command = [str(a) for a in probe["exec"]["command"]]
    if len(command) == 3 and command[0] in ("/bin/sh", "sh") and command[1] == "-c":
        test = ["CMD-SHELL", command[2]]
    else:
        test = ["CMD", *command]
    sec = 10**9
    hc = {"Test": test, "Interval": int(probe.get("periodSeconds", 10)) * sec,
          "Timeout": int(probe.get("timeoutSeconds", 1)) * sec,
          "Retries": int(probe.get("failureThreshold", 3))}
    if probe.get("initialDelaySeconds"):
        hc["StartPeriod"] = int(probe["initialDelaySeconds"]) * sec
    return hc


def _copy_config_files(client, p: Plan, cid: str, c: dict, volumes: dict) -> None:
    for vm in c.get("volumeMounts") or []:
        vol = volumes[vm["name"]]
        for key, ref_key, kind in (("configMap", "name", "ConfigMap"), ("secret", "secretName", "Secret")):
            src = vol.get(key)
            if src is None:
                continue
            data = p.config.get(f"{kind}/{src.get(ref_key)}") or {}
            mode = src.get("defaultMode", 0o644)
            files = {item["path"]: (data.get(item["key"]), item.get("mode", mode))
                     for item in src.get("items") or []} or {k: (v, mode) for k, v in data.items()}
            if any(v is None for v, _ in files.values()) and not src.get("optional"):
                raise errors.InvalidArgument(f"volume {vm['name']!r}: a key of {kind} "
                                             f"{src.get(ref_key)!r} is missing")
            files = {k: v for k, v in files.items() if v[0] is not None}
            if vm.get("subPath"):
                one = files.get(vm["subPath"])
                if one is None:
                    raise errors.InvalidArgument(f"volume {vm['name']!r}: subPath {vm['subPath']!r} "
                                                 f"is not a key of {kind} {src.get(ref_key)!r}")
                target = vm["mountPath"].rstrip("/")
                _put_files(client, cid, posixpath.dirname(target) or "/",
                           {posixpath.basename(target): one})
            else:
                _put_files(client, cid, vm["mountPath"], files)


def _put_files(client, cid: str, directory: str, files: dict) -> None:
    """Copy ``files`` (relative path -> (bytes, mode)) into ``directory`` of the created
    container. The archive goes to the deepest directory that exists already (the API
    wants an existing destination), carrying the missing ones; existing directories get
    no tar entry, so their owner and mode (say /tmp's 1777) stay as the image has them."""
    directory = "/" + directory.strip("/")
    base, missing = directory, []
    while base != "/" and not _exists(client, cid, base):
        missing.insert(0, posixpath.basename(base))
        base = posixpath.dirname(base)
    prefix = "/".join(missing)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = set()
        for i in range(1, len(missing) + 1):
            dirs.add("/".join(missing[:i]))
        for name in files:
            parts = posixpath.join(prefix, name).split("/")[:-1]
            dirs.update("/".join(parts[:i]) for i in range(len(missing) + 1, len(parts) + 1))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(posixpath.join(prefix, name))
            info.size, info.mode = len(data), int(mode)
            tar.addfile(info, io.BytesIO(data))
    client.request("PUT", f"/containers/{cid}/archive", params={"path": base},
                   body=buf.getvalue(), headers={"Content-Type": "application/x-tar"}).read()


def _exists(client, cid: str, path: str) -> bool:
    try:
        client.request("HEAD", f"/containers/{cid}/archive", params={"path": path}).close()
        return True
    except errors.NotFound:
        return False


# -- --down ----------------------------------------------------------------------------------------

def down(client, text: str, *, out=print) -> None:
    down_plan(client, plan(load(text)), out=out)


def down_plan(client, p: Plan, *, out=print) -> None:
    for wl in p.workloads:
        owned = _owned_containers(client, wl.owner)
        # the pods' followers first: a container that joined another's network goes
        # before the one holding it
        owned.sort(key=lambda c: c.get("HostConfig", {}).get("NetworkMode", "").startswith("container:"),
                   reverse=True)
        for c in owned:
            try:
                client.delete(f"/containers/{c['Id']}", force=True, v=True)
            except errors.NotFound:
                pass
        vols = (client.get("/volumes", filters={"label": [f"{OWNER}={wl.owner}"]}) or {}).get("Volumes") or []
        for v in vols:
            try:
                client.delete(f"/volumes/{v['Name']}")
            except errors.NotFound:
                pass
        out(f"{wl.kind.lower()}/{wl.name}: removed {len(owned)} container{'s' if len(owned) != 1 else ''}")
    for claim in p.claims:
        out(f"persistentvolumeclaim/{claim}: volume {claim} kept (remove it with conch volume rm)")
    try:
        net = client.get(f"/networks/{NETWORK}")
    except errors.NotFound:
        return
    if not net.get("Containers") and (net.get("Labels") or {}).get("io.conch.kube") == "network":
        try:
            client.delete(f"/networks/{NETWORK}")
        except (errors.NotFound, errors.Conflict):
            pass  # another play's container joined meanwhile
