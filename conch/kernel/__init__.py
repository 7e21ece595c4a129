"""The only place conch talks to the kernel through ctypes.

Contract: thin, synchronous wrappers over syscalls that Python's ``os`` module lacks
(mount, umount2, pivot_root, unshare, setns, capset/capget, prctl, seccomp, bpf). Each
raises :class:`conch.errors.SystemCallError` carrying the syscall, errno and path.
Nothing here knows about containers, bundles or images.

Modules: ``libc`` (the loaded libc and the errno-checking call helper), ``mount``,
``namespaces``, ``capabilities``, ``prctl``, ``seccomp``, ``bpf`` (bpf(2): maps,
program load, links, and a tiny eBPF assembler).
"""
