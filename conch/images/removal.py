"""Removing images: ``docker rmi`` is Docker's ``ImageDelete`` (daemon/images/
image_delete.go), messages included: by name it untags (and removes the image with its
last name); by ID it removes an image with one name (or several digests of one
repository), but an image named in several repositories needs ``force``; a running
container's image cannot be removed even with ``force``, a stopped one's needs it.
Content blobs and unpacked snapshots no remaining image uses are deleted afterwards
(``_collect``). ``docker image prune`` removes the unused ones, leaving intermediate build
steps to go with the image above them.

A mixin of :class:`conch.images.store.ImageService` (its lock, database, content store
and snapshotter are used through ``self``).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence

from conch.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from conch.images.records import Image, ImageUser, PruneResult, parse_ref, stands_on
from conch.metadata.db import ImageRecord, dangling_name, now
from conch.oci.digest import Digest
from conch.oci.reference import Reference

log = logging.getLogger(__name__)


def _no_users(image_id: str) -> Sequence[ImageUser]:
    return ()


def _single_reference(refs: list[Reference]) -> bool:
    """Docker's ``isSingleReference``: at most one tag, and any digest references are
    of that tag's repository (or of one repository when there is no tag)."""
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if r.digest is None]
    if len(tags) > 1:
        return False
    digest_repos = {r.name for r in refs if r.digest is not None}
    single = tags[0] if tags else refs[0]
    return len(digest_repos) == 1 and single.name in digest_repos


def _conflict(image_id: Digest, users: list[ImageUser], refs: list[Reference], *,
              force: bool) -> Conflict | None:
    """Docker's ``checkImageDeleteConflict``: running containers block even ``force``;
    remaining names and stopped containers block unless ``force``."""
    def err(hard: bool, message: str) -> Conflict:
        how = "cannot be forced" if hard else "must be forced"
        return Conflict(f"conflict: unable to delete {image_id.short()} ({how}) - {message}")

    running = next((u for u in users if u.running), None)
    if running is not None:
        return err(True, f"image is being used by running container {running.container_id[:12]}")
    if force:
        return None
    if refs:
        return err(False, "image is referenced in multiple repositories")
    stopped = next((u for u in users if not u.running), None)
    if stopped is not None:
        return err(False, f"image is being used by stopped container {stopped.container_id[:12]}")
    return None


class Removal:
    """``docker rmi`` and ``docker image prune`` (a mixin of :class:`ImageService`)."""

    # --- removal ------------------------------------------------------------------------

    def intermediate_ids(self, images: Sequence[Image] | None = None) -> set[Digest]:
        """IDs of docker's *intermediate* images: nameless images another image stands
        on (:func:`stands_on`: a build step's image under the next step's). ``images``
        hides them without ``-a``, prune keeps them, and removing the image above them
        removes them (docker's parent chain, found here from the configs)."""
        images = self.list() if images is None else images
        return {a.id for a in images if a.dangling
                and any(b.id != a.id and stands_on(b, a) for b in images)}

    def remove(self, ref_or_id: str, *, force: bool = False, prune_parents: bool = True,
               in_use: Callable[[str], Iterable[ImageUser]] = _no_users) -> list[dict[str, str]]:
        """``docker rmi``; returns Docker's ``[{"Untagged": …}, {"Deleted": …}]``. With
        ``prune_parents`` (docker's default; ``noprune`` turns it off), the nameless
        images the removed one stood on go too, nearest first, while nothing else stands
        on them and no container uses them."""
        with self._lock:
            image_id, named = self._lookup(ref_or_id)
            try:
                image = self._image(image_id)
            except (NotFound, InvalidArgument) as exc:
                log.warning("removing image %s whose content is unusable: %s", image_id, exc)
                return self._remove_broken(image_id)
            users = list(in_use(str(image_id)))
            out: list[dict[str, str]] = []
            with self.db.transaction():
                deleted = self._delete(image, named, ref_or_id, force, users, out)
            if deleted:
                out.append({"Deleted": str(image_id)})
                out.extend(self._collect(image))
                if prune_parents:
                    out.extend(self._remove_parents(image, in_use))
            return out

    def _remove_parents(self, image: Image, in_use: Callable[[str], Iterable[ImageUser]]
                        ) -> list[dict[str, str]]:
        remaining = self.list()
        parents = sorted((p for p in remaining if p.dangling and stands_on(image, p)),
                         key=lambda p: len(p.config.history), reverse=True)
        out: list[dict[str, str]] = []
        for parent in parents:  # nearest first: once one stays, those below it stay too
            others = [o for o in remaining if o.id != parent.id]
            if any(stands_on(o, parent) for o in others) or list(in_use(str(parent.id))):
                break
            with self.db.transaction():
                for rec in self.db.images_by_config(parent.id):
                    self.db.delete_image(rec.name)
            out.append({"Deleted": str(parent.id)})
            out.extend(self._collect(parent))
            remaining = others
        return out

    def _delete(self, image: Image, named: Reference | None, given: str, force: bool,
                users: list[ImageUser], out: list[dict[str, str]]) -> bool:
        """The database half of ``remove``; True when the image itself goes."""
        refs = [parse_ref(n, default_tag=False) for n in image.names]
        if named is not None:
            if not force and users and _single_reference(refs):
                raise Conflict(
                    f'conflict: unable to remove repository reference "{given}" (must force) - '
                    f"container {users[0].container_id[:12]} is using its referenced image "
                    f"{image.id.short()}"
                )
            refs = self._untag(named, refs, out)
            if named.digest is None and not any(r.digest is None and r.name == named.name
                                                for r in refs):
                # The repository's last tag went: its digest references go with it.
                for ref in [r for r in refs if r.digest is not None and r.name == named.name]:
                    refs = self._untag(ref, refs, out)
            if refs:
                return False
            if _conflict(image.id, users, refs, force=force) is not None:
                # Docker keeps an image still used by a container, now dangling.
                self._keep_dangling(image)
                return False
        else:
            if _single_reference(refs):
                if (c := _conflict(image.id, users, [], force=force)) is not None:
                    raise c
                for ref in list(refs):
                    refs = self._untag(ref, refs, out)
            if (c := _conflict(image.id, users, refs, force=force)) is not None:
                raise c
            for ref in list(refs):
                refs = self._untag(ref, refs, out)
        for rec in self.db.images_by_config(image.id):
            self.db.delete_image(rec.name)
        return True

    def _remove_broken(self, image_id: Digest) -> list[dict[str, str]]:
        """Drop every name of an image whose manifest or config is gone or corrupt."""
        out = []
        with self.db.transaction():
            for rec in self.db.images_by_config(image_id):
                self.db.delete_image(rec.name)
                if not rec.dangling:
                    out.append({"Untagged": parse_ref(rec.name, default_tag=False).familiar()})
        out.append({"Deleted": str(image_id)})
        return out

    def _untag(self, ref: Reference, refs: list[Reference], out: list[dict[str, str]]) -> list[Reference]:
        self.db.delete_image(str(ref))
        out.append({"Untagged": ref.familiar()})
        return [r for r in refs if r != ref]

    def _keep_dangling(self, image: Image) -> None:
        if not self.db.images_by_config(image.id):
            t = now()
            self.db.put_image(ImageRecord(name=dangling_name(image.target.digest),
                                          target=image.target, config_digest=image.id,
                                          created_at=t, updated_at=t))

    def _collect(self, image: Image) -> list[dict[str, str]]:
        """Delete the blobs and unpacked layers of ``image`` that no image still uses.
        Returns a ``{"Deleted": chain_id}`` item per layer snapshot removed (as Docker)."""
        blobs: set[Digest] = set()
        chains: set[str] = set()
        for rec in self.db.list_images():
            try:
                parsed = self._parse(rec.target)
            except (NotFound, InvalidArgument):
                continue
            blobs |= {rec.target.digest, parsed.manifest_desc.digest, parsed.manifest.config.digest,
                      *(layer.digest for layer in parsed.manifest.layers)}
            chains |= {str(c) for c in parsed.config.chain_ids()}
        for digest in (image.target.digest, image.manifest.config.digest,
                       *(layer.digest for layer in image.manifest.layers)):
            if digest not in blobs:
                try:
                    self.content.delete(digest)
                except NotFound:
                    pass
        self._parsed.pop(image.target.digest, None)
        out = []
        for chain_id in reversed([str(c) for c in image.chain_ids()]):
            if chain_id in chains:
                break
            try:
                self.snapshotter.remove(chain_id)
            except NotFound:
                continue
            except FailedPrecondition:
                break  # a container (or another image's layer) stacks on it
            out.append({"Deleted": chain_id})
        return out

    def prune(self, *, dangling_only: bool = True,
              in_use: Callable[[str], Iterable[ImageUser]] = _no_users) -> PruneResult:
        """``docker image prune [-a]``: images without names (or, with ``dangling_only``
        False, every image) that no container uses."""
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        images = self.list()
        intermediate = self.intermediate_ids(images)
        for image in images:
            if (dangling_only and not image.dangling) or list(in_use(str(image.id))):
                continue
            if image.id in intermediate:
                continue  # a build step under another image: it goes with that one
            try:
                if image.dangling:
                    items = self.remove(str(image.id), in_use=in_use)
                else:
                    items = []
                    for name in image.names:
                        items += self.remove(name, in_use=in_use)
            except (Conflict, NotFound) as exc:
                log.info("prune: keeping %s: %s", image.id, exc)
                continue
            deleted += items
            if any(item.get("Deleted") == str(image.id) for item in items):
                reclaimed += image.size
        return PruneResult(deleted=deleted, space_reclaimed=reclaimed)
