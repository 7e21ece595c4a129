"""A build step's layer, made once from its snapshot, and the snapshot kept as that
layer's unpacked form.

Contract: :func:`commit_layer` takes the active snapshot a step wrote into (a RUN
container's or a COPY/WORKDIR scratch root; not mounted any more) and

1. removes what the runtime left in its upper dir that dockerd's init layer would hide
   (``/etc/hosts``, ``/dev``, … mount points: ``changes._init_leftovers``), so the upper
   dir *is* the layer;
2. with ``epoch`` (SOURCE_DATE_EPOCH) sets every entry's mtime later than it to it;
3. writes the layer tar (``conch.archive.diff.write_diff``: name order, PAX) in one pass:
   hashed for the diff_id and gzip-compressed (``conch.archive.gzip_writer``: ISA-L
   level 1, header mtime 0 so the same tar gives the same blob; chunks that do not
   compress -- what a build's big layers often are -- stored, not compressed) straight
   into the content store -- no temp file, no second tar pass;
4. commits the snapshot under the new image's ChainID (with the diff-id and usage labels
   the unpacker writes), so the next step, ``COPY --from`` and the containers of the
   image use it as it is instead of unpacking the blob just written. When that ChainID
   is already there the snapshot is left to the caller to remove.

Returns ``((descriptor, diff_id), kept)`` or ``(None, False)`` when the step changed
nothing. Plain synchronous code (a worker thread).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from conch.errors import AlreadyExists, NotFound
from conch.oci.digest import Digest
from conch.oci.image import chain_ids
from conch.snapshots import lower_dirs, writable_dir

GZIP_LEVEL = 1  # ISA-L's scale (0-3)


def drop_init_leftovers(upper: Path) -> None:
    """Step 1 of the module docstring: files first, then the directories left empty."""
    from conch.engine.containers.changes import _init_leftovers

    drop = _init_leftovers(upper)
    for rel in sorted(drop, key=lambda r: r.count("/"), reverse=True):
        path = upper / rel
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()
            else:
                path.unlink()


def drop_mount_stubs(upper: Path, lowers: list[Path], targets) -> None:
    """What the runtime made in the upper dir only to mount RUN ``--mount`` targets on
    (an empty directory or file, and the empty parents made for it), as BuildKit leaves
    mount points out of the layer; anything the image already had stays."""
    for target in targets:
        rel = target.strip("/")
        while rel:
            path = upper / rel
            if any(os.path.lexists(low / rel) for low in lowers):
                break
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(path)  # only when empty
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(path)
                else:
                    break
            except OSError:
                break
            rel = rel.rpartition("/")[0]


def clamp_mtimes(upper: Path, epoch: int) -> None:
    """Step 2: no mtime later than ``epoch`` (deepest first, so setting a file's time
    never touches its directory's)."""
    for dirpath, dirnames, filenames in os.walk(upper, topdown=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch:
                os.utime(path, (min(st.st_atime, epoch), epoch), follow_symlinks=False)


def tidy_upper(upper: Path, lowers: list[Path], mount_targets=(), epoch: int | None = None) -> bool:
    """Steps 1-2 of the module docstring on a step's upper dir; False when the step
    changed nothing (no layer)."""
    drop_init_leftovers(upper)
    drop_mount_stubs(upper, lowers, mount_targets)
    if not os.listdir(upper):
        return False
    if epoch is not None:
        clamp_mtimes(upper, epoch)
    return True


def write_layer(images, lowers: list[Path], upper: Path, media_type: str):
    """Step 3: the layer of ``upper`` over ``lowers`` as a blob; (descriptor, diff_id)."""
    from conch.archive.diff import write_diff
    from conch.archive.gzip_writer import GzipWriter

    ref = f"build-{secrets.token_hex(8)}"
    writer = images.content.writer(ref)
    try:
        with writer:
            sink = GzipWriter(writer, GZIP_LEVEL)
            diff_id = Digest.parse(write_diff(lowers, upper, sink))
            sink.finish()
            blob = writer.commit()
    except BaseException:
        with contextlib.suppress(NotFound):
            images.content.abort(ref)
        raise
    return blob.descriptor(media_type), diff_id


def commit_layer(images, snapshotter, key: str, parent, media_type: str,
                 epoch: int | None = None, *, keep: bool = True, mount_targets=()):
    """See the module docstring; ``parent`` is the image the snapshot was made from
    (None: scratch); ``keep`` False: step 4 is skipped (a RUN container kept with
    ``--rm=false`` keeps its snapshot)."""
    from conch.images.unpack import DIFF_ID_LABEL, USAGE_LABEL
    from conch.snapshots import Kind, tree_usage

    mounts = snapshotter.mounts(key)
    lowers, upper = lower_dirs(mounts), writable_dir(mounts)
    if not tidy_upper(upper, lowers, mount_targets, epoch):
        return None, False
    layer = write_layer(images, lowers, upper, media_type)
    diff_id = layer[1]
    if not keep:
        return layer, False
    base = tuple(parent.config.rootfs.diff_ids) if parent is not None else ()
    chain = str(chain_ids(base + (diff_id,))[-1])
    try:
        if snapshotter.stat(chain).kind is Kind.COMMITTED:
            return layer, False
    except NotFound:
        pass
    labels = {DIFF_ID_LABEL: str(diff_id), USAGE_LABEL: str(tree_usage(upper).size)}
    try:
        snapshotter.commit(chain, key, labels=labels)
    except AlreadyExists:  # another build made it meanwhile: theirs stays
        return layer, False
    return layer, True
