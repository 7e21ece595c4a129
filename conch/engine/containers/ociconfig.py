"""Docker's container semantics turned into an OCI runtime spec (config.json).

Docker's rules, in the order dockerd applies them (daemon/create.go merge, oci_linux.go):
the command is the entrypoint plus cmd, where a create-time entrypoint resets the image's
cmd; env is the image's overridden by the request's, plus PATH/HOSTNAME/TERM defaults;
user names resolve through the container's own /etc/passwd and /etc/group; the
isolation defaults come from ``conch.runtime.presets.docker_spec``.
"""

from __future__ import annotations

import os

from conch.engine.containers import propagation
from conch.engine.model import Container, CreateSpec
from conch.errors import InvalidArgument
from conch.runtime import presets

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def command(spec: CreateSpec, image_config) -> tuple[str, tuple[str, ...]]:
    """(path, args) as docker inspect shows them; raises when there is nothing to run."""
    exec_cfg = image_config.config if image_config is not None else None
    image_entry = tuple(exec_cfg.entrypoint or ()) if exec_cfg is not None else ()
    image_cmd = tuple(exec_cfg.cmd or ()) if exec_cfg is not None else ()
    if spec.entrypoint is not None:
        entry = tuple(e for e in spec.entrypoint if e != "") if spec.entrypoint != ("",) else ()
        cmd = spec.cmd if spec.cmd is not None else ()
    else:
        entry = image_entry
        cmd = spec.cmd if spec.cmd is not None else image_cmd
    full = tuple(entry) + tuple(cmd)
    if not full:
        raise InvalidArgument("no command specified")
    return full[0], full[1:]


def environment(spec: CreateSpec, image_config, hostname: str, link_env=()) -> list[str]:
    """The container's environment: ``--link`` variables, the image's, then its own -e
    (docker's CreateDaemonEnvironment order: each later one wins); PATH and HOSTNAME
    when none set them."""
    exec_cfg = image_config.config if image_config is not None else None
    merged: dict[str, str] = {}
    for item in [*link_env, *((exec_cfg.env or ()) if exec_cfg is not None else ()), *spec.env]:
        key, sep, value = item.partition("=")
        if not sep:  # "-e NAME" without a value and not set on the CLI side: dropped
            continue
        merged[key] = value
    out = [f"{k}={v}" for k, v in merged.items()]
    if "PATH" not in merged:
        out.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in merged:
        out.insert(1, f"HOSTNAME={hostname}")
    if spec.tty and "TERM" not in merged:
        out.append("TERM=xterm")
    return out


def resolve_user(user: str, rootfs: str) -> tuple[int, int, list[int]]:
    """"name", "uid", "name:group", "uid:gid" → (uid, gid, supplementary gids), through
    the container's own passwd and group files (Docker's getExecUser)."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = _read_db(os.path.join(rootfs, "etc/passwd"))
    groups = _read_db(os.path.join(rootfs, "etc/group"))
    uid = gid = None
    login = None
    for entry in passwd:
        if len(entry) >= 4 and (entry[0] == name or entry[2] == name):
            login, uid, gid = entry[0], int(entry[2]), int(entry[3])
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
    if group:
        gid = None
        for entry in groups:
            if len(entry) >= 3 and (entry[0] == group or entry[2] == group):
                gid = int(entry[2])
                break
        if gid is None:
            if not group.isdigit():
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    extra = []
    if login is not None:
        for entry in groups:
            if len(entry) >= 4 and login in entry[3].split(",") and int(entry[2]) != gid:
                extra.append(int(entry[2]))
    return uid, gid, extra


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def _binds(binds) -> list[dict]:
    mounts = []
    for bind in binds:
        parts = bind.split(":")
        if len(parts) < 2 or not parts[0].startswith("/"):
            raise InvalidArgument(f"invalid bind mount spec {bind!r}: want /host/path:/container/path[:ro|rw]")
        src, dst = parts[0], parts[1]
        mode = parts[2].split(",") if len(parts) > 2 else []
        if not dst.startswith("/"):
            raise InvalidArgument(f"invalid mount config: the container path {dst!r} must be absolute")
        if not os.path.exists(src):
            os.makedirs(src, exist_ok=True)  # docker creates a missing -v host directory
        opts = ["rbind", "ro" if "ro" in mode else "rw"]
        prop = [m for m in mode if m in ("private", "rprivate", "shared", "rshared", "slave", "rslave")]
        opts.append(prop[0] if prop else "rprivate")
        mounts.append({"destination": dst, "type": "bind", "source": src, "options": opts})
    return mounts


def _user_mounts(container: Container) -> tuple[list[dict], dict]:
    """The container's mounts (``Container.mounts``, resolved at create: binds, volumes,
    tmpfs) as OCI mounts, parents before children; tmpfs ones are returned as a
    ``{path: options}`` map for the presets. Records made before volumes existed have
    only binds there, which is what ``spec.binds`` held."""
    if not container.mounts and container.spec.binds:
        return _binds(container.spec.binds), {}
    mounts, tmpfs = [], {}
    ordered = sorted(container.mounts, key=lambda m: os.path.normpath(m["destination"]).count("/"))
    for m in ordered:
        dst, kind = m["destination"], m.get("type", "bind")
        rw = "rw" if m.get("rw", True) else "ro"
        if kind == "tmpfs":
            tmpfs[dst] = ",".join(m.get("options") or ())
        elif kind == "volume":
            src = m["source"]
            if m.get("subpath"):
                src = _volume_subpath(src, m["subpath"])
            mounts.append({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", rw, "rprivate"]})
        else:
            src = m["source"]
            if not os.path.exists(src):
                if m.get("strict"):
                    raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not exist: {src}")
                os.makedirs(src, exist_ok=True)  # docker creates a missing -v host directory
            prop = m.get("propagation") or "rprivate"
            propagation.check(src, prop)
            mounts.append({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", rw, prop]})
    return mounts, tmpfs


# -- HostConfig fields dockerd settles at create (daemon/create.go, daemon_unix.go) ---------

def default_cgroupns_mode() -> str:
    """dockerd's default CgroupnsMode: "private" on a cgroup v2 (unified) host, "host" on
    v1 and hybrid hosts such as this one (daemon_unix.go adaptContainerSettings)."""
    return "private" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "host"


def cgroupns_mode(spec: CreateSpec) -> str:
    return spec.cgroupns_mode or default_cgroupns_mode()


def masked_paths(spec: CreateSpec) -> list[str] | None:
    """What the runtime masks: the request's list, else docker's defaults; privileged
    containers mask nothing and show null (moby WithMaskedPaths, createContainerOSSpecificSettings)."""
    if spec.privileged:
        return None
    return list(spec.masked_paths) if spec.masked_paths is not None else list(presets.MASKED_PATHS)


def readonly_paths(spec: CreateSpec) -> list[str] | None:
    if spec.privileged:
        return None
    return list(spec.readonly_paths) if spec.readonly_paths is not None else list(presets.READONLY_PATHS)


def group_ids(groups, rootfs: str) -> list[int]:
    """HostConfig.GroupAdd: each a gid or a group name looked up in the container's own
    /etc/group (moby getAdditionalGroups); an unknown name fails the start as docker's."""
    if not groups:
        return []
    entries = _read_db(os.path.join(rootfs, "etc/group"))
    out = []
    for g in groups:
        gid = next((int(e[2]) for e in entries if len(e) >= 3 and e[0] == g and e[2].isdigit()), None)
        if gid is None:
            if not g.isdigit():
                raise InvalidArgument(f"Unable to find group {g}: no matching entries in group file")
            gid = int(g)
        out.append(gid)
    return out


def _volume_subpath(source: str, subpath: str) -> str:
    """VolumeOptions.Subpath: the volume's sub-directory, which must exist and stay
    inside the volume (moby volume/mounts: "cannot access path ...")."""
    from conch.runtime.rootfs import secure_join

    path = secure_join(source, subpath)
    if not os.path.exists(path):
        raise InvalidArgument(f"cannot access path {path}: no such file or directory")
    return path


def _security(spec: CreateSpec):
    seccomp: object = "default"
    nnp = False
    for opt in spec.security_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges":
            nnp = value in ("", "true")
        elif key == "seccomp":
            if value == "unconfined":
                seccomp = "unconfined"
            else:
                import json

                try:
                    seccomp = json.loads(value)
                except ValueError as exc:
                    raise InvalidArgument(f"security-opt seccomp: not a JSON profile: {exc}") from exc
        elif key in ("apparmor", "label") and value in ("unconfined", "disable"):
            continue  # no LSM here: "unconfined" is what we are anyway
        else:
            raise InvalidArgument(f"security-opt {opt!r} is not supported")
    return seccomp, nnp


def runtime_spec(container: Container, image_config, *, rootfs: str, files: dict[str, str],
                 user: tuple[int, int, list[int]], init_binary: str = "",
                 netns_path: str = "", link_env: list[str] | tuple = ()) -> dict:
    """The config.json for this container. ``files`` maps /etc/hostname, /etc/hosts and
    /etc/resolv.conf to the host files the engine wrote for it; ``netns_path`` is the
    network namespace the engine made for it (bridge networks; "" for ``none``, where
    the runtime makes an empty one, and for ``host``)."""
    spec = container.spec
    hostname = spec.hostname or container.id[:12]
    seccomp, nnp = _security(spec)
    network = spec.network_mode or "default"
    for mode, what in ((spec.pid_mode, "pid"), (spec.ipc_mode, "ipc"), (spec.uts_mode, "uts")):
        if mode not in ("", "host", "private", "shareable") or (what != "ipc" and mode in ("private", "shareable")):
            raise InvalidArgument(f"invalid {what} mode {mode!r}: only the host's or a private one")
    namespaces = ["mount"]
    if network != "host":
        namespaces.append("network")
    # --network host shares the host's uts namespace too (docker does)
    if spec.uts_mode != "host" and network != "host":
        namespaces.append("uts")
    if spec.pid_mode != "host":
        namespaces.append("pid")
    if spec.ipc_mode != "host":
        namespaces.append("ipc")
    if cgroupns_mode(spec) == "private":
        namespaces.append("cgroup")
    share_uts = "uts" not in namespaces
    mounts = [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}
              for dst, src in files.items()]
    user_mounts, mount_tmpfs = _user_mounts(container)
    mounts += user_mounts
    args = [container.path, *container.args]
    if spec.init:
        # docker's --init: a minimal init as pid 1 that reaps zombies and forwards signals
        if not init_binary:
            raise InvalidArgument("--init: conch-init is not installed (run `make setup`)")
        mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": init_binary,
                       "options": ["rbind", "ro", "rprivate"]})
        args = ["/sbin/docker-init", "--", *args]
    memory = spec.memory or None
    swap = spec.memory_swap if spec.memory_swap else None
    quota, period = spec.cpu_quota or None, spec.cpu_period or None
    if spec.nano_cpus:
        period = 100000
        quota = spec.nano_cpus * period // 1_000_000_000
    out = presets.docker_spec(
        args=args, rootfs=rootfs,
        env=environment(spec, image_config, hostname, link_env), cwd=_workdir(spec, image_config),
        user=user, hostname="" if share_uts else hostname, terminal=spec.tty,
        readonly_rootfs=spec.read_only, cap_add=spec.cap_add, cap_drop=spec.cap_drop,
        privileged=spec.privileged, seccomp=seccomp, no_new_privileges=nnp, mounts=mounts,
        tmpfs={**spec.tmpfs, **mount_tmpfs}, shm_size=spec.shm_size or presets.DEFAULT_SHM_SIZE,
        memory=memory, memory_swap=swap, cpu_quota=quota, cpu_period=period,
        cpu_shares=spec.cpu_shares or None, cpuset=spec.cpuset_cpus or None,
        pids_limit=spec.pids_limit if spec.pids_limit and spec.pids_limit > 0 else None,
        ulimits=spec.ulimits, namespaces=tuple(namespaces), sysctls=spec.sysctls,
        oom_score_adj=spec.oom_score_adj, cgroups_path=f"/conch/{container.id}",
        netns_path=netns_path or None,
    )
    if spec.tty and spec.console_size:
        # the runtime sizes the pty before the process runs (`docker run -it … stty size`)
        out["process"]["consoleSize"] = {"height": spec.console_size[0], "width": spec.console_size[1]}
    if spec.domainname:
        out["domainname"] = spec.domainname
    if share_uts:
        out.pop("hostname", None)
    if spec.memory_reservation:
        out["linux"]["resources"].setdefault("memory", {})["reservation"] = spec.memory_reservation
    root_prop = propagation.root_propagation(
        m.get("propagation") or "" for m in container.mounts if m.get("type") == "bind")
    if root_prop:
        out["linux"]["rootfsPropagation"] = root_prop
    if spec.memory_swappiness is not None:
        out["linux"]["resources"].setdefault("memory", {})["swappiness"] = spec.memory_swappiness
    # what inspect lists is what is applied (privileged: the presets' none)
    if not spec.privileged:
        out["linux"]["maskedPaths"] = masked_paths(spec)
        out["linux"]["readonlyPaths"] = readonly_paths(spec)
    if spec.group_add:
        uid, gid, extra = user
        gids = [g for g in dict.fromkeys([*extra, *group_ids(spec.group_add, rootfs)]) if g != gid]
        if gids:
            out["process"]["user"]["additionalGids"] = gids
    return out


def _workdir(spec: CreateSpec, image_config) -> str:
    exec_cfg = image_config.config if image_config is not None else None
    wd = spec.working_dir or (exec_cfg.working_dir if exec_cfg is not None and exec_cfg.working_dir else "") or "/"
    if not wd.startswith("/"):
        raise InvalidArgument(f"the working directory {wd!r} is invalid, it needs to be an absolute path")
    return wd
