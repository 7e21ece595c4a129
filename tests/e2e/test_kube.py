"""Issue 13 "Proof": ``conch kube generate`` and ``conch kube play`` through the real CLI
-> a private conchd -> conch-runtime.

- generate: every document it prints for a container with everything translatable (and
  some things that are not) passes ``kubernetes-validate --strict`` against the
  Kubernetes version of the schemas kubernetes-validate ships as its default (1.37 with
  1.37.0); what cannot be translated is named in a comment.
- play: a 2-replica Deployment with a NodePort Service, a ConfigMap (env + file) and a
  PersistentVolumeClaim answers HTTP on 127.0.0.1 at the Service's port; ``--down``
  leaves no container, volume (but the claim's), network, mount or process.
- refusals: unknown kinds and fields are named, nothing is made.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conch.testing.daemon import Daemon, clean_after, daemon_fixture, free_port, ok

daemon = daemon_fixture("module")
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _validate(path: Path) -> subprocess.CompletedProcess:
    if not VALIDATE.exists():
        pytest.fail("kubernetes-validate is not installed in this venv (pip install -e .[test])")
    return subprocess.run([str(VALIDATE), "--strict", str(path)], capture_output=True,
                          text=True, timeout=120)


def _docs(text: str) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def _http_get(port: int, path: str = "/", timeout: float = 30) -> str:
    """GET path from 127.0.0.1:port, retried until it answers (the server starts async)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if b" 200 " in data.split(b"\r\n", 1)[0]:
                return data.decode(errors="replace")
            last = data[:200]
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}: {last!r}")


# -- generate --------------------------------------------------------------------------------------

def test_generate_validates_strictly_and_names_what_it_cannot_translate(d, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("greeting = hello\n")
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    hport = free_port()
    ok(d.conch("run", "-d", "--name", "kgen-web", "-p", f"{hport}:80", "--expose", "53/udp",
               "-e", "MODE=prod", "-e", "EMPTY=", "--label", "tier=front",
               "--label", "com.example.note=has spaces and so is an annotation",
               "-m", "64m", "--cpus", "0.5", "--cpu-shares", "512",
               "--health-cmd", "test -e /tmp", "--health-interval", "5s", "--health-retries", "2",
               "-v", "kgen-data:/data", "-v", f"{conf}:/etc/app.conf:ro",
               "-v", f"{secret}:/run/secrets/token:ro", "-v", f"{tmp_path}:/hostdir",
               "--tmpfs", "/scratch", "--restart", "on-failure:3", "--cap-add", "NET_ADMIN",
               "--add-host", "db.local:10.9.8.7", "--dns", "10.9.8.53", "-u", "1000:1000",
               "-w", "/data", "--entrypoint", "sh", "busybox", "-c", "exec sleep 600"))
    try:
        out = ok(d.conch("kube", "generate", "--service", "--replicas", "2", "kgen-web"))
        path = tmp_path / "gen.yaml"
        path.write_text(out)
        v = _validate(path)
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{out}"
        docs = _docs(out)
        kinds = sorted(doc["kind"] for doc in docs)
        assert kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service"], out
        # every document on its own too (kubernetes-validate reads each of a stream)
        assert out.count("\n---\n") + out.startswith("---\n") == len(docs)
        dep = next(doc for doc in docs if doc["kind"] == "Deployment")
        assert dep["spec"]["replicas"] == 2
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["image"] == "busybox"
        assert c["command"] == ["sh"] and c["args"] == ["-c", "exec sleep 600"]
        assert {"name": "MODE", "value": "prod"} in c["env"]
        assert {"name": "EMPTY", "value": ""} in c["env"]
        assert c["workingDir"] == "/data"
        assert c["resources"]["limits"] == {"memory": "64Mi", "cpu": "500m"}
        assert c["resources"]["requests"] == {"cpu": "500m"}
        assert c["livenessProbe"]["exec"]["command"] == ["/bin/sh", "-c", "test -e /tmp"]
        assert c["livenessProbe"]["periodSeconds"] == 5
        assert c["livenessProbe"]["failureThreshold"] == 2
        assert c["securityContext"]["runAsUser"] == 1000
        assert c["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
        ports = {(p["containerPort"], p["protocol"]) for p in c["ports"]}
        assert ports == {(80, "TCP"), (53, "UDP")}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert set(mounts) >= {"/data", "/etc/app.conf", "/run/secrets/token", "/hostdir", "/scratch"}
        assert mounts["/etc/app.conf"]["subPath"] == "app.conf"
        assert pod["hostAliases"] == [{"ip": "10.9.8.7", "hostnames": ["db.local"]}]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["tier"] == "front" and labels["app"] == "kgen-web"
        assert "com.example.note" in dep["metadata"]["annotations"]
        cm = next(doc for doc in docs if doc["kind"] == "ConfigMap")
        assert list(cm["data"].values()) == ["greeting = hello\n"]
        sec = next(doc for doc in docs if doc["kind"] == "Secret")
        assert list(sec["data"].values()) == ["czNjcmV0"]
        pvc = next(doc for doc in docs if doc["kind"] == "PersistentVolumeClaim")
        assert pvc["metadata"]["name"] == "kgen-data"
        svc = next(doc for doc in docs if doc["kind"] == "Service")
        assert svc["spec"]["type"] == "NodePort"
        assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(80, "TCP"), (53, "UDP")}
        # never silently dropped: each of these is named in a comment
        comments = "\n".join(line for line in out.splitlines() if line.startswith("#"))
        for needle in ("restart policy 'on-failure'", "DNS servers", "bind mount", "hostPath",
                       f"host port {hport}" if not 30000 <= hport <= 32767 else "from container"):
            assert needle in comments, f"{needle!r} not in\n{comments}"
        # --type pod: a Pod, also valid
        pod_out = ok(d.conch("kube", "generate", "--type", "pod", "kgen-web"))
        path.write_text(pod_out)
        v = _validate(path)
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{pod_out}"
        pod_doc = next(doc for doc in _docs(pod_out) if doc["kind"] == "Pod")
        assert pod_doc["spec"]["restartPolicy"] == "OnFailure"
        web = next(p for p in pod_doc["spec"]["containers"][0]["ports"] if p["containerPort"] == 80)
        assert web["hostPort"] == hport

    finally:
        d.conch("rm", "-f", "kgen-web")
        d.conch("volume", "rm", "kgen-data")


def test_generate_compose_project_by_labels(d, tmp_path):
    # two containers of service "web" and one of "cache" in project "kshop", as compose
    # labels them: one Deployment per service, replicas = its containers
    for name, service, num in (("kshop-web-1", "web", 1), ("kshop-web-2", "web", 2),
                               ("kshop-cache-1", "cache", 1)):
        ok(d.conch("create", "--name", name, "--label", "com.docker.compose.project=kshop",
                   "--label", f"com.docker.compose.service={service}",
                   "--label", f"com.docker.compose.container-number={num}",
                   "busybox", "sleep", "600"))
    try:
        out = ok(d.conch("kube", "generate", "kshop"))
        path = tmp_path / "gen.yaml"
        path.write_text(out)
        v = _validate(path)
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{out}"
        deps = {doc["metadata"]["name"]: doc for doc in _docs(out)}
        assert set(deps) == {"web", "cache"}
        assert deps["web"]["spec"]["replicas"] == 2 and deps["cache"]["spec"]["replicas"] == 1
        assert "com.docker.compose.project" not in deps["web"]["metadata"]["labels"]
        p = d.conch("kube", "generate", "no-such-thing")
        assert p.returncode == 1 and "no container, pod or compose project named" in p.stderr
    finally:
        d.conch("rm", "-f", "kshop-web-1", "kshop-web-2", "kshop-cache-1")


COMPOSE = """\
services:
  web:
    image: busybox
    command: ["sh", "-c", "exec httpd -f -p 8080 -h /"]
    deploy:
      replicas: 2
    environment:
      MODE: compose
    configs:
      - source: app_conf
        target: /etc/app.conf
    secrets:
      - token
  cache:
    image: busybox
    command: ["sleep", "600"]
    volumes:
      - cachedata:/data
configs:
  app_conf:
    file: ./app.conf
secrets:
  token:
    file: ./token.txt
volumes:
  cachedata: {}
"""


def test_generate_from_a_real_compose_project(d, tmp_path):
    """conch compose up (conch.compose, labels as docker compose v2) -> kube generate
    PROJECT: a Deployment per service (replicas from the project), the file configs and
    secrets as ConfigMap and Secret, the named volume as a PVC; all valid."""
    if d.conch("compose", "version").returncode != 0:
        pytest.skip("conch compose is not available in this tree")
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "app.conf").write_text("mode = compose\n")
    (tmp_path / "token.txt").write_text("t0ken")
    project = "kproj"
    base = ("compose", "-f", tmp_path / "compose.yaml", "-p", project)
    try:
        ok(d.conch(*base, "up", "-d", timeout=120))
        out = ok(d.conch("kube", "generate", project))
        path = tmp_path / "gen.yaml"
        path.write_text(out)
        v = _validate(path)
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{out}"
        docs = _docs(out)
        deps = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Deployment"}
        assert set(deps) == {"web", "cache"}, out
        assert deps["web"]["spec"]["replicas"] == 2 and deps["cache"]["spec"]["replicas"] == 1
        web = deps["web"]["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "MODE", "value": "compose"} in web["env"]
        cms = [doc for doc in docs if doc["kind"] == "ConfigMap"]
        secrets = [doc for doc in docs if doc["kind"] == "Secret"]
        assert [list(cm["data"].values()) for cm in cms] == [["mode = compose\n"]]
        assert [list(sec["data"].values()) for sec in secrets] == [["dDBrZW4="]]
        mounts = {m["mountPath"] for m in web["volumeMounts"]}
        assert {"/etc/app.conf", "/run/secrets/token"} <= mounts
        assert any(doc["kind"] == "PersistentVolumeClaim" for doc in docs)
    finally:
        d.conch(*base, "down", "-v", "-t", "0", timeout=120)


# -- play -----------------------------------------------------------------------------------------

PLAY = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-content
data:
  index.html: "hello from {greeting}\\n"
  GREETING: kube
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {claim}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kweb
spec:
  replicas: 2
  selector:
    matchLabels:
      app: kweb
  template:
    metadata:
      labels:
        app: kweb
    spec:
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c"]
        args: ["hostname > /www/who; cat /www/index.html >> /www/who; echo $GREETING >> /www/who; exec httpd -f -p 8080 -h /www"]
        envFrom:
        - configMapRef:
            name: web-content
        ports:
        - name: http
          containerPort: 8080
        resources:
          limits:
            memory: 64Mi
            cpu: 500m
        livenessProbe:
          exec:
            command: ["sh", "-c", "test -e /www/index.html"]
          periodSeconds: 2  # replicas join the Service once healthy
        volumeMounts:
        - name: content
          mountPath: /www/index.html
          subPath: index.html
        - name: data
          mountPath: /data
      volumes:
      - name: content
        configMap:
          name: web-content
      - name: data
        persistentVolumeClaim:
          claimName: {claim}
---
apiVersion: v1
kind: Service
metadata:
  name: kweb
spec:
  type: NodePort
  selector:
    app: kweb
  ports:
  - port: 80
    targetPort: http
    nodePort: {port}
"""


def _ours(d: Daemon, owner: str) -> list[dict]:
    return d.api.get("/containers/json", all=True,
                     filters={"label": [f"io.conch.kube.owner={owner}"]})


def test_play_deployment_with_service_answers_on_host_then_down(d, tmp_path):
    port = free_port()
    claim = f"kclaim-{port}"
    path = tmp_path / "app.yaml"
    path.write_text(PLAY.replace("{port}", str(port)).replace("{claim}", claim)
                    .replace("{greeting}", "configmap"))
    networks_before = {n["Name"] for n in d.api.get("/networks")}
    try:
        out = ok(d.conch("kube", "play", path, timeout=120))
        assert "deployment/kweb: 2 pods (kweb-0, kweb-1)" in out, out
        assert f"service/kweb: 0.0.0.0:{port} -> kweb-0, kweb-1:8080/tcp" in out, out
        running = _ours(d, "Deployment/kweb")
        assert len(running) == 2 and all(c["State"] == "running" for c in running), running
        names = sorted(c["Names"][0].lstrip("/") for c in running)
        assert names == ["kweb-0-httpd", "kweb-1-httpd"]
        # the Service answers on the host at 127.0.0.1; the page is the ConfigMap's file and
        # the env came from it too
        assert "hello from configmap" in _http_get(port)
        # the Service balances over both replicas (each new connection picks one of the
        # replicas that listen): both answer on the one host port
        seen: dict[str, list[str]] = {}
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            who = _http_get(port, "/who").split("\r\n\r\n", 1)[1].splitlines()
            seen[who[0]] = who[1:]
        assert seen == {"kweb-0": ["hello from configmap", "kube"],
                        "kweb-1": ["hello from configmap", "kube"]}, seen
        # the replicas reach each other by pod name on the conch-kube network
        inspect = json.loads(ok(d.conch("inspect", "kweb-1-httpd")))[0]
        assert inspect["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert inspect["HostConfig"]["NanoCpus"] == 500_000_000
        assert inspect["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "test -e /www/index.html"]
        assert any(m["Type"] == "volume" and m["Name"] == claim for m in inspect["Mounts"])
        p = d.conch("exec", "kweb-0-httpd", "wget", "-q", "-O", "-", "http://kweb-1:8080/who")
        assert p.returncode == 0 and "hello from configmap" in p.stdout, p.stderr
        # generate reads the played Deployment back: one template, 2 replicas, valid
        gen = ok(d.conch("kube", "generate", "--service", "kweb"))
        (tmp_path / "back.yaml").write_text(gen)
        v = _validate(tmp_path / "back.yaml")
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{gen}"
        back = {doc["kind"]: doc for doc in _docs(gen)}
        assert back["Deployment"]["spec"]["replicas"] == 2
        assert back["Deployment"]["spec"]["template"]["spec"]["containers"][0]["name"] == "httpd"
        assert back["Service"]["spec"]["ports"][0]["targetPort"] == 8080
        assert back["PersistentVolumeClaim"]["metadata"]["name"] == claim
        # a second play of the same file is refused; --replace makes it anew
        again = d.conch("kube", "play", path)
        assert again.returncode == 1 and "exists already" in again.stderr, again.stderr
        ids_before = {c["Id"] for c in running}
        ok(d.conch("kube", "play", "--replace", path, timeout=120))
        ids_after = {c["Id"] for c in _ours(d, "Deployment/kweb")}
        assert len(ids_after) == 2 and not ids_after & ids_before
        _http_get(port)
        # --down: nothing of the play is left but the claim's volume
        out = ok(d.conch("kube", "play", "--down", path, timeout=120))
        assert "deployment/kweb: removed 2 containers" in out, out
        assert _ours(d, "Deployment/kweb") == []
        assert {n["Name"] for n in d.api.get("/networks")} == networks_before
        vols = {v["Name"] for v in d.api.get("/volumes")["Volumes"] or []}
        assert claim in vols and not any(v.startswith("kweb-") for v in vols)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        d.conch("kube", "play", "--down", path, timeout=120)
        d.conch("volume", "rm", claim)


def test_play_pod_with_two_containers_sharing_localhost(d, tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text("""\
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: hunter2
---
apiVersion: v1
kind: Pod
metadata:
  name: kpod
  labels:
    app: kpod
spec:
  restartPolicy: Never
  volumes:
  - name: shared
    emptyDir: {}
  - name: creds
    secret:
      secretName: creds
  containers:
  - name: server
    image: busybox
    command: ["sh", "-c", "echo pod-local > /shared/index.html; exec httpd -f -p 9090 -h /shared"]
    volumeMounts:
    - {name: shared, mountPath: /shared}
  - name: client
    image: busybox
    command: ["sleep", "600"]
    env:
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: creds, key: password}
    volumeMounts:
    - {name: creds, mountPath: /etc/creds, readOnly: true}
    - {name: shared, mountPath: /from-server}
""")
    try:
        ok(d.conch("kube", "play", path, timeout=120))
        deadline = time.monotonic() + 30
        while True:  # the client reaches the server on the pod's localhost
            p = d.conch("exec", "kpod-client", "wget", "-q", "-O", "-", "http://127.0.0.1:9090/")
            if p.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert p.stdout == "pod-local\n", p.stderr
        assert ok(d.conch("exec", "kpod-client", "sh", "-c", 'echo "$PASSWORD"; cat /etc/creds/password')) \
            == "hunter2\nhunter2"
        assert ok(d.conch("exec", "kpod-client", "cat", "/from-server/index.html")) == "pod-local\n"
        # generate reads the played pod back: both containers, the emptyDir again
        gen = ok(d.conch("kube", "generate", "--type", "pod", "kpod"))
        (tmp_path / "back.yaml").write_text(gen)
        v = _validate(tmp_path / "back.yaml")
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{gen}"
        [back] = [doc for doc in _docs(gen) if doc["kind"] == "Pod"]
        assert [c["name"] for c in back["spec"]["containers"]] == ["server", "client"]
        assert {"name": "shared", "emptyDir": {}} in back["spec"]["volumes"], gen
        assert back["spec"]["restartPolicy"] == "Never"
        ok(d.conch("kube", "play", "--down", path, timeout=120))
        assert _ours(d, "Pod/kpod") == []
        vols = {v["Name"] for v in d.api.get("/volumes")["Volumes"] or []}
        assert "kpod-shared" not in vols
    finally:
        d.conch("kube", "play", "--down", path, timeout=120)


@pytest.mark.parametrize("doc, message", [
    ("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\n",
     "kind 'StatefulSet' (apps/v1) is not supported"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  affinity: {}\n"
     "  containers: [{name: c, image: busybox}]\n",
     "Pod p: field spec.affinity is not supported"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
     "  containers: [{name: c, image: busybox, readinessProbe: {exec: {command: [true]}}}]\n",
     "field spec.containers[0].readinessProbe is not supported"),
])
def test_play_refuses_unsupported_kinds_and_fields_by_name(d, tmp_path, doc, message):
    path = tmp_path / "bad.yaml"
    path.write_text(doc)
    before = d.container_ids()
    p = d.conch("kube", "play", path)
    assert p.returncode == 1 and message in p.stderr, p.stderr
    assert d.container_ids() == before


def test_round_trip_container_to_pod_yaml_and_back(d, tmp_path):
    """run -> generate --type pod -> rm -> play: the same service answers again, on the
    same host port, with the named volume's data (the PVC is the volume)."""
    port = free_port()
    vol = f"krt-{port}"
    ok(d.conch("volume", "create", vol))
    ok(d.conch("run", "--rm", "-v", f"{vol}:/www", "busybox", "sh", "-c",
               "echo kept in the volume > /www/index.html"))
    ok(d.conch("run", "-d", "--name", "krt", "-p", f"127.0.0.1:{port}:8080", "-v", f"{vol}:/www",
               "-e", "WHO=round-trip", "--restart", "always", "busybox",
               "sh", "-c", "echo $WHO > /www/who; exec httpd -f -p 8080 -h /www"))
    path = tmp_path / "krt.yaml"
    try:
        assert "kept in the volume" in _http_get(port)
        gen = ok(d.conch("kube", "generate", "--type", "pod", "krt"))
        path.write_text(gen)
        v = _validate(path)
        assert v.returncode == 0, f"{v.stdout}\n{v.stderr}\n{gen}"
        ok(d.conch("rm", "-f", "krt"))
        out = ok(d.conch("kube", "play", path, timeout=120))
        assert "pod/krt: 1 pod" in out, out
        assert "kept in the volume" in _http_get(port)
        assert _http_get(port, "/who").split("\r\n\r\n", 1)[1] == "round-trip\n"
        ok(d.conch("kube", "play", "--down", path, timeout=120))
        assert _ours(d, "Pod/krt") == []
    finally:
        d.conch("rm", "-f", "krt")
        d.conch("kube", "play", "--down", path, timeout=120)
        d.conch("volume", "rm", vol)


def test_play_is_all_or_nothing(d, tmp_path):
    """The second pod cannot start (its hostPort is the first one's): play fails with the
    daemon's error and removes what it made (the first pod, the network)."""
    port = free_port()
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n"
           "  - name: c\n    image: busybox\n    command: [sleep, '600']\n"
           "    ports: [{{containerPort: 80, hostPort: {port}}}]\n")
    path = tmp_path / "clash.yaml"
    path.write_text(pod.format(name="kfirst", port=port) + "---\n" + pod.format(name="ksecond", port=port))
    networks_before = {n["Name"] for n in d.api.get("/networks")}
    before = d.container_ids()
    try:
        p = d.conch("kube", "play", path, timeout=120)
        assert p.returncode == 1 and "Error response from daemon" in p.stderr, p.stderr
        assert d.container_ids() == before
        assert _ours(d, "Pod/kfirst") == [] and _ours(d, "Pod/ksecond") == []
        assert {n["Name"] for n in d.api.get("/networks")} == networks_before
    finally:
        d.conch("kube", "play", "--down", path, timeout=120)
