"""conch.kube without a daemon: quantities, names, play's field checks and plan, generate
over recorded inspect JSON, and every manifest in docs/kubernetes.md, each validated with
kubernetes-validate --strict (Kubernetes 1.37 schemas: kubernetes-validate 1.37.0's
default, :data:`K8S_VERSION`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conch import errors
from conch.kube import generate, names, play, quantity, schema

import kubernetes_validate  # noqa: E402 - the test extra installs it; missing is a failure
K8S_VERSION = "1.37.0"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"


def validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schemas_are_the_pinned_kubernetes_version():
    assert kubernetes_validate.latest_version() == K8S_VERSION


# -- quantities and names --------------------------------------------------------------------------

@pytest.mark.parametrize("text, bytes_", [("128Mi", 128 << 20), ("1Gi", 1 << 30), ("1G", 10**9),
                                          ("500k", 500_000), ("1024", 1024), ("1e3", 1000),
                                          ("0.5Gi", 1 << 29)])
def test_memory_quantities(text, bytes_):
    assert quantity.memory_bytes(text) == bytes_


@pytest.mark.parametrize("text, nanos", [("500m", 500_000_000), ("1", 10**9), ("0.25", 250_000_000),
                                         (2, 2 * 10**9), ("1500m", 1_500_000_000)])
def test_cpu_quantities(text, nanos):
    assert quantity.nano_cpus(text) == nanos


@pytest.mark.parametrize("bad", ["", "x", "-1", "1Zi", "Mi"])
def test_bad_quantities_are_refused(bad):
    with pytest.raises(errors.InvalidArgument):
        quantity.parse(bad)


def test_quantities_round_trip():
    for n in (64 << 20, 1 << 30, 1000, 3 * (1 << 20) + 1):
        assert quantity.memory_bytes(quantity.format_memory(n)) == n
    for n in (500_000_000, 2 * 10**9, 1_250_000_000):
        assert quantity.nano_cpus(quantity.format_cpu(n)) == n


def test_names_and_labels():
    assert names.dns_label("My_App.web-1") == "my-app-web-1"
    assert names.dns_label("---") == "c"
    assert len(names.dns_label("a" * 100)) == 63
    assert names.dns_subdomain("web-App.conf") == "web-app.conf"
    good, rest = names.split_labels({"tier": "front", "com.example/x": "ok", "bad key": "v",
                                     "note": "has spaces"})
    assert good == {"tier": "front", "com.example/x": "ok"}
    assert rest == {"bad key": "v", "note": "has spaces"}


# -- play's checks ----------------------------------------------------------------------------------

def test_schema_refuses_fields_by_path():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i", "lifecycle": {}}]}}
    with pytest.raises(errors.InvalidArgument, match=r"Pod p: field spec.containers\[0\].lifecycle"):
        schema.check(pod, 0)
    with pytest.raises(errors.InvalidArgument, match="kind 'Job'"):
        schema.check({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}, 0)
    with pytest.raises(errors.InvalidArgument, match="namespace 'prod'"):
        schema.check({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c", "namespace": "prod"}}, 0)
    pod["spec"]["containers"][0].pop("lifecycle")
    assert schema.check(pod, 0) == ("Pod", "p")
    with pytest.raises(errors.InvalidArgument, match="Pod p: field status is not supported"):
        schema.check(dict(pod, status={}), 0)


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: busybox
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}, {port: 53, protocol: UDP, nodePort: 30053}]
"""


def test_plan_maps_services_to_the_selected_workload():
    p = play.plan(play.load(DEPLOY))
    [wl] = p.workloads
    assert (wl.kind, wl.name, wl.replicas) == ("Deployment", "web", 3)
    assert wl.aliases == ["front"]
    assert wl.publish == [(80, "", 8080, "tcp", "front"), (30053, "", 53, "udp", "front")]
    for doc in play.load(DEPLOY):
        validate(doc)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("app: web}}\n    spec", "app: other}}\n    spec"), "selector does not match"),
    (lambda t: t.replace("targetPort: http", "targetPort: nope"), "targetPort 'nope'"),
    (lambda t: t.replace("selector: {app: web}\n  ports", "selector: {app: x}\n  ports"),
     "matches no Pod or Deployment"),
    (lambda t: t.replace("containerPort: 8080}", "containerPort: 8080, hostPort: 8080}"),
     "hostPort with 3 replicas"),
])
def test_plan_refuses_what_it_cannot_carry_out(edit, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        play.plan(play.load(edit(DEPLOY)))


# -- generate over recorded inspect JSON -------------------------------------------------------------

class FakeClient:
    """The two GETs generate makes, answered from dicts (no daemon)."""

    def __init__(self, containers: dict, images: dict) -> None:
        self.containers, self.images = containers, images

    def get(self, path: str, **params):
        if path.startswith("/containers/") and path.endswith("/json") and path != "/containers/json":
            ref = path.split("/")[2]
            if ref in self.containers:
                return self.containers[ref]
            raise errors.NotFound(f"No such container: {ref}")
        if path == "/containers/json":
            key, _, value = params["filters"]["label"][0].partition("=")
            return [{"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"],
                     "Created": 0} for c in self.containers.values()
                    if c["Config"]["Labels"].get(key) == value]
        if path.startswith("/volumes/"):
            return {"Name": path.split("/")[2], "Labels": {}}
        if path.startswith("/images/"):
            return {"Config": self.images.get(path.split("/")[2], {})}
        raise AssertionError(path)


def _container(name: str, **config) -> dict:
    host = config.pop("host", {})
    return {"Id": "f" * 64, "Name": "/" + name, "Mounts": config.pop("mounts", []),
            "Config": {"Image": "busybox", "Labels": {}, "Env": ["PATH=/bin"], "Cmd": ["sh"],
                       "Hostname": "ffffffffffff", **config},
            "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "always"},
                           "LogConfig": {"Type": "json-file"}, "ShmSize": 64 << 20, **host},
            "NetworkSettings": {"Networks": {"bridge": {}}}}


def test_generate_from_inspect_json_is_valid_and_names_the_rest(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text("worker_processes 1;\n")
    c = _container("shop_web", Env=["PATH=/bin", "A=1"], Cmd=["httpd", "-f"],
                   ExposedPorts={"80/tcp": {}}, Labels={"tier": "front"},
                   Healthcheck={"Test": ["CMD", "true"], "Interval": 2_500_000_000},
                   User="nobody", StopTimeout=3, mounts=[
                       {"Type": "volume", "Name": "shop_data", "Destination": "/data", "RW": True},
                       {"Type": "bind", "Source": str(conf), "Destination": "/etc/nginx.conf", "RW": False}],
                   host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30080"}]},
                         "Memory": 256 << 20, "NanoCpus": 1_500_000_000, "Devices": [{"PathOnHost": "/dev/fuse"}],
                         "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}], "AutoRemove": True})
    client = FakeClient({"shop_web": c}, {"busybox": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}})
    docs = generate.generate(client, ["shop_web"], service=True)
    for d in docs:
        validate(d.obj)
    by_kind = {d.obj["kind"]: d for d in docs}
    assert set(by_kind) == {"Deployment", "PersistentVolumeClaim", "ConfigMap", "Service"}
    dep = by_kind["Deployment"]
    spec = dep.obj["spec"]["template"]["spec"]["containers"][0]
    assert spec["name"] == "shop-web" and spec["args"] == ["httpd", "-f"]
    assert spec["env"] == [{"name": "A", "value": "1"}]
    assert spec["resources"]["limits"] == {"memory": "256Mi", "cpu": "1500m"}
    assert spec["livenessProbe"]["periodSeconds"] == 3
    assert by_kind["Service"].obj["spec"]["ports"][0]["nodePort"] == 30080
    notes = "\n".join(dep.notes)
    assert "user 'nobody'" in notes and "devices" in notes and "ulimits" in notes
    assert "--rm" in notes
    assert dep.obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3
    text = generate.dump(docs)
    assert [d["kind"] for d in yaml.safe_load_all(text)] == [d.obj["kind"] for d in docs]
    assert "# not translated: shop-web: user 'nobody'" in text


# -- docs/kubernetes.md -----------------------------------------------------------------------------

def test_every_manifest_in_the_docs_is_valid():
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    kinds = []
    for block in blocks:
        for doc in yaml.safe_load_all(block):
            validate(doc)
            kinds.append(doc["kind"])
    assert {"RuntimeClass", "Deployment", "Service", "Secret"} <= set(kinds)
    runtime_class = next(d for b in blocks for d in yaml.safe_load_all(b) if d["kind"] == "RuntimeClass")
    assert runtime_class["handler"] == "conch" and runtime_class["metadata"]["name"] == "conch"


def test_a_broken_manifest_is_caught_by_the_validator():
    # the check above can fail: strict validation refuses an unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                  "metadata": {"name": "conch"}, "handler": "conch", "runtime": "x"})


def test_plain_cli_commands_do_not_import_kube_or_yaml():
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    code = (f"import io, sys; sys.path.insert(0, {root!r}); import conch.cli.main, conch.cli.kube; "
            "conch.cli.main.main(['--help'], stdout=io.StringIO()); "
            "print(sorted(m for m in sys.modules if m == 'yaml' or m.startswith('conch.kube')))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
