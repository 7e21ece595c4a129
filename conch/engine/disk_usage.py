"""``docker system df``: what images, containers, volumes, build cache and logs take.

Contract: :func:`disk_usage` returns one mapping (snake_case; ``conch.api.routes_system``
turns it into dockerd's ``/system/df`` shape):

* ``images``: the image records; ``image_containers`` maps image ID -> how many
  containers use it (docker's ``Containers``, what makes an image "active");
  ``shared_sizes`` maps image ID -> the bytes of its layers that another image uses too
  (docker's ``SharedSize``); ``layers_size``: every distinct layer counted once;
* ``containers``: per container the record's summary fields, ``size_rw`` (the bytes of
  its writable snapshot, hardlinks once), ``size_root_fs`` (that plus its image) and
  ``logs_size`` (its log file and rotations);
* ``volumes``: name, driver, mountpoint, labels, created_at, size, ref_count;
* ``build_cache``: empty (conch has no builder yet);
* ``logs_size``: all container logs together. dockerd has no such figure (its logs hide
  in the containers' directories); conch reports it as an extra key, and its CLI prints
  it as a "Container Logs" row.

Sizes are walked from disk on every call, as dockerd does; nothing is cached.
"""

from __future__ import annotations

import logging
from collections import Counter

from conch.engine.containers import logs
from conch.errors import ConchError

log = logging.getLogger(__name__)


def disk_usage(engine) -> dict:
    """The whole report (see the module docstring); ``engine`` is the Engine."""
    images = list(engine.images.list())
    containers = engine.containers.list()
    by_image = Counter(c.image_id for c in containers)
    shared, layers_size = _layer_sharing(engine.images, images)
    image_sizes = {str(i.id): i.size for i in images}
    out_containers = [_container(engine.containers, c, image_sizes) for c in containers]
    return {
        "layers_size": layers_size,
        "images": images,
        "image_containers": {str(i.id): by_image.get(str(i.id), 0) for i in images},
        "shared_sizes": shared,
        "containers": out_containers,
        "volumes": _volumes(engine, containers),
        "build_cache": [],
        "logs_size": sum(c["logs_size"] for c in out_containers),
    }


def _layer_sharing(images_service, images) -> tuple[dict[str, int], int]:
    """(image ID -> bytes of layers another image shares, every layer once)."""
    layer_size: dict[str, int] = {}
    per_image: dict[str, list[str]] = {}
    for image in images:
        sizes = _layer_sizes(images_service, image)
        chains = [str(c) for c in image.chain_ids()]
        per_image[str(image.id)] = chains
        layer_size.update(zip(chains, sizes))
    users = Counter(chain for chains in per_image.values() for chain in set(chains))
    shared = {image_id: sum(layer_size[c] for c in set(chains) if users[c] > 1)
              for image_id, chains in per_image.items()}
    return shared, sum(layer_size.values())


def _layer_sizes(images_service, image) -> list[int]:
    sizes = getattr(images_service, "layer_sizes", None)
    if sizes is not None:
        return list(sizes(image))
    return [layer.size for layer in image.manifest.layers]


def _container(service, c, image_sizes: dict[str, int]) -> dict:
    from conch.engine.containers.logs import rfc3339_to_ns

    try:
        size_rw = service.snapshotter.usage(c.id).size
    except (ConchError, OSError) as exc:  # a container whose snapshot is gone: 0, as docker
        log.debug("usage of %s: %s", c.id[:12], exc)
        size_rw = 0
    log_path = service.paths.log(c.id)
    return {
        "id": c.id, "name": c.name, "image": c.image, "image_id": c.image_id,
        "command": " ".join([c.path, *c.args]),
        "created": rfc3339_to_ns(c.created) // 1_000_000_000,
        "state": c.state.status.value, "status": c.state.status.value,
        "labels": dict(c.spec.labels), "size_rw": size_rw,
        "size_root_fs": size_rw + image_sizes.get(c.image_id, 0),
        "logs_size": sum(logs.size(p) for p in logs.files(log_path)),
    }


def _volumes(engine, containers) -> list[dict]:
    if engine.volumes is None:
        return []
    refs: Counter = Counter(m.get("name") for c in containers for m in c.mounts
                            if m.get("type") == "volume")
    store = engine.volumes.store
    return [{"name": v.name, "driver": v.driver, "mountpoint": v.mountpoint,
             "labels": v.labels, "created_at": v.created_at, "size": store.size(v.name),
             "ref_count": refs.get(v.name, 0)} for v in store.list()]
