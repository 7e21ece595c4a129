"""A container's mounts, as docker resolves them: ``-v`` binds and volumes,
``HostConfig.Mounts`` (bind, volume, tmpfs), ``--volumes-from``, anonymous volumes for
``-v /path`` and the image's VOLUME paths; docker's copy-up of a new volume from the
image; the mounting of option-backed volumes (``volume create -o``) around a task.

Functions of the :class:`conch.engine.containers.service.ContainerService` they serve (``svc``:
its ``volumes`` store, ``get`` and ``list``); the mount records are the dicts kept in
``Container.mounts`` (``type, source, destination, mode, rw, propagation`` and, for
volumes, ``name, driver, anonymous, copy_up``).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil

from conch.engine.model import Container, CreateSpec
from conch.errors import ConchError, InvalidArgument, NotFound

log = logging.getLogger(__name__)

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def make_mounts(svc, spec: CreateSpec, image) -> tuple[tuple[dict, ...], list[str]]:
    """The container's mounts, as docker resolves them at create: ``-v /host:/ctr``
    binds, ``-v name:/ctr`` named volumes (created on first use), ``HostConfig.Mounts``
    (bind, volume, tmpfs), then an anonymous volume for each ``-v /ctr`` and each
    image VOLUME path not mounted otherwise. Returns (mounts, names of the volumes
    this call created); a volume it created is marked ``copy_up`` (filled from the
    image at first start, if still empty)."""
    out: list[dict] = []
    created: list[str] = []

    def add(m: dict) -> None:
        dst = m["destination"]
        if not dst.startswith("/"):
            raise InvalidArgument(f"invalid mount config: the container path {dst!r} must be absolute")
        norm = _clean(dst)
        if any(os.path.normpath(o["destination"]) == norm for o in out):
            raise InvalidArgument(f"Duplicate mount point: {norm}")
        # docker cleans both paths (moby volume/mounts/linux_parser.go: path.Clean), so
        # `-v /site/:/www/` shows "/site" and "/www" in inspect's Mounts
        m["destination"] = norm
        if m["type"] == "bind":
            m["source"] = _clean(m["source"])
        out.append(m)

    def volume(name: str | None, dst: str, *, mode: str, rw: bool, labels=None,
               driver: str = "local", copy: bool = True, subpath: str = "") -> None:
        if svc.volumes is None:
            raise InvalidArgument("volumes are not available in this engine")
        from conch.volumes import ANONYMOUS_LABEL

        anonymous = not name
        labels = dict(labels or {})
        if anonymous:
            labels[ANONYMOUS_LABEL] = ""
        v, new = svc.volumes.ensure(name or None, driver=driver, labels=labels)
        if new:
            created.append(v.name)
        add({"type": "volume", "name": v.name, "source": v.mountpoint, "destination": dst,
             "driver": v.driver, "mode": mode, "rw": rw, "propagation": "",
             "anonymous": anonymous, "copy_up": new and copy,
             **({"subpath": subpath} if subpath else {})})

    try:
        for bind in spec.binds:
            parts = bind.split(":")
            if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
                raise InvalidArgument(f"invalid volume specification: '{bind}'")
            src, dst = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else ""
            rw = "ro" not in mode.split(",")
            if src.startswith("/"):
                props = [p for p in mode.split(",") if p in _PROPAGATIONS]
                add({"type": "bind", "source": src, "destination": dst, "mode": mode,
                     "rw": rw, "propagation": props[-1] if props else "rprivate"})
            else:
                volume(src, dst, mode=mode or "z", rw=rw,
                       copy="nocopy" not in mode.split(","))
        for m in spec.mounts:
            kind = m.get("Type") or "volume"
            src, dst = m.get("Source") or "", m.get("Target") or m.get("Destination") or ""
            rw = not m.get("ReadOnly")
            if not dst:
                raise InvalidArgument("invalid mount config: Target must not be empty")
            if kind == "bind":
                if not src.startswith("/"):
                    raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute")
                if not os.path.exists(src):
                    raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not exist: {src}")
                prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
                add({"type": "bind", "source": src, "destination": dst, "mode": "",
                     "rw": rw, "propagation": prop, "strict": True})
            elif kind == "volume":
                opts = m.get("VolumeOptions") or {}
                driver = (opts.get("DriverConfig") or {}).get("Name") or "local"
                subpath = opts.get("Subpath") or ""
                if subpath and (subpath.startswith("/") or ".." in subpath.split("/")):
                    raise InvalidArgument(f"invalid mount config for type \"volume\": subpath must be "
                                          f"a relative path within the volume: {subpath}")
                volume(src or None, dst, mode="z", rw=rw, labels=opts.get("Labels"),
                       driver=driver, copy=not opts.get("NoCopy") and not subpath,
                       subpath=subpath)
            elif kind == "tmpfs":
                if src:
                    raise InvalidArgument("invalid mount config for type \"tmpfs\": Source must not be specified")
                t = m.get("TmpfsOptions") or {}
                options = [] if rw else ["ro"]
                if t.get("SizeBytes"):
                    options.append(f"size={int(t['SizeBytes'])}")
                if t.get("Mode"):
                    options.append(f"mode={int(t['Mode']):o}")
                add({"type": "tmpfs", "source": "", "destination": dst, "mode": "",
                     "rw": rw, "propagation": "", "options": options})
            else:
                raise InvalidArgument(f"mount type {kind!r} is not supported")
        for m in volumes_from(svc, spec.volumes_from):
            if not any(os.path.normpath(o["destination"]) == os.path.normpath(m["destination"])
                       for o in out):  # the container's own -v/--mount win (docker)
                out.append(m)
        taken = {os.path.normpath(m["destination"]) for m in out}
        exec_cfg = image.config.config if image is not None and image.config is not None else None
        image_volumes = list((exec_cfg.volumes or {}).keys()) if exec_cfg is not None else []
        for path in list(spec.volumes) + image_volumes:
            if not path.startswith("/"):
                raise InvalidArgument(f"invalid mount config: the container path {path!r} must be absolute")
            norm = os.path.normpath(path)
            if norm in taken:
                continue
            taken.add(norm)
            volume(None, norm, mode="", rw=True)
    except BaseException:
        for vname in created:
            svc.volumes.remove(vname, force=True)
        raise
    return tuple(out), created

def volumes_from(svc, refs) -> list[dict]:
    """``--volumes-from ref[:ro|:rw]``: the binds and volumes of container ``ref``
    (tmpfs mounts are not shared, as docker), with their own mode unless ``:ro``/``:rw``
    overrides it. A volume stays the other container's (never anonymous here: ``rm -v``
    of this one must not remove it, nor copy it up again)."""
    out: list[dict] = []
    for ref in refs:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
        try:
            other = svc.get(name)
        except NotFound as exc:
            # 400, not 404: docker's CLI reads a 404 from create as "pull the image"
            raise InvalidArgument(f"No such container: {name}") from exc
        for m in other.mounts:
            if m.get("type") not in ("bind", "volume"):
                continue
            m = {**m, "anonymous": False, "copy_up": False}
            if mode:
                parts = [p for p in str(m.get("mode", "")).split(",") if p and p not in ("ro", "rw")]
                m["mode"] = ",".join([*parts, mode])
                m["rw"] = mode == "rw"
            if any(o["destination"] == m["destination"] for o in out):
                raise InvalidArgument(f"Duplicate mount point: {m['destination']}")
            out.append(m)
    return out

def volume_users(svc, name: str) -> list[str]:
    """Ids of the containers (running or not) that mount volume ``name``."""
    return [c.id for c in svc.list()
            if any(m.get("type") == "volume" and m.get("name") == name for m in c.mounts)]

def copy_up(c: Container, rootfs: str) -> tuple[dict, ...]:
    """Docker's copy-up: a volume this container created, still empty, is filled
    with what the image has at its path (ownership, modes and symlinks kept)."""
    from conch.runtime.rootfs import secure_join

    out = []
    for m in c.mounts:
        if m.get("copy_up"):
            data = m["source"]
            src = secure_join(rootfs, m["destination"])
            if os.path.isdir(src) and not os.path.islink(src) and os.path.isdir(data) \
                    and not os.listdir(data):
                _copy_tree(src, data)
            m = {**m, "copy_up": False}
        out.append(m)
    return tuple(out)


def mount_volumes(svc, c: Container) -> None:
    if svc.volumes is None:
        return
    for m in c.mounts:
        if m.get("type") == "volume":
            svc.volumes.mount(m["name"])

def unmount_volumes(svc, cid: str, mounts) -> None:
    """Unmount the option-backed volumes (``volume create -o``) of ``mounts`` that no
    other running container uses (docker's local driver unmounts at the last user)."""
    if svc.volumes is None:
        return
    names = {m["name"] for m in mounts if m.get("type") == "volume"}
    if not names:
        return
    busy = {m.get("name") for other in svc.list() if other.id != cid and other.state.running
            for m in other.mounts if m.get("type") == "volume"}
    for name in names - busy:
        try:
            svc.volumes.unmount(name)
        except ConchError as exc:
            log.warning("unmounting volume %s: %s", name[:12], exc)


def _copy_tree(src: str, dst: str) -> None:
    """Copy ``src``'s content into the (empty) directory ``dst``: modes, times, owners,
    symlinks as links; ``dst`` itself takes ``src``'s owner and mode."""
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for n in [None, *dirnames, *filenames]:
            if n is None:
                s, d = dirpath, os.path.normpath(os.path.join(dst, rel))
            else:
                s, d = os.path.join(dirpath, n), os.path.join(dst, rel, n)
            st = os.lstat(s)
            os.lchown(d, st.st_uid, st.st_gid)
            if n is None or not os.path.islink(s):
                os.chmod(d, st.st_mode & 0o7777)  # after chown, which clears setuid bits


def _clean(path: str) -> str:
    """Go's path.Clean for an absolute path: no ``.``, ``..``, doubled or trailing slash."""
    return "/" + posixpath.normpath(path).lstrip("/")
