"""``conch kube``: Kubernetes YAML to and from what runs on this host.

Contract: like ``conch.cli`` and ``conch.compose`` this package reaches conchd only
through ``conch.client`` (the Docker Engine API), so it imports nothing from the engine:

- :mod:`conch.kube.generate`: containers, pods made by play, or compose projects (found
  by their labels) -> Deployment/Pod, Service, PersistentVolumeClaim, ConfigMap, Secret
  documents; whatever has no Kubernetes equivalent is named in a YAML comment.
- :mod:`conch.kube.play`: Pods, Deployments, Services, ConfigMaps, Secrets and
  PersistentVolumeClaims run here (``--down`` removes them again); the fields it carries
  out are listed in :mod:`conch.kube.schema`, and anything else is refused by name.
- :mod:`conch.kube.quantity`, :mod:`conch.kube.names`: Kubernetes' quantities and names.

PyYAML is imported only when YAML is read or written. docs/kubernetes.md is the guide.
"""
