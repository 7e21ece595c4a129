"""Platform parsing, normalisation and matching (containerd's platforms package)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conch.errors import InvalidArgument
from conch.oci.platform import (
    Platform,
    default,
    host_platform,
    normalize,
    only,
    only_strict,
)


def P(spec: str) -> Platform:
    os_, arch, *rest = spec.split("/")
    return Platform(os=os_, architecture=arch, variant=rest[0] if rest else "")


@pytest.mark.parametrize(
    "machine, expected",
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("i686", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_host_platform(machine, expected):
    assert str(host_platform(machine)) == expected


def test_host_platform_of_this_machine_is_linux():
    assert host_platform().os == "linux"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm64", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm", "linux/arm"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/armhf", "linux/arm"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("macos/arm64", "darwin/arm64"),
        ("windows(10.0.17763)/amd64", "windows(10.0.17763)/amd64"),
        ("arm64", "linux/arm64"),
        ("s390x", "linux/s390x"),
    ],
)
def test_parse(spec, expected):
    assert str(Platform.parse(spec)) == expected


def test_parse_lone_os_takes_host_arch():
    p = Platform.parse("linux")
    assert p.os == "linux" and p.architecture == host_platform().architecture


@pytest.mark.parametrize("spec", ["", "linux/", "linux/amd 64", "linux/*", "plan10", "a/b/c/d", "linux/amd64/"])
def test_parse_invalid(spec):
    with pytest.raises(InvalidArgument):
        Platform.parse(spec)


@pytest.mark.parametrize(
    "want, candidate, ok",
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v1", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/386", True),
        ("linux/amd64", "linux/amd64/v2", False),
        ("linux/amd64/v3", "linux/amd64/v2", True),
        ("linux/amd64/v3", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm64/v8", "linux/aarch64", True),
        ("linux/arm64", "linux/arm/v7", True),
        ("linux/arm64", "linux/arm/v5", True),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm64", "unknown/unknown", False),
    ],
)
def test_only(want, candidate, ok):
    assert only(P(want)).match(P(candidate)) is ok


def test_only_prefers_exact():
    m = only(P("linux/arm64/v8"))
    assert m.less(P("linux/arm64"), P("linux/arm/v7"))
    assert m.less(P("linux/arm/v7"), P("linux/arm/v6"))
    assert not m.less(P("linux/arm/v6"), P("linux/arm64"))
    amd = only(P("linux/amd64"))
    assert amd.less(P("linux/amd64"), P("linux/386"))


def test_only_strict():
    m = only_strict(P("linux/amd64"))
    assert m.match(P("linux/amd64/v1")) and not m.match(P("linux/386"))


def test_default_matches_host():
    assert default().match(host_platform())


def test_normalize():
    assert normalize(P("linux/aarch64/8")) == P("linux/arm64")
    assert normalize(P("Linux/X86_64/v1")) == P("linux/amd64")


def test_dict_round_trip_keeps_unknown():
    d = {"architecture": "arm", "os": "linux", "variant": "v7", "features": ["sse4"], "x": 1}
    p = Platform.from_dict(d)
    assert p.extra == {"features": ["sse4"], "x": 1}
    assert p.to_dict() == d
    w = {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1",
         "os.features": ["win32k"]}  # fmt: skip
    assert Platform.from_dict(w).to_dict() == w


@pytest.mark.parametrize(
    "bad",
    [{}, {"os": "linux"}, {"os": 1, "architecture": "x"},
     {"os": "linux", "architecture": "amd64", "os.features": "x"}, []],
)  # fmt: skip
def test_from_dict_invalid(bad):
    with pytest.raises(InvalidArgument):
        Platform.from_dict(bad)


_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
platforms = st.builds(
    Platform,
    os=_word,
    architecture=_word,
    variant=st.one_of(st.just(""), _word),
    os_version=st.one_of(st.just(""), _word),
    os_features=st.lists(_word, max_size=3).map(tuple),
    extra=st.dictionaries(st.sampled_from(["features", "x-y"]), st.integers(), max_size=2),
)


@given(platforms)
def test_round_trip(p):
    assert Platform.from_dict(p.to_dict()) == p
    assert only(p).match(p)
