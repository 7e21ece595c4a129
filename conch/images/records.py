"""Image records as the image service hands them out (``Image``, ``HistoryEntry``,
``PruneResult``), what the engine tells it about containers (``ImageUser``) and the pure
rules both its halves share (:func:`stands_on`, reference parsing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageConfig, ImageManifest
from conch.oci.reference import Reference

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's time.Time{} as Docker prints it


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    id: Digest  # the config digest
    names: tuple[str, ...]  # full normalised references, sorted
    repo_tags: tuple[str, ...]  # familiar: "busybox:latest"
    repo_digests: tuple[str, ...]  # familiar: "busybox@sha256:…"
    target: Descriptor  # the manifest
    manifest: ImageManifest
    config: ImageConfig
    size: int  # unpacked bytes per layer where unpacked, else the compressed size
    last_tag_time: datetime | None

    @property
    def created(self) -> str:
        return self.config.created

    @property
    def os(self) -> str:
        return self.config.os

    @property
    def architecture(self) -> str:
        return self.config.architecture

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def dangling(self) -> bool:
        return not self.names

    def chain_ids(self) -> list[Digest]:
        return self.config.chain_ids()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageUser:
    """A container using an image, as the engine reports it to :meth:`ImageService.remove`."""

    container_id: str
    running: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One row of ``docker history`` (newest first); ``id`` is ``<missing>`` below the top."""

    id: str
    created: int  # unix seconds
    created_by: str
    tags: tuple[str, ...]
    size: int
    comment: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    deleted: list[dict[str, str]] = field(hash=False)  # Docker's ImagesDeleted items
    space_reclaimed: int


# --- Docker's rules, as small pure functions ------------------------------------------


def stands_on(upper: Image, lower: Image) -> bool:
    """Does ``upper`` extend ``lower`` (``lower`` is its parent or an earlier ancestor):
    ``lower``'s history is a strict prefix of ``upper``'s and its layers are the first of
    ``upper``'s. History entries carry their creation times, so two unrelated images do
    not match by chance; an image built on a cached step does, as under docker."""
    below, above = lower.config.history, upper.config.history
    layers_below, layers_above = lower.config.rootfs.diff_ids, upper.config.rootfs.diff_ids
    return (0 < len(below) < len(above) and above[:len(below)] == below
            and layers_above[:len(layers_below)] == layers_below)


def parse_ref(s: str, *, default_tag: bool = True) -> Reference:
    return Reference.parse(s, default_tag=default_tag)
