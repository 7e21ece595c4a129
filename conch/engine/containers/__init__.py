"""Containers: the lifecycle of a container and everything that runs inside one.

Contract: ``service.ContainerService`` owns container records (create, start, stop, kill,
wait, restart policies, reconcile with the shims after a conchd restart); ``execs`` runs
extra processes in a running container; ``health`` runs healthchecks; ``logs`` reads and
follows the json-file logs; ``filesystem`` is cp/export/diff/commit over a container's
rootfs. The OCI side is ``ociconfig`` (Docker config -> OCI runtime spec), ``mounts``
(binds, volumes, copy-up), ``runtime_client`` (conch-runtime calls) and ``warmpool``
(pre-started shims); ``names`` generates and checks names. Networking is injected
(``conch.engine.network``), never imported from here at module level.
"""
