"""Images: names and IDs over content, snapshots and the metadata database.

Contract: :class:`~conch.images.store.ImageService` is the one entry point the engine
uses for images (lookup, tag, remove, inspect, history, prune, unpack/prepare a
container rootfs); :func:`~conch.images.importer.import_image` is ``docker import``;
:mod:`conch.images.archive` is ``docker save``/``docker load``. Image records are frozen
dataclasses; Docker's JSON shapes appear only in ``inspect_dict`` and the ``remove``
items, which the API passes through unchanged.

On disk: nothing of its own beyond ``<root>/tmp`` (scratch for imports/loads); names are
rows in ``metadata.db``, blobs in the content store, layers in the snapshotter. See
:mod:`conch.images.store` (naming rules) and :mod:`conch.images.unpack` (ChainID
snapshots).

Submodules are imported on use: ``from conch.images.store import ImageService``.
"""
