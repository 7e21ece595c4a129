"""ImageService over real stores in tmp dirs: lookup rules, tag/untag/remove semantics
(Docker's ImageDelete, messages included), in-use conflicts, blob and layer collection,
prune, inspect and history. The snapshotter is the real overlay one: unpacking into it
needs no mount, so none of this needs root."""

from __future__ import annotations

import io

import pytest

from conch.errors import Conflict, InvalidArgument, NotFound
from conch.images.importer import import_image
from conch.images.records import ImageUser
from conch.images.store import ImageService
from conch.snapshots import Kind
from conch.testing.image_store import image_service, tar_of


@pytest.fixture
def svc(tmp_path):
    yield from image_service(tmp_path)


_counter = iter(range(10**6))


def make(svc: ImageService, ref: str | None, files: dict[str, bytes] | None = None, **kw):
    """A fresh one-layer image (distinct content unless ``files`` is given)."""
    files = files if files is not None else {"f": str(next(_counter)).encode()}
    return import_image(svc, io.BytesIO(tar_of(files)), ref, **kw)


def blobs(svc: ImageService) -> set[str]:
    return {str(i.digest) for i in svc.content.walk()}


# --- lookup ---------------------------------------------------------------------------


def test_lookup_by_every_form(svc):
    img = make(svc, "docker.io/library/busybox:latest")
    hexid = img.id.hex
    for query in ("busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox",
                  "index.docker.io/library/busybox:latest", str(img.id), hexid, hexid[:12],
                  hexid[:1], f"sha256:{hexid[:5]}"):
        assert svc.get(query).id == img.id, query


def test_lookup_failures(svc):
    make(svc, "busybox")
    with pytest.raises(NotFound, match=r"^No such image: alpine:latest$"):
        svc.get("alpine")
    with pytest.raises(NotFound, match="No such image"):
        svc.get("sha256:" + "0" * 64)
    with pytest.raises(NotFound, match="No such image"):
        svc.get("0" * 64)
    with pytest.raises(InvalidArgument):
        svc.get("BusyBox")
    with pytest.raises(InvalidArgument):
        svc.get("")


def test_ambiguous_id_prefix_finds_nothing(svc):
    by_first: dict[str, object] = {}
    while True:  # at most 17 images until two IDs share their first hex digit
        img = make(svc, None)
        if img.id.hex[0] in by_first:
            break
        by_first[img.id.hex[0]] = img
    with pytest.raises(NotFound):
        svc.get(img.id.hex[0])
    assert svc.get(img.id.hex[:20]).id == img.id


def test_names_and_familiar_forms(svc):
    img = make(svc, "busybox")
    svc.tag("busybox", "localhost:5000/team/app:v1")
    svc.tag(str(img.id), "example.com/x")
    img = svc.get("busybox")
    assert img.repo_tags == ("busybox:latest", "example.com/x:latest", "localhost:5000/team/app:v1")
    assert img.names == (
        "docker.io/library/busybox:latest", "example.com/x:latest", "localhost:5000/team/app:v1",
    )
    assert img.repo_digests == ()


def test_tag_refuses_a_digest(svc):
    make(svc, "busybox")
    with pytest.raises(InvalidArgument, match="digest"):
        svc.tag("busybox", "busybox@sha256:" + "a" * 64)


def test_retag_leaves_the_old_image_dangling(svc):
    old = make(svc, "app")
    new = make(svc, "app")
    assert svc.get("app").id == new.id
    kept = svc.get(str(old.id))
    assert kept.dangling and kept.repo_tags == ()
    assert {i.id for i in svc.list()} == {old.id, new.id}
    svc.tag(str(old.id), "app:old")  # naming it again drops the dangling row
    assert [r.name for r in svc.db.images_by_config(old.id)] == ["docker.io/library/app:old"]


def test_import_without_name_is_dangling_and_listed(svc):
    img = make(svc, None)
    assert img.dangling and svc.get(str(img.id)).id == img.id
    assert [i.id for i in svc.list()] == [img.id]


# --- remove ---------------------------------------------------------------------------


def test_remove_last_name_deletes_image_and_blobs(svc):
    img = make(svc, "busybox")
    assert blobs(svc)
    assert svc.remove("busybox") == [{"Untagged": "busybox:latest"}, {"Deleted": str(img.id)}]
    assert blobs(svc) == set() and svc.list() == []
    with pytest.raises(NotFound):
        svc.remove("busybox")


def test_remove_one_of_two_tags_only_untags(svc):
    img = make(svc, "busybox")
    svc.tag("busybox", "busybox:1")
    assert svc.remove("busybox:1") == [{"Untagged": "busybox:1"}]
    assert svc.get("busybox").id == img.id


def test_remove_by_id_with_names_in_two_repositories_needs_force(svc):
    img = make(svc, "busybox")
    svc.tag("busybox", "other")
    short = img.id.short()
    with pytest.raises(Conflict, match=rf"unable to delete {short} \(must be forced\) - "
                                       "image is referenced in multiple repositories"):
        svc.remove(short)
    out = svc.remove(short, force=True)
    assert out == [{"Untagged": "busybox:latest"}, {"Untagged": "other:latest"},
                   {"Deleted": str(img.id)}]


def test_remove_by_id_with_tag_and_digest_of_one_repository(svc):
    img = make(svc, "busybox")
    svc.register(img.target, f"busybox@{img.target.digest}")
    assert svc.get("busybox").repo_digests == (f"busybox@{img.target.digest}",)
    out = svc.remove(str(img.id))
    assert {"Untagged": "busybox:latest"} in out
    assert {"Untagged": f"busybox@{img.target.digest}"} in out
    assert out[-1] == {"Deleted": str(img.id)}


def test_untagging_the_last_tag_drops_the_repositorys_digests(svc):
    img = make(svc, "busybox")
    svc.tag("busybox", "keep")
    svc.register(img.target, f"busybox@{img.target.digest}")
    out = svc.remove("busybox")
    assert out == [{"Untagged": "busybox:latest"}, {"Untagged": f"busybox@{img.target.digest}"}]
    assert svc.get("keep").repo_digests == ()


def test_stopped_container_blocks_untag_of_last_name_unless_forced(svc):
    img = make(svc, "busybox")
    users = lambda image_id: [ImageUser(container_id="c" * 64, running=False)]  # noqa: E731
    with pytest.raises(Conflict, match=r'unable to remove repository reference "busybox" '
                                       r"\(must force\) - container cccccccccccc is using its "
                                       rf"referenced image {img.id.short()}"):
        svc.remove("busybox", in_use=users)
    svc.tag("busybox", "second")  # with two names, untagging one is fine
    assert svc.remove("second", in_use=users) == [{"Untagged": "second:latest"}]
    with pytest.raises(Conflict, match=r"\(must be forced\) - image is being used by stopped "
                                       "container cccccccccccc"):
        svc.remove(str(img.id), in_use=users)
    # forced, as Docker: a stopped container does not keep its image
    assert svc.remove(str(img.id), force=True, in_use=users) == [
        {"Untagged": "busybox:latest"}, {"Deleted": str(img.id)}]


def test_running_container_keeps_its_image_dangling_when_its_name_is_forced_away(svc):
    img = make(svc, "busybox")
    users = lambda image_id: [ImageUser(container_id="d" * 64, running=True)]  # noqa: E731
    assert svc.remove("busybox", force=True, in_use=users) == [{"Untagged": "busybox:latest"}]
    assert svc.get(str(img.id)).dangling
    assert svc.content.exists(img.manifest.layers[0].digest)


def test_running_container_blocks_removal_by_id_even_forced(svc):
    img = make(svc, "busybox")
    users = lambda image_id: [ImageUser(container_id="d" * 64, running=True)]  # noqa: E731
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image is being used by running "
                                       "container dddddddddddd"):
        svc.remove(str(img.id), force=True, in_use=users)
    assert svc.get("busybox").id == img.id  # nothing was untagged


def test_in_use_is_asked_about_the_right_image(svc):
    a = make(svc, "a")
    b = make(svc, "b")
    asked = []
    svc.remove("a", in_use=lambda image_id: asked.append(image_id) or [])
    assert asked == [str(a.id)]
    assert svc.get("b").id == b.id


def test_shared_layer_blob_survives_until_its_last_image(svc):
    files = {"shared": b"same bytes"}
    a = make(svc, "a", files)
    b = make(svc, "b", files)
    assert a.id != b.id  # different created times
    layer = a.manifest.layers[0].digest
    assert layer == b.manifest.layers[0].digest
    svc.unpack(a)
    svc.unpack(b)
    chain = str(a.chain_ids()[0])
    out = svc.remove("a")
    assert {"Deleted": chain} not in out
    assert svc.content.exists(layer) and svc.snapshotter.stat(chain).kind is Kind.COMMITTED
    out = svc.remove("b")
    assert out[-1] == {"Deleted": chain}  # Docker lists removed layers after the image
    assert blobs(svc) == set() and list(svc.snapshotter.walk()) == []


def test_layer_snapshot_under_a_container_is_kept(svc):
    img = make(svc, "a")
    svc.prepare_rootfs(img, "container-1")
    out = svc.remove("a")
    assert out == [{"Untagged": "a:latest"}, {"Deleted": str(img.id)}]
    assert svc.snapshotter.stat(str(img.chain_ids()[0])).kind is Kind.COMMITTED


def test_prune_dangling_then_all(svc):
    tagged = make(svc, "keep")
    dangling = make(svc, None)
    used = make(svc, None)
    in_use = lambda i: [ImageUser(container_id="e" * 64, running=False)] if i == str(used.id) else []  # noqa: E731
    result = svc.prune(in_use=in_use)
    assert result.deleted == [{"Deleted": str(dangling.id)}]
    assert result.space_reclaimed == dangling.size
    assert {i.id for i in svc.list()} == {tagged.id, used.id}
    result = svc.prune(dangling_only=False, in_use=in_use)
    assert result.deleted == [{"Untagged": "keep:latest"}, {"Deleted": str(tagged.id)}]
    assert [i.id for i in svc.list()] == [used.id]


# --- presentation ---------------------------------------------------------------------


def test_size_is_compressed_until_unpacked(svc):
    img = make(svc, "a", {"big": b"x" * 100_000})
    assert img.size == img.manifest.layers[0].size
    svc.unpack(img)
    assert svc.get("a").size == 100_000


def test_inspect_dict_shape(svc):
    img = make(svc, "busybox", changes=["CMD [\"sh\"]", "LABEL a=b"], message="m")
    d = svc.inspect_dict(img)
    assert d["Id"] == str(img.id) and d["RepoTags"] == ["busybox:latest"]
    assert d["RepoDigests"] == [] and d["Parent"] == "" and d["Comment"] == "m"
    assert d["Created"] == img.config.created and d["Os"] == "linux"
    assert d["Config"]["Cmd"] == ["sh"] and d["Config"]["Labels"] == {"a": "b"}
    assert d["Config"]["Env"] is None and d["Config"]["Image"] == ""
    assert d["RootFS"] == {"Type": "layers", "Layers": [str(img.config.rootfs.diff_ids[0])]}
    assert d["Metadata"]["LastTagTime"].endswith("Z")
    assert d["Size"] == img.size
    dangling = make(svc, None)
    d = svc.inspect_dict(dangling)
    # an import always carries a config object (docker inspect shows {...}, never null)
    assert d["Config"]["Cmd"] is None and d["Metadata"]["LastTagTime"] == "0001-01-01T00:00:00Z"


def test_history(svc):
    img = make(svc, "busybox", message="hello")
    (entry,) = svc.history("busybox")
    assert entry.id == str(img.id) and entry.tags == ("busybox:latest",)
    assert entry.created_by == "conch import" and entry.comment == "hello"
    assert entry.size == img.manifest.layers[0].size and entry.created > 1_600_000_000


def test_an_image_with_missing_content_can_still_be_removed(svc):
    img = make(svc, "broken")
    svc.content.delete(img.target.digest)
    svc = ImageService(svc.root, svc.content, svc.snapshotter, svc.db)  # nothing cached
    assert svc.list() == []
    with pytest.raises(NotFound):
        svc.get("broken")
    assert svc.remove("broken") == [{"Untagged": "broken:latest"}, {"Deleted": str(img.id)}]
    assert svc.db.list_images() == []
