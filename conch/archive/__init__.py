"""OCI layer tars: apply them to directories, make them from directories.

Contract: plain synchronous code over streams and paths; no knowledge of images,
snapshots or registries. The caller owns the destination directory and removes it when an
apply fails. Nothing here mounts anything or writes outside the directory it was given.

Modules:

- ``apply``: :func:`~conch.archive.apply.apply_layer` (stream -> directory, diff_id in
  the same pass; whiteouts in overlay or plain form; safe path resolution).
- ``diff``: :func:`~conch.archive.diff.write_diff` (overlay upper dir -> layer tar),
  :func:`~conch.archive.diff.write_tar` (tree -> tar, for ``export``) and
  :func:`~conch.archive.diff.changes` (``docker diff``).
- ``compression``: gzip/zstd/plain detection by magic bytes, streaming (de)compression.

No on-disk state of its own.
"""

from conch.archive.apply import ApplyResult, apply_layer
from conch.archive.compression import Compression, compressor, decompressed, detect
from conch.archive.diff import Change, ChangeKind, changes, write_diff, write_tar

__all__ = [
    "ApplyResult", "apply_layer", "Compression", "compressor", "decompressed", "detect",
    "Change", "ChangeKind", "changes", "write_diff", "write_tar",
]
