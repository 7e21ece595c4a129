"""Named and anonymous volumes (Docker's ``local`` driver): directories conch owns,
bind-mounted into containers.

Contract (``store.VolumeStore``): ``create`` (idempotent for an existing name; a random
64-hex name when none is given), ``get``, ``list``, ``remove`` and ``prune``. The store
knows nothing of containers: callers pass ``in_use(name) -> [container ids]`` so that a
volume a container references (running or not) is never removed (Conflict, as dockerd's
``remove NAME: volume is in use - [ID]``). Anonymous volumes carry the label
``com.docker.volume.anonymous``; ``prune`` removes only those unless ``all=True``.
Only the ``local`` driver exists; its options (``type``, ``device``, ``o``, ``size``:
``volume create -o type=tmpfs -o device=tmpfs -o o=size=64m``, or ``type=none,o=bind,
device=/host/dir``) make the volume a mount on ``_data`` while containers use it
(``localopts``: ``mount`` before the first user starts, ``unmount`` after the last stops
and before removal); unknown options are refused with InvalidArgument.

On-disk layout::

    <data-root>/volumes/<name>/_data       the volume's content (what containers see)
    <data-root>/volumes/<name>/meta.json   the record (name, driver, created_at, labels,
                                           options), written to a temporary file, fsynced
                                           and renamed into place: a reader sees the old
                                           record or the new one, never half of one

A directory without a readable ``meta.json`` (a crash between mkdir and rename) is not a
volume: ``list`` skips it and ``create`` of that name finishes it.
"""

from conch.volumes.store import ANONYMOUS_LABEL, PruneResult, Volume, VolumeStore

__all__ = ["ANONYMOUS_LABEL", "PruneResult", "Volume", "VolumeStore"]
