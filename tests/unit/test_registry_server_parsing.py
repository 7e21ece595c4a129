"""conch.registry.server: names, tags, ranges, pagination, manifests, scopes, tokens."""

import json

import pytest
from hypothesis import given, strategies as st

from conch.registry.server import manifests
from conch.registry.server.auth import Authorizer, Htpasswd, Scope, TokenSigner, covers, parse_basic
from conch.registry.server.errors import RegistryError
from conch.registry.server.names import (paginate, parse_content_range, parse_digest,
                                         parse_reference, upload_range, validate_name)

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize("name", ["a", "library/busybox", "a.b/c-d/e__f", "x0/y--z", "a" * 255])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "_a", "a/_manifests", "a..b",
                                  "a-", "a" * 256, "a b", "a/../b", "é"])
def test_invalid_names(name):
    with pytest.raises(RegistryError) as exc:
        validate_name(name)
    assert exc.value.code == "NAME_INVALID" and exc.value.status == 400


def test_reference_is_tag_or_digest():
    assert parse_reference("v1.0_x") == (None, "v1.0_x")
    assert str(parse_reference(SHA)[0]) == SHA
    for bad in (".x", "-x", "a" * 129):
        with pytest.raises(RegistryError) as exc:
            parse_reference(bad)
        assert exc.value.code == "TAG_INVALID"
    with pytest.raises(RegistryError) as exc:
        parse_reference("sha256:abc")
    assert exc.value.code == "DIGEST_INVALID"
    with pytest.raises(RegistryError) as exc:
        parse_digest("md5:" + "a" * 32)
    assert exc.value.code == "UNSUPPORTED"


@pytest.mark.parametrize("value,want", [("0-9", (0, 9)), ("bytes 10-19", (10, 19)), (" 5-5 ", (5, 5))])
def test_content_range(value, want):
    assert parse_content_range(value) == want


@pytest.mark.parametrize("value", ["9-0", "a-b", "-5", "5-", "bytes=0-1", ""])
def test_bad_content_range_is_416(value):
    with pytest.raises(RegistryError) as exc:
        parse_content_range(value)
    assert exc.value.status == 416


def test_upload_range():
    assert upload_range(0) == "0-0" and upload_range(1) == "0-0" and upload_range(10) == "0-9"


@given(st.lists(st.text("abc", min_size=1, max_size=3), unique=True), st.integers(1, 5))
def test_pagination_walks_everything_once(items, n):
    seen, last = [], ""
    while True:
        page, more = paginate(items, n, last)
        seen += page
        if not more:
            break
        last = page[-1]
    assert seen == sorted(items)


def _manifest(**extra):
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": SHA, "size": 2},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": SHA, "size": 3}]}
    doc.update(extra)
    return json.dumps(doc).encode()


def test_manifest_parse_collects_references_and_subject():
    p = manifests.parse(_manifest(subject={"mediaType": "x/y", "digest": SHA, "size": 1}),
                        "application/vnd.oci.image.manifest.v1+json")
    assert [r.size for r in p.references] == [2, 3]
    assert p.subject == SHA
    assert p.artifact_type == "application/vnd.oci.image.config.v1+json"  # config fallback


@pytest.mark.parametrize("body,ctype,code", [
    (b"garbage", "application/vnd.oci.image.manifest.v1+json", "MANIFEST_INVALID"),
    (b"[]", "application/vnd.oci.image.manifest.v1+json", "MANIFEST_INVALID"),
    (_manifest(), "application/vnd.docker.distribution.manifest.v2+json", "MANIFEST_INVALID"),
    (_manifest(schemaVersion=1), "application/vnd.oci.image.manifest.v1+json", "MANIFEST_INVALID"),
    (_manifest(layers=[{"digest": "sha256:zz", "size": 1, "mediaType": "a/b"}]),
     "application/vnd.oci.image.manifest.v1+json", "MANIFEST_INVALID"),
    (_manifest(), "text/plain", "MANIFEST_INVALID"),
    (b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws", "UNSUPPORTED"),
])
def test_manifest_parse_rejects(body, ctype, code):
    with pytest.raises(RegistryError) as exc:
        manifests.parse(body, ctype)
    assert exc.value.code == code


def test_index_references_children():
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "digest": SHA, "size": 5}]}).encode()
    p = manifests.parse(body, "application/vnd.oci.image.index.v1+json")
    assert p.references[0].is_manifest
    assert manifests.references_of(body) == [(SHA, True)]


def test_scope_parse():
    s = Scope.parse("repository:a/b:pull,push")
    assert (s.type, s.name, s.actions) == ("repository", "a/b", {"pull", "push"})
    assert Scope.parse("registry:catalog:*").actions == {"*"}
    assert Scope.parse("repository:localhost:5000/x:pull").name == "localhost:5000/x"
    assert Scope.parse("nonsense") is None


def test_token_round_trip_and_tampering(tmp_path):
    signer = TokenSigner(tmp_path)
    assert (tmp_path / "auth" / "token.key").stat().st_mode & 0o777 == 0o600
    tok = signer.issue("alice", [Scope("repository", "a", frozenset({"pull"}))], now=1000)
    sub, scopes = signer.verify(tok, now=1001)
    assert sub == "alice" and scopes[0].actions == {"pull"}
    assert signer.verify(tok, now=1000 + 10_000) is None  # expired
    head, claims, sig = tok.split(".")
    forged = json.loads(__import__("base64").urlsafe_b64decode(claims + "=="))
    forged["access"][0]["actions"] = ["pull", "push"]
    from conch.registry.server.auth import _b64
    assert signer.verify(f"{head}.{_b64(json.dumps(forged).encode())}.{sig}", now=1001) is None
    assert TokenSigner(tmp_path).verify(tok, now=1001) is not None  # same key after restart
    assert TokenSigner(tmp_path / "other").verify(tok, now=1001) is None
    assert signer.verify("a.b", now=1001) is None and signer.verify("", now=1) is None


def test_token_key_left_empty_by_a_crash_is_replaced(tmp_path):
    # an older version could crash between creating token.key and writing it: an empty
    # HMAC key makes every token forgeable, so it must never be used
    key = tmp_path / "auth" / "token.key"
    key.parent.mkdir()
    key.write_bytes(b"")
    signer = TokenSigner(tmp_path)
    assert len(key.read_bytes()) == 32 and key.stat().st_mode & 0o777 == 0o600
    assert signer._key == key.read_bytes()
    assert [p.name for p in key.parent.iterdir()] == ["token.key"]  # no temp file left
    import hashlib, hmac
    from conch.registry.server.auth import _b64
    header = _b64(json.dumps({"alg": "HS256"}).encode())
    claims = _b64(json.dumps({"aud": "conch-registry", "nbf": 0, "exp": 2e9, "sub": "eve",
                              "access": []}).encode())
    signing = f"{header}.{claims}"
    forged = f"{signing}.{_b64(hmac.new(b'', signing.encode(), hashlib.sha256).digest())}"
    assert signer.verify(forged) is None


def test_htpasswd_bcrypt_and_policy(tmp_path):
    from conch.testing.registry_server import htpasswd_file

    users = Htpasswd(htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret"}))
    assert users.check("alice", "s3cret") and users.check("alice", "s3cret")  # cached
    assert not users.check("alice", "wrong") and not users.check("bob", "s3cret")
    repo = Scope("repository", "x", frozenset({"pull", "push"}))
    anon = Authorizer(users, anonymous_pull=True)
    assert anon.allowed(None, repo) == {"pull"}
    assert anon.allowed("alice", repo) == {"pull", "push"}
    assert Authorizer(users, anonymous_pull=False).allowed(None, repo) == frozenset()
    assert anon.allowed(None, Scope("registry", "catalog", frozenset({"*"}))) == frozenset()
    assert covers([Scope("repository", "x", frozenset({"*"}))], repo)
    assert not covers([Scope("repository", "y", frozenset({"pull", "push"}))], repo)
    assert parse_basic("Basic " + __import__("base64").b64encode(b"u:p:q").decode()) == ("u", "p:q")
    assert parse_basic("Basic !!!") is None and parse_basic("Bearer x") is None


def test_unknown_users_cost_the_same_bcrypt_work(tmp_path):
    """An unknown user name is checked against a decoy hash of the file's own cost, so
    the time of a refusal does not tell whether the user exists."""
    from conch.testing.registry_server import htpasswd_file

    users = Htpasswd(htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret"}, rounds=6))
    assert not users.check("mallory", "s3cret")
    assert users._decoy_hash.startswith(b"$2b$06$")  # the same cost as alice's entry
    assert not users.check("mallory", "s3cret")  # and never accepted
