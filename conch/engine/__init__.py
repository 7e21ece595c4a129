"""The engine: Docker's semantics for containers (and the seam to images), over the
runtime, the shim, the snapshotter and the metadata store.

Contract: the API layer calls one engine method per request with snake_case values
(``model.CreateSpec``) and gets records back (``model.Container``); Docker's PascalCase
JSON never appears here. Blocking work (snapshots, mounts, runtime calls) runs in
threads through ``asyncio.to_thread``; every background task is owned by the engine's
``TaskGroup`` and stopped with it.

A container is a durable record; its task (the live process) belongs to its shim, which
is not conchd's child and survives conchd restarts. At start the engine reconciles each
record with what really runs (``ContainerService.reconcile``).

On-disk layout (``--data-root``, default /var/lib/conch)::

    metadata.db                      images and containers (conch.metadata)
    content/ snapshots/              blobs and overlay snapshots (conch.content, .snapshots)
    containers/<id>/bundle/          OCI bundle: config.json; rootfs/ is the overlay mount
    containers/<id>/<id>-json.log    json-file logs, rotated (.1, .2, ...)
    containers/<id>/exit.json        written by the shim when the container exits
    containers/<id>/{hostname,hosts,resolv.conf}   bind-mounted into the container

and under ``--exec-root`` (default /run/conch)::

    runtime/                         conch-runtime's --root
    shims/<id>.sock                  the shim's attach socket
    netns/<id>                       a container's network namespace (conch.engine.network.service)

Packages (each ``__init__`` states its contract): ``containers`` (lifecycle, exec,
health, logs, filesystem, OCI config), ``network`` (networks and container sandboxes),
``distribution`` (pull, push, login), ``build`` (the classic builder). Shared modules:
``engine`` (the facade the API holds: the one seam), ``model`` (records), ``events``,
``durable`` (atomic writes), ``disk_usage``.
"""
