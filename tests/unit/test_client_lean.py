"""conch.client.lean gives the standard library's results (json, urllib.parse)."""

import json
import urllib.parse

import pytest

from conch.client import lean

VALUES = [
    None, True, False, 0, -7, 2 ** 70, 1.5, 1e100, -0.0, "", "plain", "tab\tnl\n\"q\"\\",
    "ünïcødé ☃ \U0001f600", "<>&", "\x00\x1f", [], {}, [1, "a", None, [2, {"k": [3]}]],
    {"Image": "busybox", "Cmd": ["sh", "-c", "echo -n hi"], "Env": ["A=1"],
     "HostConfig": {"AutoRemove": True, "NetworkMode": "none", "Memory": 0}},
    {"filters": {"status": {"exited": True}}}, {1: "int key"}, (1, 2),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_dumps_matches_json(value):
    assert lean.dumps(value) == json.dumps(value)
    assert lean.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
    assert lean.dumps(value, compact=True, ascii=False) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False)
    assert lean.dumps(value, ascii=False) == json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_loads_matches_json(value):
    text = json.dumps(value)
    for data in (text, text.encode(), b"\xef\xbb\xbf" + text.encode(), f" \n{text}\r\n "):
        assert lean.loads(data) == json.loads(data)


@pytest.mark.parametrize("bad", ["", "  ", "{", "[1,]", "{} x", "nul", "'a'", b"\xff"])
def test_loads_rejects_what_json_rejects(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        lean.loads(bad)


def test_dumps_rejects_unserialisable_and_circular():
    with pytest.raises(TypeError):
        lean.dumps({"x": object()})
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        lean.dumps(loop)


TEXTS = ["busybox", "web/app:1.0@sha256:ab", "a b+c&d=e?f#g%h", "ünï ☃", "~._-", "",
         "/containers/x", "{\"status\":{\"exited\":true}}", "a/b:c@d!$'()*,;"]


@pytest.mark.parametrize("text", TEXTS)
def test_quote_matches_urllib(text):
    for safe in ("/", "", "/:@", " "):
        assert lean.quote(text, safe) == urllib.parse.quote(text, safe=safe)
    assert lean.quote_plus(text) == urllib.parse.quote_plus(text)


def test_urlencode_matches_urllib():
    pairs = [("all", "1"), ("filters", '{"label":{"a=b c":true}}'), ("name", "ünï"),
             ("signal", "SIGKILL"), ("t", "10"), ("empty", "")]
    assert lean.urlencode(pairs) == urllib.parse.urlencode(pairs)
    assert lean.urlencode([]) == ""


@pytest.mark.parametrize("value", VALUES + [{"a": {}, "b": [], "c": [{}], True: 1, None: 2, 3.5: 4}],
                         ids=repr)
def test_dumps_indent_matches_json(value):
    for indent in (2, 4):
        assert lean.dumps_indent(value, indent) == json.dumps(value, indent=indent)
        assert lean.dumps_indent(value, indent, ascii=False) == json.dumps(
            value, indent=indent, ensure_ascii=False)
