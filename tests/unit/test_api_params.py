"""Query parsing helpers of the API adapter (docker's bool/filters/timestamp rules)."""

import pytest

from conch.api.params import field, json_body, parse_bool, parse_filters, parse_int, parse_timestamp
from conch.errors import InvalidArgument


@pytest.mark.parametrize("raw,expected", [
    ("1", True), ("true", True), ("True", True), ("yes", True), ("anything", True),
    ("", False), ("0", False), ("no", False), ("FALSE", False), ("none", False), (" 0 ", False),
])
def test_parse_bool_follows_docker(raw, expected):
    assert parse_bool({"force": raw}, "force") is expected


def test_parse_bool_default_when_absent():
    assert parse_bool({}, "force") is False
    assert parse_bool({}, "stream", default=True) is True


@pytest.mark.parametrize("raw,expected", [
    ("", {}),
    ('{"label": {"a=b": true, "c": true}}', {"label": ["a=b", "c"]}),
    ('{"label": ["a=b"], "dangling": ["true"]}', {"label": ["a=b"], "dangling": ["true"]}),
    ('{"dangling": {"true": false}}', {"dangling": ["true"]}),  # moby counts keys only
    ('{"reference": "busybox"}', {"reference": ["busybox"]}),
])
def test_parse_filters_both_wire_forms(raw, expected):
    assert parse_filters({"filters": raw}) == expected


@pytest.mark.parametrize("raw", ["{", "[1]", '{"a": 1}'])
def test_parse_filters_rejects_malformed(raw):
    with pytest.raises(InvalidArgument):
        parse_filters({"filters": raw})


def test_parse_filters_unknown_key_is_docker_message():
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'bogus'$"):
        parse_filters({"filters": '{"bogus": ["x"]}'}, allowed={"label"})


def test_parse_timestamp():
    assert parse_timestamp({}, "since") is None
    assert parse_timestamp({"since": "12"}, "since") == 12_000_000_000
    assert parse_timestamp({"since": "12.5"}, "since") == 12_500_000_000
    assert parse_timestamp({"until": "1.000000001"}, "until") == 1_000_000_001
    with pytest.raises(InvalidArgument):
        parse_timestamp({"since": "10m"}, "since")


def test_parse_int():
    assert parse_int({"t": "5"}, "t") == 5
    assert parse_int({"t": ""}, "t", 10) == 10
    with pytest.raises(InvalidArgument):
        parse_int({"t": "x"}, "t")


def test_field_reads_mappings_and_objects():
    class R:
        a = 1
        b = None
    assert field({"a": 1}, "a") == 1 and field({"a": None}, "a", 7) == 7
    assert field(R(), "a") == 1 and field(R(), "b", 2) == 2 and field(R(), "zz", 3) == 3


def test_json_body_is_compact_with_newline():
    assert json_body({"message": "é"}) == '{"message":"é"}\n'.encode()
