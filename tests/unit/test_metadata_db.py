"""The metadata database: CRUD, Docker's container lookup rules, transactions, reopen,
threads. Real SQLite files in tmp dirs; nothing is faked."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from conch.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from conch.metadata.db import SCHEMA_VERSION, Database, ImageRecord, dangling_name
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest

T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
T1 = datetime(2024, 6, 1, 0, 0, 0, tzinfo=timezone.utc)


def digest(n: int) -> Digest:
    return Digest.from_bytes(str(n).encode())


def image(name: str, n: int = 1, *, config: int | None = None, when=T0) -> ImageRecord:
    return ImageRecord(
        name=name,
        target=Descriptor(media_type=mt.DOCKER_MANIFEST, digest=digest(n), size=100 + n),
        config_digest=digest(1000 + (n if config is None else config)),
        created_at=when, updated_at=when, labels={"k": "v"},
    )


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "metadata.db")
    yield d
    d.close()


# --- schema and pragmas ---------------------------------------------------------------


def test_schema_version_and_wal(db, tmp_path):
    conn = sqlite3.connect(tmp_path / "metadata.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_newer_schema_is_refused(tmp_path):
    Database(tmp_path / "m.db").close()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer conch"):
        Database(tmp_path / "m.db")


def test_reopen_keeps_records(tmp_path):
    db = Database(tmp_path / "m.db")
    db.put_image(image("docker.io/library/busybox:latest"))
    db.put_container("a" * 64, "web", "sha256:x", {"Path": "sh"})
    db.close()
    db = Database(tmp_path / "m.db")
    assert db.get_image("docker.io/library/busybox:latest") == image("docker.io/library/busybox:latest")
    assert db.get_container("a" * 64).record == {"Path": "sh"}
    db.close()


# --- images ---------------------------------------------------------------------------


def test_image_crud(db):
    rec = image("docker.io/library/busybox:latest")
    db.put_image(rec)
    assert db.get_image(rec.name) == rec
    assert db.list_images() == [rec]
    assert db.images_by_config(rec.config_digest) == [rec]
    db.delete_image(rec.name)
    with pytest.raises(NotFound):
        db.get_image(rec.name)
    with pytest.raises(NotFound):
        db.delete_image(rec.name)


def test_moving_a_name_keeps_created_at(db):
    db.put_image(image("docker.io/library/a:1", 1, when=T0))
    db.put_image(image("docker.io/library/a:1", 2, when=T1))
    got = db.get_image("docker.io/library/a:1")
    assert got.target.digest == digest(2)
    assert (got.created_at, got.updated_at) == (T0, T1)


def test_config_digest_prefix_search(db):
    db.put_image(image("docker.io/library/a:1", 1, config=7))
    db.put_image(image("docker.io/library/a:2", 2, config=7))
    db.put_image(image(dangling_name(digest(3)), 3, config=8))
    full = str(digest(1007))
    assert db.config_digests(full) == [full]
    assert db.config_digests("sha256:") == sorted({full, str(digest(1008))})
    assert db.config_digests("sha256:zz") == []
    assert image(dangling_name(digest(3))).dangling


# --- containers -----------------------------------------------------------------------

ID_A = "abc" + "0" * 61
ID_B = "abd" + "1" * 61


def test_container_crud_and_update(db):
    db.put_container(ID_A, "/web", "sha256:i", {"State": "created"})
    rec = db.get_container(ID_A)
    assert (rec.name, rec.image_id, rec.record) == ("web", "sha256:i", {"State": "created"})
    db.put_container(ID_A, "web", "sha256:i", {"State": "running"})
    again = db.get_container(ID_A)
    assert again.record == {"State": "running"} and again.created_at == rec.created_at
    assert [c.id for c in db.list_containers()] == [ID_A]
    assert [c.id for c in db.containers_by_image("sha256:i")] == [ID_A]
    db.delete_container(ID_A)
    with pytest.raises(NotFound, match="No such container"):
        db.get_container(ID_A)


def test_container_name_conflict_and_validation(db):
    db.put_container(ID_A, "web", "", {})
    with pytest.raises(Conflict, match='name "/web" is already in use by container'):
        db.put_container(ID_B, "web", "", {})
    for bad in ("", "a", "-x", "a b", "x/y"):
        with pytest.raises(InvalidArgument, match="Invalid container name"):
            db.put_container(ID_B, bad, "", {})


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        (ID_A, ID_A),          # exact id
        ("web", ID_A),         # exact name
        ("/web", ID_A),        # name with Docker's slash
        ("abc", ID_A),         # unique prefix
        ("abd1", ID_B),
        ("abd", ID_B),
        ("api", ID_B),         # name of B
    ],
)
def test_find_container_rules(db, query, expect):
    db.put_container(ID_A, "web", "", {})
    db.put_container(ID_B, "api", "", {})
    assert db.find_container(query).id == expect


def test_find_container_name_beats_prefix_and_ambiguity(db):
    db.put_container(ID_A, "web", "", {})
    db.put_container(ID_B, "abc", "", {})  # a name that is also a prefix of A's id
    assert db.find_container("abc").id == ID_B
    with pytest.raises(InvalidArgument, match="multiple IDs found with provided prefix: ab"):
        db.find_container("ab")
    with pytest.raises(NotFound, match="No such container: zz"):
        db.find_container("zz")
    with pytest.raises(InvalidArgument):
        db.find_container("")


def test_rename_container(db):
    db.put_container(ID_A, "web", "", {})
    db.put_container(ID_B, "api", "", {})
    with pytest.raises(Conflict):
        db.rename_container(ID_A, "api")
    db.rename_container(ID_A, "/front", {"Name": "/front"})
    rec = db.find_container("front")
    assert rec.id == ID_A and rec.record == {"Name": "/front"}
    with pytest.raises(NotFound):
        db.find_container("web")
    with pytest.raises(NotFound):
        db.rename_container("f" * 64, "x1")


# --- transactions ---------------------------------------------------------------------


def test_transaction_rolls_back_everything_on_error(db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.put_image(image("docker.io/library/a:1"))
            db.put_container(ID_A, "web", "", {})
            raise RuntimeError("boom")
    assert db.list_images() == [] and db.list_containers() == []


def test_failed_write_inside_transaction_rolls_back_only_itself(db):
    db.put_container(ID_A, "web", "", {})
    with db.transaction():
        db.put_image(image("docker.io/library/a:1"))
        with pytest.raises(Conflict):
            db.put_container(ID_B, "web", "", {})  # its savepoint rolls back
    assert [r.name for r in db.list_images()] == ["docker.io/library/a:1"]
    assert [c.id for c in db.list_containers()] == [ID_A]


def test_nested_transaction_commits_with_outer(db):
    with db.transaction():
        with db.transaction():
            db.put_image(image("docker.io/library/a:1"))
        db.put_image(image("docker.io/library/b:1", 2))
    assert len(db.list_images()) == 2


def test_uncommitted_writes_are_invisible_to_other_threads(db):
    seen = []
    with db.transaction():
        db.put_image(image("docker.io/library/a:1"))
        t = threading.Thread(target=lambda: seen.append(len(db.list_images())))
        t.start()
        t.join()
    seen.append(len(db.list_images()))
    assert seen == [0, 1]


def test_many_threads_write_concurrently(db):
    errors = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                db.put_image(image(f"docker.io/library/t{i}:{j}", i * 100 + j))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.list_images()) == 80
