"""conch.archive.check without root: ``docker load``'s check refuses exactly the corpus
layers a pull's unpack refuses (tests/corpus/hostile_layers.py ``expect``), naming the
entry; the digest of what it read is the layer's. The same verdict as apply_layer's, case
by case and on random layers, is held in tests/integration/test_archive_hostile.py (the
overlay unpack needs root)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from conch.archive.check import check_layer
from conch.errors import InvalidArgument

_spec = importlib.util.spec_from_file_location(
    "hostile_layers", Path(__file__).parents[1] / "corpus" / "hostile_layers.py")
hostile_layers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("hostile_layers", hostile_layers)
_spec.loader.exec_module(hostile_layers)
_Tar = hostile_layers._Tar


@pytest.mark.parametrize("case", hostile_layers.CASES, ids=lambda c: c.name)
def test_check_layer_refuses_what_unpack_refuses(case, tmp_path):
    layer = case.build(tmp_path / "canary")
    sha = hashlib.sha256()
    if case.expect == "reject":
        with pytest.raises(InvalidArgument):
            check_layer(io.BytesIO(layer), sha.update)
        return
    check_layer(io.BytesIO(layer), sha.update)
    assert sha.hexdigest() == hashlib.sha256(layer).hexdigest()  # every byte, padding too


@pytest.mark.parametrize("layer, words", [
    (_Tar().sym("a", "b").sym("b", "a").file("a/x").bytes(),
     "layer entry 'a/x': a: too many levels of symbolic links"),
    (_Tar().file("a").file("a/b").bytes(), "layer entry 'a/b': a: 'a' is not a directory"),
    (_Tar().dir("d").link("h", "d").bytes(), "layer entry 'h' links to directory 'd'"),
    (_Tar().file("a/b").link("a", "a/b").bytes(),
     "layer entry 'a' links to 'a/b', which writing it removes"),
    (_Tar().sym("s", "/a").file("s/f").link("h", "s/f").bytes(), None),  # through the link: fine
    (_Tar().sym("s", "../..").file("s/x").file("x/y").bytes(),
     "layer entry 'x/y': x: 'x' is not a directory"),  # s/x landed at x, a file
    (_Tar().file("f", uid=1 << 40).bytes(), "layer entry 'f': uid 1099511627776 is out of range"),
    (_Tar().file("d/" + "é" * 128).bytes(), "a name is longer than 255 bytes"),
    (_Tar().dir("a").file("a/.wh..wh..opq", b"").file("a/.wh.x", b"").link("h", "a/.wh.x").bytes(),
     "did not write"),  # a whiteout is not a written path
], ids=["loop", "file-as-dir", "link-to-dir", "link-into-replaced", "link-via-symlink",
        "file-via-symlink-as-dir", "huge-uid", "long-name", "link-to-whiteout"])
def test_the_tree_model_sees_what_names_alone_do_not(layer, words):
    if words is None:
        check_layer(io.BytesIO(layer))
        return
    with pytest.raises(InvalidArgument) as exc:
        check_layer(io.BytesIO(layer))
    assert words in str(exc.value)
