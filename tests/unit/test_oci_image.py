"""Manifest, index and image config codecs; chain IDs; index platform selection."""

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conch.errors import InvalidArgument
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import (
    ExecutionConfig,
    Healthcheck,
    History,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    RootFS,
    canonical_json,
    chain_ids,
    parse_manifest,
)
from conch.oci.platform import Platform, only

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64

DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG, "size": 1457, "digest": A},
    "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "size": 2152262, "digest": B}],
}

OCI_INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": A, "size": 1,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": B, "size": 1,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": C, "size": 1,
         "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                         "vnd.docker.reference.digest": A},
         "platform": {"architecture": "unknown", "os": "unknown"}},
    ],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}  # fmt: skip

# Shaped like `docker image save busybox` config: legacy keys and nulls included.
DOCKER_CONFIG = {
    "architecture": "amd64",
    "config": {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "Tty": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"], "Image": "sha256:" + "d" * 64, "Volumes": None, "WorkingDir": "",
        "Entrypoint": None, "OnBuild": None, "Labels": None,
    },
    "container": "ec1f9f3a6d7c",
    "created": "2023-07-18T23:19:33.655005962Z",
    "docker_version": "20.10.23",
    "history": [
        {"created": "2023-07-18T23:19:33.538571854Z",
         "created_by": '/bin/sh -c #(nop) ADD file:7e9002edaafd4e4579b65c8f0aaabde1aeb7fd3f8d95579f7fd3443cef785fd1 in / '},
        {"created": "2023-07-18T23:19:33.655005962Z",
         "created_by": '/bin/sh -c #(nop)  CMD ["sh"]', "empty_layer": True},
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [A]},
}  # fmt: skip


def b(obj) -> bytes:
    return json.dumps(obj).encode()


def test_docker_manifest():
    m = ImageManifest.from_bytes(b(DOCKER_MANIFEST))
    assert m.media_type == mt.DOCKER_MANIFEST
    assert m.config.digest == Digest.parse(A)
    assert [layer.size for layer in m.layers] == [2152262]
    assert json.loads(m.to_bytes()) == {
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": A, "size": 1457},
        "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "digest": B, "size": 2152262}],
    }  # fmt: skip


def test_oci_11_artifact_manifest_with_subject():
    d = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": {"mediaType": mt.OCI_EMPTY, "digest": A, "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/spdx+json", "digest": B, "size": 9}],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": C, "size": 7},
        "annotations": {"org.example": "1"},
        "x-unknown": True,
    }
    m = ImageManifest.from_bytes(b(d))
    assert m.subject.digest == Digest.parse(C) and m.config.data == b"{}"
    assert m.extra == {"x-unknown": True}
    assert m.to_dict() == d and list(m.to_dict()) == list(d)


def test_manifest_without_media_type_round_trips():
    d = {k: v for k, v in DOCKER_MANIFEST.items() if k != "mediaType"}
    m = ImageManifest.from_dict(d)
    assert m.media_type == "" and m.to_dict() == d


def test_canonical_bytes_are_compact_and_ordered():
    m = ImageManifest.from_bytes(b(DOCKER_MANIFEST))
    assert m.to_bytes().startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.docker')
    assert m.to_bytes() == canonical_json(m.to_dict())


def test_index_and_select():
    idx = ImageIndex.from_bytes(b(OCI_INDEX))
    assert idx.to_dict() == OCI_INDEX
    amd = Platform(os="linux", architecture="amd64")
    arm = Platform(os="linux", architecture="arm64", variant="v8")
    assert [str(d.digest) for d in idx.select(only(amd))] == [A]
    assert [str(d.digest) for d in idx.select(only(arm))] == [B]
    arm32 = Platform(os="linux", architecture="arm", variant="v7")
    assert idx.select(only(arm32)) == []


def test_select_ranks_best_first_and_platformless_last():
    def desc(digest, platform=None, media_type=mt.DOCKER_MANIFEST):
        return Descriptor(media_type=media_type, digest=Digest.parse(digest), size=1,
                          platform=None if platform is None else Platform.parse(platform))  # fmt: skip

    idx = ImageIndex(
        media_type=mt.DOCKER_MANIFEST_LIST,
        manifests=(
            desc(A),
            desc(B, "linux/arm/v7"),
            desc(C, "linux/arm64/v8"),
            desc("sha256:" + "e" * 64, "linux/arm64/v8", mt.OCI_LAYER),
        ),
    )
    picked = idx.select(only(Platform.parse("linux/arm64")))
    assert [str(d.digest) for d in picked] == [C, B, A]


def test_docker_manifest_list_keeps_features():
    d = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {"mediaType": mt.DOCKER_MANIFEST, "digest": A, "size": 527,
             "platform": {"architecture": "amd64", "os": "windows",
                          "os.version": "10.0.14393.1066", "features": ["win32k"]}},
        ],
    }  # fmt: skip
    idx = ImageIndex.from_bytes(b(d))
    assert idx.manifests[0].platform.extra == {"features": ["win32k"]}
    assert idx.to_dict() == d


@pytest.mark.parametrize(
    "data, media_type, kind",
    [
        (b(DOCKER_MANIFEST), "", ImageManifest),
        (b(OCI_INDEX), "", ImageIndex),
        (b({k: v for k, v in OCI_INDEX.items() if k != "mediaType"}), "", ImageIndex),
        (b({k: v for k, v in DOCKER_MANIFEST.items() if k != "mediaType"}), mt.OCI_MANIFEST,
         ImageManifest),
        (b(DOCKER_MANIFEST), "application/json; charset=utf-8", ImageManifest),
        (b(OCI_INDEX), f"{mt.OCI_INDEX}; charset=utf-8", ImageIndex),
    ],
)  # fmt: skip
def test_parse_manifest_detects(data, media_type, kind):
    assert isinstance(parse_manifest(data, media_type), kind)


@pytest.mark.parametrize(
    "data, media_type, message",
    [
        (b"", "", "not valid JSON"),
        (b"\xff\xfe garbage", "", "not valid JSON"),
        (b"[1, 2]", "", "must be a JSON object"),
        (b('{"a": 1}'), "", "must be a JSON object"),
        (b({**DOCKER_MANIFEST, "schemaVersion": 1}), "", "schema 1"),
        (b({"schemaVersion": 1, "name": "x", "fsLayers": []}), mt.DOCKER_MANIFEST_SCHEMA1_SIGNED,
         "schema 1"),
        (b({**DOCKER_MANIFEST, "schemaVersion": "2"}), "", "schemaVersion"),
        (b({**DOCKER_MANIFEST, "schemaVersion": True}), "", "schemaVersion"),
        (b(DOCKER_MANIFEST), mt.OCI_INDEX, "media type mismatch"),
        (b({**DOCKER_MANIFEST, "mediaType": "text/plain"}), "", "unsupported manifest media type"),
        (b({"schemaVersion": 2, "manifests": [], "layers": []}), "", "ambiguous"),
        (b({"schemaVersion": 2}), "", "no config"),
        (b({**DOCKER_MANIFEST, "layers": None}), "", "no layers"),
        (b({**DOCKER_MANIFEST, "layers": {}}), "", "layers must be a list"),
        (b({**DOCKER_MANIFEST, "config": {"mediaType": mt.DOCKER_CONFIG}}), "", "digest"),
        (b({**OCI_INDEX, "manifests": None}), "", "no manifests"),
    ],
)  # fmt: skip
def test_parse_manifest_errors(data, media_type, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_manifest(data, media_type)


def test_wrong_class_errors():
    with pytest.raises(InvalidArgument, match="unexpected mediaType"):
        ImageManifest.from_bytes(b(OCI_INDEX))
    with pytest.raises(InvalidArgument, match="unexpected mediaType"):
        ImageIndex.from_bytes(b(DOCKER_MANIFEST))
    with pytest.raises(InvalidArgument, match="it is an index"):
        ImageManifest.from_dict({"schemaVersion": 2, "manifests": [], "config": {}})
    with pytest.raises(InvalidArgument, match="it is a manifest"):
        ImageIndex.from_dict({"schemaVersion": 2, "manifests": [], "layers": []})


# --- config -------------------------------------------------------------------------


def test_docker_config():
    cfg = ImageConfig.from_bytes(b(DOCKER_CONFIG))
    assert cfg.platform() == Platform(os="linux", architecture="amd64")
    assert cfg.config.cmd == ("sh",) and cfg.config.entrypoint is None
    assert cfg.config.env[0].startswith("PATH=")
    assert cfg.config.extra["Hostname"] == "" and cfg.config.extra["Image"].startswith("sha256:")
    assert cfg.extra == {"container": "ec1f9f3a6d7c", "docker_version": "20.10.23"}
    assert cfg.history[1].empty_layer and cfg.rootfs.diff_ids == (Digest.parse(A),)
    # Nulls and empty strings of known keys read as absent; everything else survives.
    again = ImageConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.to_dict()["config"] == {
        "Env": DOCKER_CONFIG["config"]["Env"], "Cmd": ["sh"], "Hostname": "",
        "Domainname": "", "AttachStdin": False, "Tty": False,
        "Image": DOCKER_CONFIG["config"]["Image"],
    }  # fmt: skip


def test_oci_config_full():
    d = {
        "created": "2024-05-01T10:00:00Z",
        "author": "me",
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "config": {
            "User": "1000:1000",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
            "Env": ["A=1"],
            "Entrypoint": ["/init"],
            "Cmd": [],
            "Volumes": {"/data": {}},
            "WorkingDir": "/srv",
            "Labels": {"a": "b"},
            "StopSignal": "SIGTERM",
            "ArgsEscaped": True,
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000,
                            "Timeout": 1000000000, "StartPeriod": 5, "StartInterval": 6,
                            "Retries": 3, "X": 1},
            "OnBuild": ["RUN x"],
            "Shell": ["/bin/sh", "-c"],
            "StopTimeout": 10,
        },
        "rootfs": {"type": "layers", "diff_ids": [A, B]},
        "history": [{"created_by": "x", "comment": "c", "author": "a"}],
        "moby.buildkit.buildinfo.v1": "e30=",
    }  # fmt: skip
    cfg = ImageConfig.from_bytes(b(d))
    assert cfg.config.cmd == () and cfg.config.healthcheck.retries == 3
    assert cfg.config.healthcheck.extra == {"X": 1}
    assert cfg.config.extra == {"StopTimeout": 10}
    assert cfg.platform().variant == "v8"
    assert cfg.to_dict() == d


def test_entrypoint_as_string():
    d = {**DOCKER_CONFIG, "config": {"Entrypoint": "/bin/sh"}}
    assert ImageConfig.from_dict(d).config.entrypoint == ("/bin/sh",)


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"architecture": None}, "architecture"),
        ({"os": ""}, "os"),
        ({"rootfs": None}, "no rootfs"),
        ({"rootfs": {"type": "layered", "diff_ids": []}}, "rootfs type"),
        ({"rootfs": {"type": "layers", "diff_ids": ["nope"]}}, "digest"),
        ({"rootfs": {"type": "layers", "diff_ids": "x"}}, "diff_ids"),
        ({"config": {"Env": "A=1"}}, None),  # strslice: a bare string is accepted
        ({"config": {"Env": [1]}}, "Env"),
        ({"config": {"Labels": {"a": 1}}}, "Labels"),
        ({"config": {"ArgsEscaped": "yes"}}, "ArgsEscaped"),
        ({"config": {"Healthcheck": {"Retries": "3"}}}, "Retries"),
        ({"config": []}, "config must be an object"),
        ({"history": {}}, "history"),
        ({"history": [{"empty_layer": 1}]}, "empty_layer"),
    ],
)
def test_config_errors(patch, message):
    d = {**DOCKER_CONFIG, **patch}
    if message is None:
        ImageConfig.from_dict(d)
        return
    with pytest.raises(InvalidArgument, match=message):
        ImageConfig.from_dict(d)


def test_config_garbage():
    with pytest.raises(InvalidArgument, match="image config is not valid JSON"):
        ImageConfig.from_bytes(b"{not json")


# --- chain ids ----------------------------------------------------------------------


def test_chain_ids():
    assert chain_ids([]) == []
    diff = [Digest.parse(A), Digest.parse(B), Digest.parse(C)]
    c1 = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256(f"{c1} {C}".encode()).hexdigest()
    assert [str(c) for c in chain_ids(diff)] == [A, c1, c2]
    cfg = ImageConfig(architecture="amd64", os="linux", rootfs=RootFS(diff_ids=tuple(diff)))
    assert cfg.chain_ids() == chain_ids(diff)


def test_chain_id_known_value():
    # The example from image-spec config.md with real busybox-like diff ids.
    l0 = Digest.parse("sha256:" + "1" * 64)
    l1 = Digest.parse("sha256:" + "2" * 64)
    expected = hashlib.sha256(f"sha256:{'1' * 64} sha256:{'2' * 64}".encode()).hexdigest()
    assert chain_ids([l0, l1])[1].encoded == expected


# --- round trips --------------------------------------------------------------------

_text = st.text(max_size=8)
_nonempty = st.text(min_size=1, max_size=8)
_digests = st.binary(max_size=4).map(Digest.from_bytes)
_descriptors = st.builds(
    Descriptor,
    media_type=st.sampled_from(sorted(mt.LAYER_TYPES)),
    digest=_digests,
    size=st.integers(0, 2**40),
    annotations=st.dictionaries(_text, _text, max_size=2),
)
_extra = st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.integers() | _text, max_size=2)

manifests = st.builds(
    ImageManifest,
    config=_descriptors,
    layers=st.lists(_descriptors, max_size=3).map(tuple),
    media_type=st.sampled_from(["", mt.OCI_MANIFEST, mt.DOCKER_MANIFEST]),
    artifact_type=st.sampled_from(["", "application/vnd.example+json"]),
    subject=st.none() | _descriptors,
    annotations=st.dictionaries(_text, _text, max_size=2),
    extra=_extra,
)
indexes = st.builds(
    ImageIndex,
    manifests=st.lists(_descriptors, max_size=3).map(tuple),
    media_type=st.sampled_from(["", mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST]),
    subject=st.none() | _descriptors,
    annotations=st.dictionaries(_text, _text, max_size=2),
    extra=_extra,
)
_strs = st.none() | st.lists(_text, max_size=3).map(tuple)
_maps = st.none() | st.dictionaries(_nonempty, st.just({}), max_size=2)
exec_configs = st.builds(
    ExecutionConfig,
    user=_text, env=_strs, entrypoint=_strs, cmd=_strs, working_dir=_text,
    exposed_ports=_maps, volumes=_maps,
    labels=st.none() | st.dictionaries(_text, _text, max_size=2),
    stop_signal=_text, args_escaped=st.booleans(),
    healthcheck=st.none() | st.builds(Healthcheck, test=_strs, interval=st.integers(0, 10**12),
                                      retries=st.integers(0, 10)),
    on_build=_strs, shell=_strs, extra=st.dictionaries(st.sampled_from(["Tty", "Image"]), _text),
)  # fmt: skip
configs = st.builds(
    ImageConfig,
    architecture=_nonempty, os=_nonempty, variant=_text, os_version=_text,
    os_features=st.lists(_text, max_size=2).map(tuple), created=_text, author=_text,
    config=st.none() | exec_configs,
    rootfs=st.builds(RootFS, diff_ids=st.lists(_digests, max_size=3).map(tuple)),
    history=st.lists(st.builds(History, created=_text, created_by=_text,
                               empty_layer=st.booleans()), max_size=2).map(tuple),
    extra=_extra,
)  # fmt: skip


@given(manifests)
def test_manifest_round_trip(m):
    assert ImageManifest.from_bytes(m.to_bytes()) == m
    assert parse_manifest(m.to_bytes()) == m


@given(indexes)
def test_index_round_trip(idx):
    assert ImageIndex.from_bytes(idx.to_bytes()) == idx
    assert parse_manifest(idx.to_bytes()) == idx


@given(configs)
def test_config_round_trip(cfg):
    again = ImageConfig.from_bytes(cfg.to_bytes())
    assert again == cfg
    assert again.to_bytes() == cfg.to_bytes()
