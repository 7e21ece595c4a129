"""Images in Docker's shapes: ``docker history`` rows, the ``GET /images/{name}/json``
body (with overlay2's GraphDriver data) and an execution config as ``container.Config``.
A mixin of :class:`conch.images.store.ImageService`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from conch.errors import NotFound
from conch.images.records import HistoryEntry, Image, ZERO_TIME, stands_on
from conch.images.unpack import USAGE_LABEL
from conch.oci.image import ExecutionConfig



def container_config(c: ExecutionConfig) -> dict[str, Any]:
    """An image's execution config in the shape of Docker's ``container.Config``."""
    d: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": c.user,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    }
    if c.exposed_ports:
        d["ExposedPorts"] = dict(c.exposed_ports)
    d.update({
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": None if c.env is None else list(c.env),
        "Cmd": None if c.cmd is None else list(c.cmd),
    })
    if c.healthcheck is not None:
        d["Healthcheck"] = c.healthcheck.to_dict()
    if c.args_escaped:
        d["ArgsEscaped"] = True
    d.update({
        "Image": "",
        "Volumes": None if c.volumes is None else dict(c.volumes),
        "WorkingDir": c.working_dir,
        "Entrypoint": None if c.entrypoint is None else list(c.entrypoint),
        "OnBuild": None if c.on_build is None else list(c.on_build),
        "Labels": None if c.labels is None else dict(c.labels),
    })
    if c.stop_signal:
        d["StopSignal"] = c.stop_signal
    if c.shell is not None:
        d["Shell"] = list(c.shell)
    return d


def _unix(created: str) -> int:
    if not created:
        return 0
    try:
        return int(datetime.fromisoformat(created).timestamp())
    except ValueError:
        return 0


def _go_time(t: datetime | None) -> str:
    if t is None:
        return ZERO_TIME
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Presentation:
    """``docker history`` and ``docker image inspect`` (a mixin of :class:`ImageService`)."""

    # --- presentation -------------------------------------------------------------------

    def history(self, ref_or_id: str) -> list[HistoryEntry]:
        """``docker history``: newest first; empty layers have size 0."""
        image = self.get(ref_or_id)
        layer_sizes = iter(self._layer_sizes(image))
        entries = list(image.config.history)
        if not entries:  # no history: one synthetic entry per layer, as Docker does
            rows = [("", "", "", next(layer_sizes, 0)) for _ in image.manifest.layers]
        else:
            rows = [(h.created, h.created_by, h.comment,
                     0 if h.empty_layer else next(layer_sizes, 0)) for h in entries]
        # an entry whose image is here (a build step's, or the base's) shows its ID and
        # tags, as docker's classic store does; the others are "<missing>"
        below = {len(p.config.history): p for p in self.list() if stands_on(image, p)} if entries else {}
        out = []
        for i, (created, created_by, comment, size) in enumerate(reversed(rows)):
            owner = image if i == 0 else below.get(len(rows) - i)
            out.append(HistoryEntry(
                id=str(owner.id) if owner is not None else "<missing>",
                created=_unix(created), created_by=created_by,
                tags=owner.repo_tags if owner is not None else (), size=size, comment=comment,
            ))
        return out

    def layer_sizes(self, image: Image) -> list[int]:
        """Per layer (base first): the unpacked size once unpacked, else the blob's."""
        return self._layer_sizes(image)

    def _layer_sizes(self, image: Image) -> list[int]:
        sizes = []
        for layer, chain_id in zip(image.manifest.layers, image.chain_ids()):
            try:
                sizes.append(int(self.snapshotter.stat(str(chain_id)).labels[USAGE_LABEL]))
            except (NotFound, KeyError, ValueError):
                sizes.append(layer.size)
        return sizes

    def graph_driver_data(self, image: Image) -> dict[str, str] | None:
        """Docker's overlay2 ``GraphDriver.Data`` for the image's top layer (LowerDir only
        when it has parents); None when it is not unpacked (or the snapshotter has no
        directories to name)."""
        chain_ids = image.chain_ids()
        layer_dirs = getattr(self.snapshotter, "layer_dirs", None)
        if not chain_ids or layer_dirs is None:
            return None
        try:
            own, lowers = layer_dirs(str(chain_ids[-1]))
        except NotFound:
            return None
        data = {"MergedDir": str(own / "merged"), "UpperDir": str(own / "fs"),
                "WorkDir": str(own / "work")}
        if lowers:
            data = {"LowerDir": ":".join(map(str, lowers)), **data}
        return data

    def inspect_dict(self, image: Image) -> dict[str, Any]:
        """Docker's ``GET /images/{name}/json`` body (API 1.45)."""
        cfg = image.config
        d: dict[str, Any] = {
            "Id": str(image.id),
            "RepoTags": list(image.repo_tags),
            "RepoDigests": list(image.repo_digests),
            "Parent": "",
            "Comment": cfg.extra.get("comment", "") if isinstance(cfg.extra.get("comment"), str) else "",
            "Created": cfg.created or ZERO_TIME,
            "DockerVersion": "",
            "Author": cfg.author,
            "Config": None if cfg.config is None else container_config(cfg.config),
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Size": image.size,
            "GraphDriver": {"Name": "overlay2", "Data": self.graph_driver_data(image)},
            "RootFS": {"Type": cfg.rootfs.type, "Layers": [str(x) for x in cfg.rootfs.diff_ids]},
            "Metadata": {"LastTagTime": _go_time(image.last_tag_time)},
        }
        if cfg.variant:
            d["Variant"] = cfg.variant
        if cfg.os_version:
            d["OsVersion"] = cfg.os_version
        return d
