"""Digest grammar, errors and the incremental digester."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conch.errors import InvalidArgument
from conch.oci.digest import Digest, Digester

HEX64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256("")


def test_from_bytes_and_str():
    d = Digest.from_bytes(b"")
    assert str(d) == f"sha256:{HEX64}"
    assert d.algorithm == "sha256" and d.hex == HEX64 and d.short() == HEX64[:12]
    assert Digest.parse(str(d)) == d


def test_sha512():
    d = Digest.from_bytes(b"x", "sha512")
    assert d.encoded == hashlib.sha512(b"x").hexdigest()
    assert Digest.parse(str(d)) == d


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "invalid checksum digest format"),
        ("sha256", "invalid checksum digest format"),
        ("sha256:", "invalid checksum digest format"),
        (":" + HEX64, "invalid checksum digest format"),
        ("sha256:" + HEX64[:-1], "invalid checksum digest length"),
        ("sha256:" + HEX64 + "0", "invalid checksum digest length"),
        ("sha256:" + HEX64.upper(), "invalid checksum digest format"),
        ("sha256:" + "g" * 64, "invalid checksum digest format"),
        ("sha384:" + "a" * 96, "unsupported digest algorithm"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"),
        ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "unsupported digest algorithm"),
        ("SHA256:" + HEX64, "invalid checksum digest format"),
        ("sha256 :" + HEX64, "invalid checksum digest format"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(InvalidArgument, match=message):
        Digest.parse(text)


def test_keyword_construction_validates():
    with pytest.raises(InvalidArgument):
        Digest(algorithm="sha256", encoded="abc")


def test_digester_is_incremental_and_non_final():
    d = Digester()
    d.update(b"hello ")
    first = d.digest()
    d.update(memoryview(b"world"))
    assert first == Digest.from_bytes(b"hello ")
    assert d.digest() == Digest.from_bytes(b"hello world")
    assert d.size == 11


def test_digester_unsupported():
    with pytest.raises(InvalidArgument, match="unsupported"):
        Digester("md5")


@given(st.binary(), st.sampled_from(["sha256", "sha512"]))
def test_round_trip(data, algorithm):
    d = Digest.from_bytes(data, algorithm)
    assert Digest.parse(str(d)) == d
    assert d.encoded == hashlib.new(algorithm, data).hexdigest()


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_digester_matches_one_shot(chunks):
    d = Digester()
    for c in chunks:
        d.update(c)
    assert d.digest() == Digest.from_bytes(b"".join(chunks))
