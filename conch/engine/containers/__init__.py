"""Containers: the lifecycle of a container and everything that runs inside one.

Contract: ``service.ContainerService`` owns container records (create, wait, remove,
rename, reconcile with the shims after a conchd restart); its other parts are mixins, one
module each: ``starting``, ``exits`` (monitor, cleanup, restart policy), ``signals``
(kill, stop, restart, pause), ``attaching``, ``resources`` (top, stats, update) and
``health_checks``. ``execs`` runs extra processes in a running container; ``health`` holds
the healthcheck rules and probe; ``logs`` reads and follows the json-file logs;
``filesystem`` is the API face of cp/export (``rootfs_tar``) and diff/commit (``changes``). The OCI side is ``ociconfig`` (Docker config -> OCI runtime spec), ``mounts``
(binds, volumes, copy-up), ``runtime_client`` (conch-runtime calls) and ``warmpool``
(pre-started shims); ``names`` generates and checks names. Networking is injected
(``conch.engine.network``), never imported from here at module level.
"""
