"""Descriptor codec: validation, unknown fields, embedded data."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conch.errors import FailedPrecondition, InvalidArgument
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.platform import Platform

D = "sha256:" + "a" * 64


def test_minimal_round_trip():
    d = {"mediaType": mt.OCI_LAYER_GZIP, "digest": D, "size": 10}
    desc = Descriptor.from_dict(d)
    assert desc.digest == Digest.parse(D) and desc.size == 10
    assert desc.to_dict() == d


def test_full_round_trip_keeps_unknown_fields_and_order():
    d = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": D,
        "size": 3,
        "urls": ["https://example.com/blob"],
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
        "data": base64.b64encode(b"abc").decode(),
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "artifactType": "application/vnd.example+json",
        "x-future": {"nested": [1, 2]},
    }
    desc = Descriptor.from_dict(d)
    assert desc.data == b"abc"
    assert desc.platform == Platform(os="linux", architecture="arm64", variant="v8")
    assert desc.extra == {"x-future": {"nested": [1, 2]}}
    out = desc.to_dict()
    assert out == d and list(out) == list(d)


def test_embedded_data_is_verified():
    good = Descriptor.of(b"hello", mt.OCI_CONFIG, data=b"hello")
    assert good.embedded() == b"hello"
    wrong = Descriptor.of(b"hello", mt.OCI_CONFIG, data=b"jello")
    with pytest.raises(FailedPrecondition, match="does not match"):
        wrong.embedded()
    with pytest.raises(FailedPrecondition, match="no embedded data"):
        Descriptor.of(b"x", mt.OCI_CONFIG).embedded()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"mediaType": None}, "mediaType"),
        ({"mediaType": "not a media type"}, "mediaType"),
        ({"digest": None}, "digest"),
        ({"digest": "sha256:abc"}, "digest length"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"size": "10"}, "size"),
        ({"urls": "http://x"}, "urls"),
        ({"annotations": {"a": 1}}, "annotations"),
        ({"data": "!!!"}, "base64"),
        ({"platform": {"os": "linux"}}, "architecture"),
        ({"artifactType": "nope"}, "artifactType"),
    ],
)
def test_invalid(patch, message):
    d = {"mediaType": mt.OCI_LAYER, "digest": D, "size": 1, **patch}
    with pytest.raises(InvalidArgument, match=message):
        Descriptor.from_dict(d)


def test_not_an_object():
    with pytest.raises(InvalidArgument, match="object"):
        Descriptor.from_dict([])


def test_hashable_despite_mappings():
    a = Descriptor.of(b"x", mt.OCI_LAYER, annotations={"k": "v"})
    assert a in {a}


_media = st.sampled_from(sorted(mt.LAYER_TYPES | mt.MANIFEST_TYPES | mt.INDEX_TYPES))
_text = st.text(max_size=10)
descriptors = st.builds(
    Descriptor,
    media_type=_media,
    digest=st.binary(max_size=8).map(Digest.from_bytes),
    size=st.integers(min_value=0, max_value=2**53),
    urls=st.lists(_text, max_size=2).map(tuple),
    annotations=st.dictionaries(_text, _text, max_size=3),
    data=st.one_of(st.none(), st.binary(max_size=16)),
    platform=st.one_of(st.none(), st.builds(Platform, os=st.just("linux"),
                                            architecture=st.sampled_from(["amd64", "arm64"]))),
    artifact_type=st.one_of(st.just(""), _media),
    extra=st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.integers(), max_size=2),
)  # fmt: skip


@given(descriptors)
def test_round_trip(desc):
    assert Descriptor.from_dict(desc.to_dict()) == desc
