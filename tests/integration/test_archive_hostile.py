"""apply_layer against the hostile corpus: nothing is ever written outside dest.

Each case runs in both whiteout formats. A canary directory sits next to dest; after the
apply (success or error) the canary and the rest of tmp_path must be exactly as before.
In the overlay format (a pull's unpack), check_layer (docker load's check) must give the
same verdict, in the same words, without writing anything.
Overlay-format applies set trusted.* xattrs and make device nodes, hence root.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import stat
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conch.archive import apply_layer
from conch.archive.check import check_layer
from conch.errors import ConchError

_spec = importlib.util.spec_from_file_location(
    "hostile_layers", Path(__file__).parents[1] / "corpus" / "hostile_layers.py")
hostile_layers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("hostile_layers", hostile_layers)
_spec.loader.exec_module(hostile_layers)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (trusted xattrs, mknod)"),
]


def _fingerprint(top: Path, skip: str) -> list[tuple]:
    """Everything observable about the tree at ``top`` except the ``skip`` subdir."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == str(top) and skip in dirnames:
            dirnames.remove(skip)
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            xattrs = sorted(os.listxattr(p, follow_symlinks=False))
            out.append((os.path.relpath(p, top), st.st_mode, st.st_uid, st.st_size,
                        st.st_mtime_ns, st.st_nlink, digest, tuple(xattrs)))
    return sorted(out)


@pytest.fixture
def sandbox(tmp_path):
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_bytes(b"canary")
    (canary / "sub" / "inner").write_bytes(b"inner")
    dest = tmp_path / "dest"
    dest.mkdir()
    before = _fingerprint(tmp_path, skip="dest")
    yield dest, canary
    assert _fingerprint(tmp_path, skip="dest") == before, "something outside dest changed"


@pytest.mark.parametrize("fmt", ["overlay", "plain"])
@pytest.mark.parametrize("case", hostile_layers.CASES, ids=lambda c: c.name)
def test_hostile_layer_is_contained_or_rejected(sandbox, case, fmt):
    dest, canary = sandbox
    layer = case.build(canary)
    checked = None
    try:
        check_layer(io.BytesIO(layer))
    except ConchError as exc:
        checked = str(exc)
    if case.expect == "reject":
        with pytest.raises(ConchError) as exc:
            apply_layer(io.BytesIO(layer), dest, whiteout_format=fmt)
        assert checked is not None, "check_layer accepts what apply_layer refuses"
        if fmt == "overlay" and not checked.startswith("layer is not a valid tar"):
            assert checked == str(exc.value)
        return
    assert checked is None, f"check_layer refuses what apply_layer accepts: {checked}"
    result = apply_layer(io.BytesIO(layer), dest, whiteout_format=fmt)
    assert result.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
    if case.check is not None:
        case.check(dest, canary)


def test_rejections_say_why(sandbox):
    dest, canary = sandbox
    by_name = {c.name: c for c in hostile_layers.CASES}
    expectations = {
        "garbage": "layer is not a valid tar",
        "bad-checksum-after-member": "layer is not a valid tar",
        "pax-huge-size": "exceeds",
        "dotdot-file": "escapes the layer root",
        "pax-path-nul": "NUL",
        "hardlink-absolute": "did not write",
        "symlink-loop": "too many levels",
    }
    for name, words in expectations.items():
        with pytest.raises(ConchError, match=words):
            apply_layer(io.BytesIO(by_name[name].build(canary)), dest)


def test_gzip_and_zstd_hostile_layers_are_still_contained(sandbox):
    import gzip

    import zstandard

    dest, canary = sandbox
    layer = [c for c in hostile_layers.CASES if c.name == "symlink-absolute-then-file"][0].build(canary)
    for packed in (gzip.compress(layer), zstandard.ZstdCompressor().compress(layer)):
        result = apply_layer(io.BytesIO(packed), dest)
        assert result.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert (dest / str(canary).lstrip("/") / "pwned").exists()


# -- check_layer against apply_layer on random layers ----------------------------------

_COMPONENTS = ["a", "b", "c", "..", ".", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..", "é" * 130]
_path = st.lists(st.sampled_from(_COMPONENTS), min_size=1, max_size=4).map("/".join)
_entry = st.one_of(
    st.tuples(st.just("file"), _path, st.just("")),
    st.tuples(st.just("dir"), _path, st.just("")),
    st.tuples(st.just("fifo"), _path, st.just("")),
    st.tuples(st.just("sym"), _path, st.one_of(_path, _path.map(lambda p: "/" + p),
                                                 st.sampled_from(["/", "..", "../..", "."]))),
    st.tuples(st.just("link"), _path, _path),
)


def _random_layer(entries) -> bytes:
    t = hostile_layers._Tar()
    for kind, name, target in entries:
        if kind == "file":
            t.file(name, b"x")
        elif kind == "dir":
            t.dir(name)
        elif kind == "fifo":
            t.node(name, tarfile.FIFOTYPE)
        elif kind == "sym":
            t.sym(name, target)
        else:
            t.link(name, target)
    return t.bytes()


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(_entry, min_size=1, max_size=8))
def test_check_layer_and_apply_layer_agree_on_random_layers(tmp_path, entries):
    """docker load's verdict (check_layer) is a pull's (apply_layer into an empty overlay
    upper dir) on layers made of the moves hostile layers use, in any order."""
    layer = _random_layer(entries)
    try:
        check_layer(io.BytesIO(layer))
        checked = None
    except ConchError as exc:
        checked = str(exc)
    dest = tmp_path / f"dest-{hashlib.sha256(layer).hexdigest()[:16]}"
    dest.mkdir()
    try:
        apply_layer(io.BytesIO(layer), dest, whiteout_format="overlay")
        applied = None
    except ConchError as exc:
        applied = str(exc)
    finally:
        shutil.rmtree(dest)
    assert (checked is None) == (applied is None), (entries, checked, applied)
