"""Durable records and references in one SQLite database per data root.

Contract: :class:`~conch.metadata.db.Database` stores image references (name ->
manifest descriptor + image ID) and container records, and nothing else: blobs live in
``content/``, filesystems in ``snapshots/``. Every record comes back as a frozen
dataclass; every failure is a :mod:`conch.errors` kind. The schema, the on-disk file
(``<data-root>/metadata.db``, WAL) and the threading rules are in :mod:`conch.metadata.db`.
"""

from conch.metadata.db import ContainerRecord, Database, ImageRecord

__all__ = ["ContainerRecord", "Database", "ImageRecord"]
