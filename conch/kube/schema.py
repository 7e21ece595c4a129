"""What ``conch kube play`` understands, field by field; everything else is refused by name.

Each kind's tree below lists the fields play carries out. A field that is not listed
(say ``spec.template.spec.affinity`` or ``spec.strategy``) is refused with its path,
never ignored: a manifest that plays here does what it says. ``True`` is a leaf (any
value; its meaning is checked where it is used), a dict is an object, a one-item list a
list of such objects.
"""

from __future__ import annotations

from conch.errors import InvalidArgument

META = {"name": True, "namespace": True, "labels": True, "annotations": True,
        "creationTimestamp": True}
PROBE = {"exec": {"command": True}, "initialDelaySeconds": True, "periodSeconds": True,
         "timeoutSeconds": True, "failureThreshold": True, "successThreshold": True}
KEY_REF = {"name": True, "key": True, "optional": True}
SOURCE_REF = {"name": True, "optional": True}
ITEMS = [{"key": True, "path": True, "mode": True}]
CONTAINER = {
    "name": True, "image": True, "imagePullPolicy": True, "command": True, "args": True,
    "workingDir": True, "tty": True, "stdin": True,
    "env": [{"name": True, "value": True,
             "valueFrom": {"configMapKeyRef": KEY_REF, "secretKeyRef": KEY_REF}}],
    "envFrom": [{"prefix": True, "configMapRef": SOURCE_REF, "secretRef": SOURCE_REF}],
    "ports": [{"name": True, "containerPort": True, "hostPort": True, "hostIP": True,
               "protocol": True}],
    "resources": {"limits": {"cpu": True, "memory": True},
                  "requests": {"cpu": True, "memory": True}},
    "livenessProbe": PROBE,
    "securityContext": {"runAsUser": True, "runAsGroup": True, "privileged": True,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"add": True, "drop": True}},
    "volumeMounts": [{"name": True, "mountPath": True, "readOnly": True, "subPath": True}],
}
POD_SPEC = {
    "containers": [CONTAINER],
    "volumes": [{"name": True,
                 "persistentVolumeClaim": {"claimName": True, "readOnly": True},
                 "configMap": {"name": True, "items": ITEMS, "defaultMode": True, "optional": True},
                 "secret": {"secretName": True, "items": ITEMS, "defaultMode": True,
                            "optional": True},
                 "emptyDir": {"medium": True, "sizeLimit": True},
                 "hostPath": {"path": True, "type": True}}],
    "restartPolicy": True, "hostNetwork": True, "hostname": True,
    "hostAliases": [{"ip": True, "hostnames": True}],
    "securityContext": {"sysctls": [{"name": True, "value": True}]},
    "terminationGracePeriodSeconds": True,
}
KINDS = {
    ("v1", "Pod"): {"metadata": META, "spec": POD_SPEC},
    ("apps/v1", "Deployment"): {
        "metadata": META,
        "spec": {"replicas": True, "selector": {"matchLabels": True},
                 "template": {"metadata": META, "spec": POD_SPEC}},
    },
    ("v1", "Service"): {
        "metadata": META,
        "spec": {"selector": True, "type": True,
                 "ports": [{"name": True, "port": True, "targetPort": True, "nodePort": True,
                            "protocol": True}]},
    },
    ("v1", "ConfigMap"): {"metadata": META, "data": True, "binaryData": True, "immutable": True},
    ("v1", "Secret"): {"metadata": META, "data": True, "stringData": True, "type": True,
                       "immutable": True},
    ("v1", "PersistentVolumeClaim"): {
        "metadata": META,
        "spec": {"accessModes": True, "resources": {"requests": {"storage": True}},
                 "storageClassName": True, "volumeMode": True},
    },
}


def check(doc: object, index: int) -> tuple[str, str]:
    """(kind, name) of a document play can carry out; InvalidArgument naming the first
    kind, field or shape it cannot."""
    if not isinstance(doc, dict):
        raise InvalidArgument(f"document {index + 1}: not a Kubernetes object")
    api, kind = doc.get("apiVersion"), doc.get("kind")
    tree = KINDS.get((api, kind))
    if tree is None:
        known = ", ".join(k for _, k in KINDS)
        raise InvalidArgument(f"document {index + 1}: kind {kind!r} ({api}) is not supported "
                              f"by conch kube play (supported: {known})")
    name = (doc.get("metadata") or {}).get("name")
    if not name:
        raise InvalidArgument(f"document {index + 1}: {kind} without metadata.name")
    rest = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
    _walk(rest, tree, f"{kind} {name}: ", "")
    ns = doc["metadata"].get("namespace")
    if ns not in (None, "default"):
        raise InvalidArgument(f"{kind} {name}: namespace {ns!r}: conch kube play has only 'default'")
    return kind, name


def _walk(value: object, tree, where: str, path: str) -> None:
    if tree is True or value is None:
        return
    if isinstance(tree, list):
        if not isinstance(value, list):
            raise InvalidArgument(f"{where}{path} must be a list")
        for i, item in enumerate(value):
            _walk(item, tree[0], where, f"{path}[{i}]")
        return
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}{path} must be an object")
    for key, sub in value.items():
        child = f"{path}.{key}" if path else key
        if key not in tree:
            raise InvalidArgument(f"{where}field {child} is not supported by conch kube play")
        _walk(sub, tree[key], where, child)
