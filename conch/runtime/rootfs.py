"""Building the container's root filesystem inside its new mount namespace.

Order (runc's rootfs_linux.go, which the runtime-spec's mount semantics follow):

1. ``prepare_root``: make "/" slave/private recursively so nothing we mount propagates
   back to the host, then bind the rootfs onto itself (pivot_root needs a mount point).
2. ``mount_all``: each ``mounts[]`` entry in order, its destination resolved *inside* the
   rootfs with symlinks followed as if the rootfs were "/" (``secure_join``), so a hostile
   image cannot redirect a mount onto the host.
3. ``create_devices``: default devices and ``linux.devices`` on a tmpfs /dev (mknod, or a
   bind of the host node inside a user namespace where mknod is not allowed), the
   /dev/fd, /dev/std* and /dev/ptmx symlinks.
4. ``pivot_root``: the ``pivot_root(".", ".")`` trick, then detach the old root.
5. after pivot: sysctls, masked and read-only paths, read-only root.
"""

import os
import stat

from conch.errors import InvalidArgument, SystemCallError
from conch.kernel import mount as km

_MAX_SYMLINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """Join ``unsafe`` to ``root`` resolving symlinks as if ``root`` were "/".

    The result is always inside ``root``; components that do not exist yet are kept
    lexically. Same contract as cyphar/filepath-securejoin.
    """
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise InvalidArgument(f"too many symlinks resolving {unsafe!r} in the rootfs")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def prepare_root(rootfs: str, propagation: str) -> None:
    flag = km.PROPAGATION_OPTIONS.get(propagation or "rslave")
    if flag is None:
        raise InvalidArgument(f"linux.rootfsPropagation {propagation!r} is not a propagation mode")
    # "shared" for the rootfs itself is applied after pivot; the host side must stay
    # slave at least, or our mounts would leak back.
    if flag & km.MS_SHARED:
        flag = km.MS_SLAVE | km.MS_REC
    km.mount(None, "/", None, flag)
    _make_parent_private(rootfs)
    km.mount(rootfs, rootfs, None, km.MS_BIND | km.MS_REC)


def _make_parent_private(rootfs: str) -> None:
    """pivot_root fails (EINVAL) when the new root's parent mount is shared."""
    mnt = _mount_point_of(rootfs)
    if mnt is not None and mnt[1]:
        km.mount(None, mnt[0], None, km.MS_PRIVATE)


def _mount_point_of(path: str):
    """(mount point, is_shared) of the mount containing ``path``."""
    best = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and (best is None or len(mp) >= len(best[0])):
                optional = fields[6:fields.index("-")]
                best = (mp, any(o.startswith("shared:") for o in optional))
    return best


# -- mounts -------------------------------------------------------------------------

def mount_all(spec: dict, rootfs: str, cgroup_mounts, in_userns: bool) -> None:
    for m in spec.get("mounts") or ():
        mount_one(m, rootfs, cgroup_mounts, in_userns)


def mount_one(m: dict, rootfs: str, cgroup_mounts, in_userns: bool) -> None:
    dest = secure_join(rootfs, m["destination"])
    mtype = m.get("type") or ""
    source = m.get("source") or ""
    options = m.get("options") or []
    flags, propagation, data = km.parse_options(options)
    is_bind = mtype == "bind" or flags & km.MS_BIND
    if is_bind:
        # Data words (mode=755, size=1k, ...) next to bind/rbind are dropped, as runc
        # does: mount(2) ignores the data argument of an MS_BIND mount, so they could
        # never apply, and configs written for other mount types carry them along.
        if not source or not os.path.exists(source):
            raise InvalidArgument(f"bind mount source {source!r} for {m['destination']} does not exist")
        _make_target(dest, is_dir=os.path.isdir(source))
        km.mount(source, dest, None, km.MS_BIND | (flags & km.MS_REC))
        remount = flags & ~(km.MS_BIND | km.MS_REC | km.MS_REMOUNT)
        if remount:
            _remount_bind(dest, remount)
    elif mtype == "cgroup":
        _make_target(dest, is_dir=True)
        _mount_cgroup(dest, flags, cgroup_mounts)
    else:
        _make_target(dest, is_dir=True)
        try:
            km.mount(source or mtype, dest, mtype, flags, ",".join(data) or None)
        except SystemCallError as exc:
            # sysfs cannot be mounted in a user namespace that does not own the network
            # namespace: runc falls back to a recursive read-only bind of the host's /sys.
            if mtype == "sysfs" and exc.errno in (1, 13) and in_userns:
                km.mount("/sys", dest, None, km.MS_BIND | km.MS_REC)
                _remount_bind(dest, flags | km.MS_RDONLY)
            else:
                raise
    if propagation:
        km.mount(None, dest, None, propagation)


def _make_target(dest: str, is_dir: bool) -> None:
    if os.path.lexists(dest):
        return
    if is_dir:
        os.makedirs(dest, 0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), 0o755, exist_ok=True)
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _remount_bind(dest: str, flags: int, keep_existing: bool = False) -> None:
    """Remount a bind mount with new flags, keeping the flags the kernel locks.

    Inside a user namespace, nosuid/nodev/noexec/ro inherited from the source mount are
    locked: a remount that drops them fails with EPERM, so they are read back and kept.
    """
    base = km.MS_BIND | km.MS_REMOUNT
    if keep_existing:
        flags |= _statvfs_flags(dest)
    try:
        km.mount(None, dest, None, base | flags)
    except SystemCallError as exc:
        if exc.errno != 1:
            raise
        km.mount(None, dest, None, base | flags | _statvfs_flags(dest))


def _statvfs_flags(path: str) -> int:
    st = os.statvfs(path)
    out = 0
    for bit in (km.MS_RDONLY, km.MS_NOSUID, km.MS_NODEV, km.MS_NOEXEC, km.MS_NOATIME,
                km.MS_NODIRATIME, km.MS_RELATIME):
        if st.f_flag & bit:  # statvfs ST_* bits equal the MS_* bits for these
            out |= bit
    return out


def _mount_cgroup(dest: str, flags: int, cgroup_mounts) -> None:
    """Mount the container's cgroups at ``dest``.

    ``cgroup_mounts`` is a list of (name, fstype, options, host_dir) prepared by the
    parent. v2: one cgroup2 mount (the cgroup namespace makes its root the container's
    cgroup) or a bind of the container's dir. v1: a tmpfs with one directory per
    hierarchy, each a cgroup mount (with a cgroup namespace) or a bind of the host dir.
    """
    ro = flags & km.MS_RDONLY
    base = flags & (km.MS_NOSUID | km.MS_NODEV | km.MS_NOEXEC)
    if len(cgroup_mounts) == 1 and cgroup_mounts[0][0] == "":
        _name, fstype, opts, host_dir = cgroup_mounts[0]
        _cgroup_fs_or_bind(dest, fstype, opts, host_dir, base | ro)
        return
    # The tmpfs itself stays writable, as with runc: only the hierarchies below it are
    # read-only (what tools inside containers have come to expect).
    km.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for name, fstype, opts, host_dir in cgroup_mounts:
        sub = os.path.join(dest, name)
        os.makedirs(sub, exist_ok=True)
        _cgroup_fs_or_bind(sub, fstype, opts, host_dir, base | ro)


def _cgroup_fs_or_bind(dest, fstype, opts, host_dir, flags) -> None:
    if fstype != "bind":
        try:
            km.mount("cgroup", dest, fstype, flags, opts or None)
            return
        except SystemCallError:
            if not host_dir:
                raise
    # No cgroup namespace of our own (or the kernel refused): bind the container's dir.
    km.mount(host_dir, dest, None, km.MS_BIND | km.MS_REC)
    if flags:
        _remount_bind(dest, flags)


# -- devices ------------------------------------------------------------------------

DEFAULT_DEVICES = (
    # path, type, major, minor, mode — runc's AllowedDevices that are created as nodes
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
)

_DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)


def dev_is_mounted(spec: dict) -> bool:
    return any(m.get("destination") == "/dev" and m.get("type") != "bind"
               and "bind" not in (m.get("options") or ()) and "rbind" not in (m.get("options") or ())
               for m in spec.get("mounts") or ())


def create_devices(spec: dict, rootfs: str, in_userns: bool) -> None:
    devices = [{"path": p, "type": t, "major": ma, "minor": mi, "fileMode": mode,
                "uid": 0, "gid": 0} for p, t, ma, mi, mode in DEFAULT_DEVICES]
    listed = {d["path"] for d in (spec.get("linux") or {}).get("devices") or ()}
    devices = [d for d in devices if d["path"] not in listed]
    devices += (spec.get("linux") or {}).get("devices") or []
    old = os.umask(0)
    try:
        for dev in devices:
            _create_device(rootfs, dev, in_userns)
        for src, link in _DEV_LINKS:
            dst = secure_join(rootfs, link)
            if not os.path.lexists(dst):
                os.symlink(src, dst)
        if os.path.exists("/proc/kcore"):
            dst = secure_join(rootfs, "/dev/core")
            if not os.path.lexists(dst):
                os.symlink("/proc/kcore", dst)
    finally:
        os.umask(old)


_DEV_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _create_device(rootfs: str, dev: dict, in_userns: bool) -> None:
    path = dev.get("path", "")
    if not path.startswith("/dev/"):
        raise InvalidArgument(f"linux.devices path {path!r} must be under /dev")
    kind = _DEV_TYPES.get(dev.get("type"))
    if kind is None:
        raise InvalidArgument(f"linux.devices {path}: unknown type {dev.get('type')!r}")
    dest = secure_join(rootfs, path)
    os.makedirs(os.path.dirname(dest), 0o755, exist_ok=True)
    if in_userns:
        # mknod is not allowed in a user namespace: bind the host's node instead
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o000))
        km.mount(path, dest, None, km.MS_BIND)
        return
    if os.path.lexists(dest):
        os.unlink(dest)
    mode = dev.get("fileMode", 0o666) & 0o7777
    os.mknod(dest, kind | mode, os.makedev(dev.get("major", 0), dev.get("minor", 0)))
    os.chown(dest, dev.get("uid", 0), dev.get("gid", 0))


# -- pivot_root and after -----------------------------------------------------------

def pivot_root(rootfs: str) -> None:
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        # pivot_root(".", ".") stacks the old root on top of the new one; detaching "."
        # afterwards removes it without needing a directory for it inside the rootfs.
        km.pivot_root(".", ".")
        os.fchdir(old_root)
        km.mount(None, ".", None, km.MS_SLAVE | km.MS_REC)
        km.umount(".", km.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def chroot(rootfs: str) -> None:
    os.chroot(rootfs)
    os.chdir("/")


def apply_sysctls(sysctl: dict) -> None:
    for key, value in (sysctl or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        if ".." in key.split("."):
            raise InvalidArgument(f"sysctl {key!r}: invalid name")
        try:
            # never through a link, never a new file: a sysctl is a file procfs has (an
            # image without /proc mounted must not get one made or written through a link)
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # no O_TRUNC: checked first
            try:
                if not _on_procfs(fd):  # an image's own file where no proc is mounted
                    raise InvalidArgument(f"sysctl {key}: {path} is not on procfs")
                os.write(fd, str(value).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise SystemCallError("write", exc.errno or 0, path, f"sysctl {key}={value}") from exc


_PROC_SUPER_MAGIC = 0x9FA0


def _on_procfs(fd: int) -> bool:
    """fstatfs(fd).f_type is procfs's (runc checks the same before writing a sysctl)."""
    import sys

    from conch.kernel.libc import buffer, check, libc

    buf = buffer(bytes(256))  # struct statfs: f_type, a long, comes first
    check(libc().fstatfs(fd, buf), "fstatfs")
    width = 8 if sys.maxsize > 2**32 else 4
    return int.from_bytes(bytes(buf)[:width], sys.byteorder) == _PROC_SUPER_MAGIC


def mask_paths(paths) -> None:
    """Files are masked with the container's /dev/null, directories with a read-only
    tmpfs. /dev/null is the image's own when no tmpfs was mounted on /dev: it must be the
    null device itself, bound through an fd opened without following links, or an image
    could make it a link to a writable file and unmask what it covers (runc's
    CVE-2025-31133)."""
    if not paths:
        return
    try:
        null = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # a masked file left readable is no option
        raise InvalidArgument("the container has no /dev/null to mask files "
                              f"with ({exc.strerror}); mount a tmpfs on /dev or add it to the image") from None
    try:
        st = os.fstat(null)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            raise InvalidArgument("/dev/null in the container is not the null device (1:3)")
        for path in paths:
            try:
                is_dir = os.path.isdir(path) and not os.path.islink(path)
                if is_dir:
                    km.mount("tmpfs", path, "tmpfs", km.MS_RDONLY)
                else:
                    km.mount(f"/proc/self/fd/{null}", path, None, km.MS_BIND)
            except SystemCallError as exc:
                if exc.errno != 2:  # ENOENT: nothing to mask
                    raise
    finally:
        os.close(null)


def readonly_paths(paths) -> None:
    for path in paths or ():
        try:
            km.mount(path, path, None, km.MS_BIND | km.MS_REC)
        except SystemCallError as exc:
            if exc.errno == 2:
                continue
            raise
        _remount_bind(path, km.MS_RDONLY, keep_existing=True)


def readonly_root() -> None:
    _remount_bind("/", km.MS_RDONLY, keep_existing=True)


def set_root_propagation(propagation: str) -> None:
    flag = km.PROPAGATION_OPTIONS.get(propagation or "")
    if flag and flag & km.MS_SHARED:
        km.mount(None, "/", None, flag)
