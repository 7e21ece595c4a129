"""The local content store: verified commits, resumable ingests, locking, crash safety."""

import gc
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conch.content import ContentStore, Store
from conch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from conch.oci import mediatype as mt
from conch.oci.digest import Digest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
DATA = b"hello content store\n" * 1000
DIGEST = Digest.from_bytes(DATA)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def blob_files(store: ContentStore) -> list[Path]:
    return sorted(p for p in (store.root / "blobs").rglob("*") if p.is_file())


def ingest_dirs(store: ContentStore) -> list[Path]:
    root = store.root / "ingest"
    return sorted(root.iterdir()) if root.exists() else []


def test_satisfies_protocol(store):
    s: Store = store
    assert s is store


def test_happy_path(store):
    with store.writer("layer-1", expected=DIGEST, total=len(DATA)) as w:
        for i in range(0, len(DATA), 4096):
            w.write(DATA[i : i + 4096])
        assert w.offset == len(DATA) and w.digest() == DIGEST
        info = w.commit(len(DATA), DIGEST)
    assert info.digest == DIGEST and info.size == len(DATA)
    path = store.root / "blobs" / "sha256" / DIGEST.encoded
    assert blob_files(store) == [path]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.exists(DIGEST) and store.read(DIGEST, verify=True) == DATA
    assert store.info(DIGEST).size == len(DATA)
    assert ingest_dirs(store) == [] and store.list_ingests() == []
    assert info.descriptor(mt.OCI_LAYER).to_dict() == {
        "mediaType": mt.OCI_LAYER, "digest": str(DIGEST), "size": len(DATA)
    }


def test_commit_defaults_to_writer_expectations(store):
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        w.write(DATA)
        assert w.commit().digest == DIGEST


def test_range_reads(store):
    store.put(DATA)
    with store.open(DIGEST) as f:
        f.seek(20)
        assert f.read(5) == DATA[20:25]
        assert f.seekable()


def test_wrong_digest_is_refused_and_ingest_removed(store):
    wrong = Digest.from_bytes(b"something else")
    w = store.writer("bad", expected=wrong)
    w.write(DATA)
    with pytest.raises(FailedPrecondition, match=f"unexpected commit digest {DIGEST}, expected {wrong}"):
        w.commit(len(DATA))
    assert blob_files(store) == [] and ingest_dirs(store) == []
    with pytest.raises(FailedPrecondition, match="closed"):
        w.write(b"x")


def test_wrong_size_is_refused_and_ingest_removed(store):
    w = store.writer("short")
    w.write(DATA[:10])
    with pytest.raises(FailedPrecondition, match="unexpected commit size 10, expected 11"):
        w.commit(11, None)
    assert blob_files(store) == [] and ingest_dirs(store) == []


def test_write_past_total(store):
    with store.writer("t", total=3) as w:
        w.write(b"abc")
        with pytest.raises(InvalidArgument, match="exceeds the expected size 3"):
            w.write(b"d")
        assert w.offset == 3


def test_resume_after_partial_write(store):
    w = store.writer("resume", expected=DIGEST, total=len(DATA))
    w.write(DATA[:1000])
    w.close()
    (status,) = store.list_ingests()
    assert (status.ref, status.offset, status.total, status.expected) == (
        "resume", 1000, len(DATA), DIGEST
    )
    assert store.status("resume").offset == 1000
    # Reopening without repeating total/expected picks them up from the ingest.
    with store.writer("resume") as w2:
        assert w2.offset == 1000 and w2.total == len(DATA) and w2.expected == DIGEST
        assert w2.digest() == Digest.from_bytes(DATA[:1000])
        w2.write(DATA[1000:])
        w2.commit()
    assert store.read(DIGEST) == DATA


def test_dropped_writer_never_leaves_partial_blob(store):
    w = store.writer("dropped", expected=DIGEST)
    w.write(DATA[:500])
    del w
    gc.collect()
    assert blob_files(store) == [] and list(store.walk()) == []
    with store.writer("dropped") as again:  # the lock went with the dropped writer
        assert again.offset == 500


def test_killed_process_leaves_resumable_ingest(store):
    code = (
        "import os, sys; from pathlib import Path; from conch.content import ContentStore\n"
        "w = ContentStore(Path(sys.argv[1])).writer('crash', total=int(sys.argv[2]))\n"
        "w.write(b'x' * 777); os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(store.root), "1000"], timeout=60, env=ENV)
    assert proc.returncode == 9
    assert blob_files(store) == []
    with store.writer("crash") as w:
        assert w.offset == 777 and w.total == 1000
        w.write(b"x" * 223)
        info = w.commit()
    assert info.digest == Digest.from_bytes(b"x" * 1000)


def test_corrupted_ingest_is_caught_at_commit(store):
    w = store.writer("c", expected=DIGEST)
    w.write(DATA[:100])
    w.close()
    (data,) = [d / "data" for d in ingest_dirs(store)]
    with open(data, "r+b") as f:
        f.write(b"X")
    with store.writer("c") as w:
        w.write(DATA[100:])
        with pytest.raises(FailedPrecondition, match="unexpected commit digest"):
            w.commit(len(DATA))
    assert not store.exists(DIGEST)


def test_second_writer_on_same_ref_is_locked_out(store):
    w1 = store.writer("busy")
    with pytest.raises(Unavailable, match="locked"):
        store.writer("busy")
    with pytest.raises(Unavailable, match="locked"):
        store.abort("busy")
    w1.write(b"abc")
    w1.close()
    with store.writer("busy") as w2:
        assert w2.offset == 3


def test_lock_is_held_across_processes(store):
    w = store.writer("xproc")
    code = (
        "import sys; from pathlib import Path; from conch.content import ContentStore\n"
        "from conch.errors import Unavailable\n"
        "try:\n    ContentStore(Path(sys.argv[1])).writer('xproc')\n"
        "except Unavailable:\n    sys.exit(42)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(store.root)], timeout=60, env=ENV)
    assert proc.returncode == 42
    w.close()


def test_two_refs_same_content_both_succeed(store):
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run(ref: str) -> None:
        try:
            with store.writer(ref) as w:
                w.write(DATA)
                barrier.wait(timeout=10)
                results.append(w.commit(len(DATA), DIGEST))
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"ref-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert [r.digest for r in results] == [DIGEST, DIGEST]
    assert store.read(DIGEST, verify=True) == DATA
    assert ingest_dirs(store) == []


def test_present_blob(store):
    first = store.put(DATA)
    assert store.put(DATA) == first
    assert store.put(DATA, expected=DIGEST).digest == DIGEST
    with pytest.raises(AlreadyExists, match=str(DIGEST)):
        store.writer("again", expected=DIGEST)
    # A writer that did not know the digest up front finds the blob at commit: no error.
    with store.writer("late") as w:
        w.write(DATA)
        assert w.commit(len(DATA), DIGEST) == store.info(DIGEST)
    assert ingest_dirs(store) == [] and len(blob_files(store)) == 1


def test_put_is_one_rename_and_leaves_nothing(store):
    """put() writes no resumable ingest: one temp file renamed into blobs/, read-only,
    nothing left in put/ or ingest/ (a crash's stray temp goes with prune_ingests)."""
    info = store.put(DATA)
    assert info.digest == DIGEST and store.read(DIGEST, verify=True) == DATA
    assert stat.S_IMODE(os.stat(store.blob_path(DIGEST)).st_mode) == 0o444
    assert os.listdir(store.root / "put") == [] and ingest_dirs(store) == []
    stray = store.root / "put" / "deadbeef-0000"
    stray.write_bytes(b"half a blob")
    os.utime(stray, (time.time() - 3600,) * 2)
    fresh = store.root / "put" / "beefdead-0000"  # a put in flight: kept
    fresh.write_bytes(b"in flight")
    assert store.prune_ingests(60) == []
    assert os.listdir(store.root / "put") == [fresh.name]


def test_put_checks_expected(store):
    with pytest.raises(FailedPrecondition, match="unexpected content digest"):
        store.put(b"abc", expected=DIGEST)
    assert blob_files(store) == []


def test_walk_and_delete(store):
    blobs = [b"one", b"two", b"three"]
    digests = sorted(store.put(b).digest for b in blobs)
    big = store.put(b"sha512 content", expected=Digest.from_bytes(b"sha512 content", "sha512"))
    (store.root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"stray")
    walked = [i.digest for i in store.walk()]
    assert walked == digests + [big.digest]
    store.delete(digests[0])
    assert not store.exists(digests[0])
    for call in (store.info, store.open, store.read, store.delete):
        with pytest.raises(NotFound, match=str(digests[0])):
            call(digests[0])
    assert [i.digest for i in store.walk()] == digests[1:] + [big.digest]


def test_empty_store(store):
    assert list(store.walk()) == [] and store.list_ingests() == []
    assert store.prune_ingests(0) == []
    with pytest.raises(NotFound):
        store.status("nope")
    with pytest.raises(NotFound):
        store.abort("nope")


def test_abort(store):
    with store.writer("gone") as w:
        w.write(b"partial")
    store.abort("gone")
    assert ingest_dirs(store) == []
    with store.writer("gone") as w:
        assert w.offset == 0


def test_prune_ingests(store):
    with store.writer("old") as w:
        w.write(b"old")
    with store.writer("new") as w:
        w.write(b"new")
    held = store.writer("held")
    past = time.time() - 3600
    for ref in ("old", "held"):
        d = store._ingest_path(ref)
        for name in os.listdir(d):
            os.utime(d / name, (past, past))
    assert store.prune_ingests(60) == ["old"]
    assert sorted(s.ref for s in store.list_ingests()) == ["held", "new"]
    held.close()


def test_truncate(store):
    with store.writer("trunc") as w:
        w.write(b"garbage from a server that ignored Range")
        w.truncate(0)
        w.write(DATA)
        assert w.commit(len(DATA), DIGEST).digest == DIGEST
    with store.writer("trunc2") as w:
        w.write(b"abcdef")
        w.truncate(3)
        assert w.offset == 3 and w.digest() == Digest.from_bytes(b"abc")
        with pytest.raises(InvalidArgument):
            w.truncate(4)


def test_commit_with_other_algorithm_rehashes(store):
    want = Digest.from_bytes(DATA, "sha512")
    with store.writer("sha512") as w:
        w.write(DATA)
        info = w.commit(len(DATA), want)
    assert info.digest == want
    assert store.read(want, verify=True) == DATA


def test_read_verify_detects_corruption(store):
    store.put(b"pristine")
    d = Digest.from_bytes(b"pristine")
    path = store.blob_path(d)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    assert store.read(d) == b"tampered"
    with pytest.raises(FailedPrecondition, match="corrupt"):
        store.read(d, verify=True)


@pytest.mark.parametrize("ref", ["", None])
def test_invalid_ref(store, ref):
    with pytest.raises(InvalidArgument):
        store.writer(ref)
