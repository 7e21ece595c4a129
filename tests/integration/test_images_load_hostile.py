"""docker load and docker pull give one verdict on every hostile layer (issue 15 item 7).

dockerd unpacks at load and at pull, so both refuse the same layers. conch unpacks at pull
(apply_layer) and checks at load (conch.archive.check, which apply_layer also runs first):
each corpus case (tests/corpus/hostile_layers.py) goes through a load (docker-save and OCI
layout) and a pull (conch's pull code against a registry on 127.0.0.1) into fresh image
stores, and all three must agree: refused (with a clear error, and nothing left: no name,
no blob, no ingest, no snapshot) or accepted. Loading used to accept six of the layers a
pull refuses (a symlink loop, a hardlink to a directory, ids and times out of range, ...).

Also: a layer whose diff_id or digest lies is refused by load (both formats) and pull,
with nothing stored."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import pytest

from conch.errors import ConchError, FailedPrecondition, InvalidArgument
from conch.images.archive import load
from conch.testing.fake_registry import FakeRegistry
from conch.testing.image_store import docker_save, image_service, oci_layout, tar_of

_spec = importlib.util.spec_from_file_location(
    "hostile_layers", Path(__file__).parents[1] / "corpus" / "hostile_layers.py")
hostile_layers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("hostile_layers", hostile_layers)
_spec.loader.exec_module(hostile_layers)

CASES = {c.name: c for c in hostile_layers.CASES}


def _trusted_xattrs(tmp: Path) -> str | None:
    """Why the overlay unpack cannot run here (None: it can). A pull writes overlay
    whiteouts: 0/0 character devices and trusted.overlay.opaque, which need
    CAP_MKNOD and CAP_SYS_ADMIN."""
    probe = tmp / "probe"
    probe.mkdir()
    try:
        os.setxattr(probe, "trusted.conch-probe", b"y")
        os.mknod(probe / "wh", 0o20600, 0)
    except OSError as exc:
        return f"the overlay unpack cannot write whiteouts here: {exc.strerror}"
    finally:
        for p in (probe / "wh", probe):
            p.unlink() if p.is_file() or p.is_char_device() else None
        probe.rmdir()
    return None


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if (why := _trusted_xattrs(tmp_path_factory.mktemp("probe"))) is not None:
        pytest.skip(why)
    reg = FakeRegistry().start_in_thread()
    yield reg
    reg.stop_thread()


@pytest.fixture
def make_svc(tmp_path):
    """Fresh image stores, one per step, so each step's leftovers are its own."""
    gens = []

    def make(name: str):
        gen = image_service(tmp_path / name)
        gens.append(gen)
        return next(gen)

    yield make
    for gen in gens:
        gen.close()


def _pull(svc, ref: str) -> None:
    from conch.engine.distribution.pull import pull_one
    from conch.oci.reference import Reference
    from conch.registry.client.transport import Registries

    async def run():
        named = Reference.parse(ref)
        registries = Registries()
        async with registries.session() as session:
            async for _ in pull_one(svc, registries.host(session, named.domain), named, None):
                pass

    asyncio.run(run())


def _verdict(step) -> str:
    """"accepted", or "refused: <the error>"."""
    try:
        step()
    except ConchError as exc:
        return f"refused: {exc}"
    return "accepted"


def _assert_nothing_left(svc, what: str) -> None:
    assert svc.list() == [], what
    assert [i.digest for i in svc.content.walk()] == [], f"{what}: blobs left"
    assert svc.content.list_ingests() == [], f"{what}: ingests left"
    assert [i.key for i in svc.snapshotter.walk()] == [], f"{what}: snapshots left"


def _canary(tmp_path: Path) -> Path:
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_bytes(b"canary")
    (canary / "sub" / "inner").write_bytes(b"inner")
    return canary


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_and_pull_give_one_verdict(make_svc, registry, tmp_path, name):
    case = CASES[name]
    canary = _canary(tmp_path)
    layer = case.build(canary)
    registry.add_image(name, layer, compression="zstd" if len(name) % 2 else "gzip")
    steps = {
        "load docker-save": lambda svc: load(svc, io.BytesIO(docker_save(layer))),
        "load oci": lambda svc: load(svc, io.BytesIO(oci_layout(layer))),
        "pull": lambda svc: _pull(svc, f"{registry.addr}/hostile/x:{name}"),
    }
    verdicts = {}
    for step, run in steps.items():
        svc = make_svc(step.replace(" ", "-"))
        verdicts[step] = _verdict(lambda: run(svc))
        if verdicts[step] != "accepted":
            _assert_nothing_left(svc, f"{name}: {step}")
        else:
            assert len(svc.list()) == 1, step
    assert {v.split(":")[0] for v in verdicts.values()} == \
        {"refused" if case.expect == "reject" else "accepted"}, verdicts
    if case.expect == "reject":  # the same words, in load's and in dockerd's pull framing
        why = verdicts["load oci"].removeprefix("refused: load: ")
        assert verdicts["load docker-save"] == verdicts["load oci"]
        assert verdicts["pull"].startswith("refused: failed to register layer: "), verdicts
        if not why.startswith("layer is not a valid tar"):  # tarfile's words vary by reader
            assert verdicts["pull"] == f"refused: failed to register layer: {why}", verdicts
    assert sorted(os.listdir(canary)) == ["file", "sub"], "the canary next to the stores changed"
    assert (canary / "file").read_bytes() == b"canary"


LIARS = {
    "wrong diff_id": dict(diff_id="sha256:" + "0" * 64),
    "wrong digest": dict(blob=tar_of({"f": b"DATA"})),  # same size, other bytes
}


@pytest.mark.parametrize("lie", sorted(LIARS))
def test_lying_layer_is_refused_by_load_and_pull_with_nothing_stored(make_svc, registry, lie):
    layer = tar_of({"f": b"data"})
    kw = LIARS[lie]
    svc = make_svc("load-oci")
    with pytest.raises(InvalidArgument, match="^load: ") as exc:
        load(svc, io.BytesIO(oci_layout(layer, **kw)))
    assert ("diff_id" if "diff_id" in kw else "digest") in str(exc.value), exc.value
    _assert_nothing_left(svc, f"load oci, {lie}")
    if "diff_id" in kw:
        svc = make_svc("load-docker")
        with pytest.raises(InvalidArgument, match="^load: layer has diff_id sha256:"):
            load(svc, io.BytesIO(docker_save(layer, **kw)))
        _assert_nothing_left(svc, f"load docker-save, {lie}")
    tag = lie.replace(" ", "-")
    registry.add_image(tag, layer, **({"diff_id": kw["diff_id"]} if "diff_id" in kw else {}))
    if "blob" in kw:  # the registry serves other bytes under the layer's digest
        manifest = json.loads(registry.manifests[tag][1])
        registry.faults[manifest["layers"][0]["digest"]] = "corrupt"
    svc = make_svc("pull")
    with pytest.raises(ConchError) as exc:
        _pull(svc, f"{registry.addr}/liar/x:{tag}")
    words = "the image config says" if "diff_id" in kw else "digest mismatch"
    assert words in str(exc.value) and isinstance(exc.value, (FailedPrecondition, InvalidArgument))
    _assert_nothing_left(svc, f"pull, {lie}")
