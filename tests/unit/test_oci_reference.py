"""Reference parsing, ported from distribution/reference's reference_test.go and
normalize_test.go (as cases, from the well-known tables), plus round trips."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conch.errors import InvalidArgument
from conch.oci.digest import Digest
from conch.oci.reference import Reference, validate_path, validate_tag

F64 = "sha256:" + "f" * 64
F128 = "sha512:" + "f" * 128

# input -> (domain, path, tag, digest)
VALID = [
    ("test_com", ("docker.io", "library/test_com", "latest", None)),
    ("test.com:tag", ("docker.io", "library/test.com", "tag", None)),
    ("test.com:5000", ("docker.io", "library/test.com", "5000", None)),
    ("test.com/repo:tag", ("test.com", "repo", "tag", None)),
    ("test:5000/repo", ("test:5000", "repo", "latest", None)),
    ("test:5000/repo:tag", ("test:5000", "repo", "tag", None)),
    ("test:5000/repo@" + F64, ("test:5000", "repo", "", F64)),
    ("test:5000/repo:tag@" + F64, ("test:5000", "repo", "tag", F64)),
    ("lowercase:Uppercase", ("docker.io", "library/lowercase", "Uppercase", None)),
    ("sub-dom1.foo.com/bar/baz/quux", ("sub-dom1.foo.com", "bar/baz/quux", "latest", None)),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag",
     ("sub-dom1.foo.com", "bar/baz/quux", "some-long-tag", None)),
    ("b.gcr.io/test.example.com/my-app:test.example.com",
     ("b.gcr.io", "test.example.com/my-app", "test.example.com", None)),
    ("xn--n3h.com/myimage:xn--n3h.com", ("xn--n3h.com", "myimage", "xn--n3h.com", None)),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + F128,
     ("xn--7o8h.com", "myimage", "xn--7o8h.com", F128)),
    ("foo_bar.com:8080", ("docker.io", "library/foo_bar.com", "8080", None)),
    ("foo/foo_bar.com:8080", ("docker.io", "foo/foo_bar.com", "8080", None)),
    ("192.168.1.1", ("docker.io", "library/192.168.1.1", "latest", None)),
    ("192.168.1.1:tag", ("docker.io", "library/192.168.1.1", "tag", None)),
    ("192.168.1.1:5000", ("docker.io", "library/192.168.1.1", "5000", None)),
    ("192.168.1.1/repo", ("192.168.1.1", "repo", "latest", None)),
    ("192.168.1.1:5000/repo", ("192.168.1.1:5000", "repo", "latest", None)),
    ("192.168.1.1:5000/repo@" + F64, ("192.168.1.1:5000", "repo", "", F64)),
    ("[2001:db8::1]/repo", ("[2001:db8::1]", "repo", "latest", None)),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", ("[2001:db8:1:2:3:4:5:6]", "repo", "tag", None)),
    ("[2001:db8::1]:5000/repo", ("[2001:db8::1]:5000", "repo", "latest", None)),
    ("[2001:db8::1]:5000/repo:tag", ("[2001:db8::1]:5000", "repo", "tag", None)),
    ("[2001:db8::]:5000/repo", ("[2001:db8::]:5000", "repo", "latest", None)),
    ("[::1]:5000/repo", ("[::1]:5000", "repo", "latest", None)),
    ("localhost/foo", ("localhost", "foo", "latest", None)),
    ("localhost:5000/a/b:tag@" + F64, ("localhost:5000", "a/b", "tag", F64)),
    ("busybox", ("docker.io", "library/busybox", "latest", None)),
    ("user/img", ("docker.io", "user/img", "latest", None)),
    ("docker.io/busybox", ("docker.io", "library/busybox", "latest", None)),
    ("index.docker.io/library/busybox:1.36", ("docker.io", "library/busybox", "1.36", None)),
    ("index.docker.io/user/img", ("docker.io", "user/img", "latest", None)),
    ("library/foo/bar", ("docker.io", "library/foo/bar", "latest", None)),
    ("Foo/bar", ("Foo", "bar", "latest", None)),  # an uppercase first component is a domain
    ("a__b/c--d/e.f_g:T_a.g-1", ("docker.io", "a__b/c--d/e.f_g", "T_a.g-1", None)),
    ("docker.io/" + "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
     ("docker.io", "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
      "latest", None)),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
     ("docker.io", "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
      "latest", None)),
    ("example.com/" + "a/" * 121 + "a", ("example.com", "a/" * 121 + "a", "latest", None)),
    ("busybox:" + "t" * 128, ("docker.io", "library/busybox", "t" * 128, None)),
]  # fmt: skip

INVALID = [
    ("", "invalid reference format"),
    (":justtag", "invalid reference format"),
    ("@" + F64, "invalid reference format"),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
    ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("Uppercase:tag", r"invalid reference format: repository name \(library/Uppercase\) must be lowercase"),
    ("Busybox", r"invalid reference format: repository name \(library/Busybox\) must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag",
     r"invalid reference format: repository name \(Uppercase/lowercase\) must be lowercase"),
    ("docker/Docker", r"repository name \(docker/Docker\) must be lowercase"),
    ("docker.io/docker/Docker", r"repository name \(docker/Docker\) must be lowercase"),
    ("a/" * 128 + "a:tag", "repository name must not be more than 255 characters"),
    ("example.com/" + "a/" * 122 + "a", "repository name must not be more than 255 characters"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("[2001:db8::1]", "invalid reference format"),
    ("[2001:db8::1]:5000", "invalid reference format"),
    ("[2001:db8::1]:tag", "invalid reference format"),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format"),
    ("2001:db8::1/repo", "invalid reference format"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("-docker", "invalid reference format"),
    ("-docker/docker", "invalid reference format"),
    ("-docker.io/docker/docker", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("docker.io/docker///docker", "invalid reference format"),
    ("foo-/bar", "invalid reference format"),
    ("foo/bar:", "invalid reference format"),
    ("foo/bar:.tag", "invalid reference format"),
    ("foo/bar:" + "t" * 129, "invalid reference format"),
    ("foo/bar\n", "invalid reference format"),
    ("foo/bär", "invalid reference format"),
    ("busybox:tä", "invalid reference format"),
    ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
     "cannot specify 64-byte hexadecimal strings"),
]  # fmt: skip


@pytest.mark.parametrize("text, expected", VALID)
def test_parse_valid(text, expected):
    domain, path, tag, digest = expected
    ref = Reference.parse(text)
    assert (ref.domain, ref.path, ref.tag) == (domain, path, tag)
    assert ref.digest == (None if digest is None else Digest.parse(digest))
    assert ref.name == f"{domain}/{path}"
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize("text, message", INVALID)
def test_parse_invalid(text, message):
    with pytest.raises(InvalidArgument, match=message):
        Reference.parse(text)


# input -> (familiar name, full name), from TestParseRepositoryInfo
FAMILIAR = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu"),
    ("ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("other/library", "other/library", "docker.io/other/library"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase",
     "127.0.0.1:8000/private/moonbase"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase"),
    ("example.com/private/moonbase", "example.com/private/moonbase",
     "example.com/private/moonbase"),
    ("example.com/privatebase", "example.com/privatebase", "example.com/privatebase"),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase",
     "example.com:8000/private/moonbase"),
    ("example.com:8000/privatebase", "example.com:8000/privatebase",
     "example.com:8000/privatebase"),
    ("localhost:8000/private/moonbase", "localhost:8000/private/moonbase",
     "localhost:8000/private/moonbase"),
    ("localhost:8000/privatebase", "localhost:8000/privatebase", "localhost:8000/privatebase"),
    ("localhost/privatebase", "localhost/privatebase", "localhost/privatebase"),
    ("index.docker.io/library/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("index.docker.io/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("docker.io/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar"),
]  # fmt: skip


@pytest.mark.parametrize("text, familiar, full", FAMILIAR)
def test_familiar_name(text, familiar, full):
    ref = Reference.parse(text, default_tag=False)
    assert ref.familiar_name() == familiar
    assert ref.name == full
    assert str(ref) == full and ref.familiar() == familiar


def test_familiar_string():
    assert Reference.parse("busybox").familiar() == "busybox:latest"
    assert Reference.parse("user/img:tag").familiar() == "user/img:tag"
    ref = Reference.parse(f"docker.io/library/busybox:1.36@{F64}")
    assert ref.familiar() == f"busybox:1.36@{F64}"
    assert str(ref) == f"docker.io/library/busybox:1.36@{F64}"


def test_default_tag_only_when_name_only():
    assert Reference.parse("busybox", default_tag=False).tag == ""
    assert Reference.parse(f"busybox@{F64}").tag == ""
    assert Reference.parse("busybox:1").tag == "1"


def test_with_tag_and_digest():
    ref = Reference.parse("busybox")
    assert str(ref.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    both = ref.with_digest(F64)
    assert str(both) == f"docker.io/library/busybox:latest@{F64}"
    assert both.with_tag("x").digest == Digest.parse(F64)
    assert str(both.name_only()) == "docker.io/library/busybox"
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        ref.with_tag("-bad")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:nope")


def test_helpers():
    assert validate_tag("v1.0_rc-2") == "v1.0_rc-2"
    assert validate_path("library/busybox") == "library/busybox"
    for bad in ("Library/busybox", "a//b", "/a", "a/"):
        with pytest.raises(InvalidArgument):
            validate_path(bad)


def test_hashable_and_keyword_construction_validates():
    assert len({Reference.parse("busybox"), Reference.parse("docker.io/library/busybox")}) == 1
    with pytest.raises(InvalidArgument):
        Reference(domain="docker.io", path="UPPER")
    with pytest.raises(InvalidArgument):
        Reference(domain="bad domain", path="x")


# --- round trips ---------------------------------------------------------------------

_component = st.from_regex(r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,6}){0,2}", fullmatch=True)
_domain = st.one_of(
    st.just(""),
    st.sampled_from(["docker.io", "index.docker.io", "localhost", "localhost:5000", "Foo",
                     "[::1]:5000", "[2001:db8::1]", "127.0.0.1:8000", "quay.io"]),
    st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,5}[a-z0-9])?\.[a-z]{2,5}(?::[0-9]{1,5})?", fullmatch=True),
)  # fmt: skip
_tag = st.one_of(st.just(""), st.from_regex(r"[\w][\w.-]{0,20}", fullmatch=True).filter(str.isascii))
_digest = st.one_of(st.none(), st.binary(max_size=8).map(Digest.from_bytes))


@st.composite
def reference_strings(draw):
    domain = draw(_domain)
    path = "/".join(draw(st.lists(_component, min_size=1, max_size=3)))
    s = f"{domain}/{path}" if domain else path
    if tag := draw(_tag):
        s += f":{tag}"
    if (digest := draw(_digest)) is not None:
        s += f"@{digest}"
    return s


@given(reference_strings())
def test_round_trip(text):
    try:
        ref = Reference.parse(text)
    except InvalidArgument:
        assume(False)
        raise
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(str(ref), default_tag=False) == ref
    assert str(Reference.parse(str(ref))) == str(ref)


@given(reference_strings())
def test_familiar_round_trip(text):
    try:
        ref = Reference.parse(text)
    except InvalidArgument:
        assume(False)
        raise
    # Docker's known quirk: docker.io/foo.bar/baz displays as foo.bar/baz, which then
    # reads as domain foo.bar. Everything else survives the short form.
    first = ref.familiar_name().split("/")[0]
    assume(ref.domain != "docker.io" or ("." not in first and ":" not in first and first != "localhost"))
    assert Reference.parse(ref.familiar()) == ref
