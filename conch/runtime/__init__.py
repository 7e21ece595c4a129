"""conch-runtime: a runc-compatible OCI runtime (runtime-spec 1.2, Linux).

Contract: it takes a bundle (``config.json`` + rootfs) and nothing else; it knows nothing
of images, registries, networks or the Docker API. Its command line is runc's, so podman
(``--runtime``), containerd, dockerd and conch's own shim can drive it.

Two implementations. The executable ``conch-runtime`` is a C front (shim/conch-runtime.c,
shim/runtime/) that does ``create``/``run`` (and ``start``, ``state``, ``kill``,
``delete`` of the common case) itself whenever every flag and config.json key is one it
applies exactly as this package does, and execs this package (``conch-runtime-py``) for
everything else; a failure after it changed the host is undone and handed here. This
package is the specification: a change of behaviour here must be made there too, or
declined there (shim/runtime/spec.c) — tests/integration/test_runtime_front_*.py run the
same bundles through both and fail on any difference.

Process model of ``create``. Without a user namespace, P forks the init itself (one fork
per container): it unshares (or joins) the pid namespace just around the fork, which
only its children feel, and G enters the other namespaces::

    runtime (P)  ── fork ──►  init (G, pid 1 of the container)
      cgroup, hooks,            setns/unshare the other namespaces, rootfs, pivot_root,
      state file                devices, hostname, user, caps, seccomp, waits on
                                exec.fifo, then execs

With a user namespace (which a process with threads, such as P with its prearm thread,
may not change) it is runc's nsexec shape, in Python::

    runtime (P)  ── fork ──►  intermediate (C)  ── fork ──►  init (G)
      uid/gid maps              setns/unshare into the new namespaces, reports G to P
                                and exits

P and its children talk over two pipes with one JSON object per line (``sync.py``); a
failed step in C or G is sent back as ``{"type": "error", "step", "message", "errno"}`` and
the child exits, so the container process never execs half-configured.

On-disk layout under ``--root`` (default ``/run/conch-runtime``)::

    <root>/<id>/state.json   the record (written atomically: temp + rename; not fsynced)
    <root>/<id>/exec.fifo    exists between create and start; ``start`` opens it to release G
    <root>/<id>/state.front  from "created" on: what the C front (shim/conch-runtime.c)
                             needs for ``state`` and ``start`` without Python (State._save_front)

Modules: ``main`` (command line), ``commands`` (one function per verb), ``fastpath``
(``state``/``start``/``delete`` in their common case, without importing ``os``),
``prearm`` (cgroup migrations made fast while we import), ``state``,
``config`` (config.json loading/validation), ``create`` (the parent side), ``init`` (the
child steps), ``rootfs`` (mounts, devices, pivot_root), ``process`` (user, caps, rlimits,
seccomp, exec), ``console`` (ptys and SCM_RIGHTS), ``hooks``, ``sync``, ``seccomp``
(BPF compiler), ``presets`` (Docker's default isolation).
"""
