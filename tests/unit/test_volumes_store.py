"""conch.volumes.VolumeStore: names, idempotent create, the on-disk record, removal and
prune semantics (Docker's local driver)."""

from __future__ import annotations

import json
import os
import re

import pytest

from conch.errors import Conflict, InvalidArgument, NotFound
from conch.volumes import ANONYMOUS_LABEL, VolumeStore
from conch.volumes.store import match_labels


@pytest.fixture
def store(tmp_path):
    return VolumeStore(tmp_path / "volumes")


def test_create_named_lays_out_data_and_meta(store, tmp_path):
    v = store.create("data", labels={"a": "b"})
    assert v.name == "data" and v.driver == "local" and v.scope == "local"
    assert v.mountpoint == str(tmp_path / "volumes" / "data" / "_data")
    assert os.path.isdir(v.mountpoint)
    meta = json.loads((tmp_path / "volumes" / "data" / "meta.json").read_text())
    assert meta["labels"] == {"a": "b"} and meta["driver"] == "local"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", v.created_at)
    assert not v.anonymous
    assert store.get("data") == v


def test_random_name_is_64_hex(store):
    v = store.create()
    assert re.fullmatch(r"[0-9a-f]{64}", v.name)


def test_create_is_idempotent(store):
    a = store.create("x1", labels={"k": "1"})
    (open(os.path.join(a.mountpoint, "f"), "w")).write("keep")
    b, new = store.ensure("x1", labels={"k": "2"})
    assert not new and b == a
    assert os.path.exists(os.path.join(b.mountpoint, "f"))
    assert [v.name for v in store.list()] == ["x1"]


@pytest.mark.parametrize("name", ["a", "-bad", "has space", "a/b", "é1", ".x"])
def test_invalid_names_are_refused(store, name):
    with pytest.raises(InvalidArgument, match="invalid characters"):
        store.create(name)


@pytest.mark.parametrize("name", ["ab", "a_b", "a.b-c", "0x"])
def test_valid_names(store, name):
    assert store.create(name).name == name


def test_other_drivers_and_bad_options_are_refused(store, tmp_path):
    with pytest.raises(InvalidArgument, match="plugin"):
        store.create("v1", driver="nfs")
    with pytest.raises(InvalidArgument, match='invalid option: "foo"'):
        store.create("v2", options={"foo": "bar"})
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        store.create("v2", options={"type": "tmpfs"})
    with pytest.raises(InvalidArgument, match='missing required option: "type"'):
        store.create("v2", options={"o": "size=1m"})
    with pytest.raises(InvalidArgument, match="no such file"):
        store.create("v2", options={"type": "none", "o": "bind", "device": str(tmp_path / "nope")})
    assert store.list() == []


def test_options_are_kept_and_a_removal_never_deletes_through_them(store, tmp_path):
    v = store.create("v3", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert store.get("v3").options == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert v.options == store.get("v3").options
    store.remove("v3")  # never mounted: the empty mountpoint goes with the record
    assert store.list() == []


def test_meta_write_is_atomic(store, tmp_path):
    store.create("v1")
    d = tmp_path / "volumes" / "v1"
    assert sorted(os.listdir(d)) == ["_data", "meta.json"]  # no temporary left
    # a directory without a record (a crash before the rename) is not a volume ...
    os.makedirs(tmp_path / "volumes" / "half" / "_data")
    (tmp_path / "volumes" / "half" / "meta.json.tmp").write_text("{")
    assert [v.name for v in store.list()] == ["v1"]
    with pytest.raises(NotFound):
        store.get("half")
    # ... and create of that name finishes it
    assert store.ensure("half")[1] is True


def test_get_missing(store):
    with pytest.raises(NotFound, match="get nope: no such volume"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("../volumes")


def test_remove(store):
    v = store.create("gone")
    store.remove("gone")
    assert not os.path.exists(os.path.dirname(v.mountpoint))
    with pytest.raises(NotFound):
        store.remove("gone")
    store.remove("gone", force=True)  # force: a missing volume is not an error


def test_remove_in_use_is_refused_even_with_force(store):
    store.create("busy")
    users = lambda name: ["c1", "c2"] if name == "busy" else []  # noqa: E731
    for force in (False, True):
        with pytest.raises(Conflict, match=r"remove busy: volume is in use - \[c1, c2\]"):
            store.remove("busy", force=force, in_use=users)
    assert store.get("busy")


def test_prune_anonymous_only_by_default(store):
    named = store.create("named")
    anon = store.create(labels={ANONYMOUS_LABEL: ""})
    used = store.create(labels={ANONYMOUS_LABEL: ""})
    with open(os.path.join(anon.mountpoint, "blob"), "wb") as f:
        f.write(b"x" * 10000)
    in_use = lambda name: ["c"] if name == used.name else []  # noqa: E731
    r = store.prune(in_use=in_use)
    assert r.deleted == (anon.name,) and r.space_reclaimed >= 10000
    assert {v.name for v in store.list()} == {named.name, used.name}
    r = store.prune(all=True, in_use=in_use)
    assert r.deleted == (named.name,)
    assert [v.name for v in store.list()] == [used.name]


def test_prune_label_filters(store):
    store.create("keep1", labels={"keep": "yes"})
    store.create("drop1", labels={"keep": "no"})
    store.create("drop2")
    r = store.prune(all=True, labels=["!keep=yes"])
    assert set(r.deleted) == {"drop1", "drop2"}
    r = store.prune(all=True, labels=["keep"])
    assert r.deleted == ("keep1",)


def test_match_labels():
    assert match_labels({"a": "1"}, ["a"]) and match_labels({"a": "1"}, ["a=1"])
    assert not match_labels({"a": "1"}, ["a=2"]) and not match_labels({}, ["a"])
    assert match_labels({}, ["!a"]) and not match_labels({"a": "1"}, ["!a"])
