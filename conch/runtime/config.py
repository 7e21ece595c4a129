"""Loading and validating a bundle's config.json (runtime-spec 1.2).

Validation here is about failing early with a message naming the field: a config that
passes is one the init steps know how to apply. Fields the runtime does not implement are
rejected when set (never silently ignored).
"""

from conch.oci import fastjson as json  # no json module (re) on the hot path
import os

from conch.errors import InvalidArgument

# Known top-level Linux fields. Anything else under "linux" that is set is an error.
_LINUX_SUPPORTED = {
    "namespaces", "uidMappings", "gidMappings", "devices", "cgroupsPath", "resources",
    "sysctl", "seccomp", "maskedPaths", "readonlyPaths", "rootfsPropagation",
    "mountLabel", "personality",
}
_LINUX_UNSUPPORTED = {"intelRdt", "timeOffsets", "memoryPolicy", "netDevices", "mountLabel"}
# process fields this runtime cannot honour: set → a clear error, never a silent ignore
_PROCESS_UNSUPPORTED = {
    "apparmorProfile": "AppArmor", "selinuxLabel": "SELinux", "scheduler": "process.scheduler",
    "ioPriority": "process.ioPriority", "execCPUAffinity": "process.execCPUAffinity",
}
# mount options that are not mount(2) flags and that we do not implement
_MOUNT_UNSUPPORTED = {"idmap", "ridmap", "tmpcopyup", "copy-symlink", "src-nofollow", "nosymfollow"}
_PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}


def load(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.loads(f.read())
    except FileNotFoundError:
        raise InvalidArgument(f"no config.json in bundle {bundle!r}: run 'conch-runtime spec' to make one") from None
    except ValueError as exc:
        raise InvalidArgument(f"{path}: invalid JSON: {exc}") from exc
    validate(spec, bundle)
    return spec


def validate(spec: dict, bundle: str) -> None:
    if not isinstance(spec, dict):
        raise InvalidArgument("config.json: the top level must be an object")
    ver = spec.get("ociVersion", "")
    if not isinstance(ver, str) or not ver.startswith("1."):
        raise InvalidArgument(f"config.json: unsupported ociVersion {ver!r} (want 1.x)")
    root = spec.get("root")
    if not isinstance(root, dict) or not root.get("path"):
        raise InvalidArgument("config.json: root.path is required")
    rootfs = rootfs_path(spec, bundle)
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"config.json: root.path {rootfs!r} is not a directory")
    proc = spec.get("process")
    if proc is not None:
        if not proc.get("args"):
            raise InvalidArgument("config.json: process.args must name a program to run")
        cwd = proc.get("cwd", "/")
        if not cwd.startswith("/"):
            raise InvalidArgument(f"config.json: process.cwd {cwd!r} must be an absolute path")
        umask = (proc.get("user") or {}).get("umask")
        if umask is not None and (type(umask) is not int or not 0 <= umask <= 0o7777):
            raise InvalidArgument(f"config.json: process.user.umask {umask!r} is not a mode (0 to 0o7777)")
        for key, what in _PROCESS_UNSUPPORTED.items():
            if proc.get(key):
                raise InvalidArgument(f"config.json: process.{key} is set but conch-runtime "
                                      f"does not support {what}; remove it")
    linux = spec.get("linux") or {}
    for key, value in linux.items():
        if key in _LINUX_UNSUPPORTED and value:
            raise InvalidArgument(f"config.json: linux.{key} is not supported by conch-runtime")
    for ns in linux.get("namespaces") or ():
        if ns.get("type") not in ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"):
            raise InvalidArgument(f"config.json: unknown namespace type {ns.get('type')!r}")
        if ns.get("type") == "time":
            raise InvalidArgument("config.json: time namespaces are not supported by conch-runtime")
    types = [ns.get("type") for ns in linux.get("namespaces") or ()]
    if len(types) != len(set(types)):
        raise InvalidArgument("config.json: a namespace type is listed twice")
    if "user" in types and not any(ns.get("path") for ns in linux["namespaces"] if ns["type"] == "user"):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise InvalidArgument("config.json: a new user namespace needs uidMappings and gidMappings")
    # runc's validator, same words: the host's hostname and /proc are not the container's
    if (spec.get("hostname") or spec.get("domainname")) and "uts" not in types:
        raise InvalidArgument("config.json: unable to set hostname without a private UTS namespace")
    if (linux.get("maskedPaths") or linux.get("readonlyPaths")) and "mount" not in types:
        raise InvalidArgument("config.json: unable to restrict sys entries without a private MNT namespace")
    for m in spec.get("mounts") or ():
        if not str(m.get("destination", "")).startswith("/"):
            raise InvalidArgument(f"config.json: mount destination {m.get('destination')!r} must be absolute")
        bad = _MOUNT_UNSUPPORTED.intersection(m.get("options") or ())
        if bad or m.get("uidMappings") or m.get("gidMappings"):
            raise InvalidArgument(f"config.json: mount {m['destination']}: option "
                                  f"{sorted(bad)[0] if bad else 'uid/gid mappings'} is not supported")
    for key in linux.get("sysctl") or {}:
        _check_sysctl(key, {ns.get("type"): ns.get("path", "") for ns in linux.get("namespaces") or ()})
    persona = linux.get("personality")
    if persona:
        if persona.get("domain") not in _PERSONALITIES or persona.get("flags"):
            raise InvalidArgument(f"config.json: linux.personality {persona!r}: only domain "
                                  "LINUX or LINUX32 without flags is supported")


# runc's validator (libcontainer/configs/validate): a sysctl is written inside the
# container's namespaces, so only a namespaced one may be set, and only when the
# container has that namespace; anything else would change the host for everyone.
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def _check_sysctl(key: str, ns: dict) -> None:
    name = str(key).replace("/", ".")  # sysctl(8)'s slash spelling, as runc reads it
    quoted = '"' + str(key).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        if "ipc" in ns:
            return
        raise InvalidArgument(f"config.json: sysctl {quoted} is not allowed in the hosts ipc namespace")
    if name.startswith("net."):
        if "network" in ns and not _is_host_netns(ns["network"]):
            return
        raise InvalidArgument(f"config.json: sysctl {quoted} not allowed in host network namespace")
    if "uts" in ns:
        if name == "kernel.domainname":
            return
        if name == "kernel.hostname":
            raise InvalidArgument(f"config.json: sysctl {quoted} is not allowed as it conflicts "
                                  'with the OCI "hostname" field')
    raise InvalidArgument(f"config.json: sysctl {quoted} is not in a separate kernel namespace")


def _is_host_netns(path: str) -> bool:
    """A network namespace joined by path that is the runtime's own (runc refuses it)."""
    if not path:
        return False
    try:
        mine, theirs = os.stat("/proc/self/ns/net"), os.stat(path)
    except OSError:
        return False  # joining it fails later, with its own words
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def personality(spec: dict) -> int | None:
    persona = (spec.get("linux") or {}).get("personality")
    return _PERSONALITIES[persona["domain"]] if persona else None


def rootfs_path(spec: dict, bundle: str) -> str:
    path = spec["root"]["path"]
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(bundle, path))


def namespaces(spec: dict) -> dict[str, str]:
    """type -> path ('' for a new namespace)."""
    return {ns["type"]: ns.get("path", "") for ns in (spec.get("linux") or {}).get("namespaces") or ()}
