"""Registry client pieces without the network: auth headers and scopes, platform
selection, X-Registry-Auth, the credentials file, progress rendering, API parameters."""

from __future__ import annotations

import io
import os
import stat

import pytest

from conch.api.routes_distribution import (credentials_of, decode_auth_config, human_size,
                                           progress_bar, progress_json, pull_reference)
from conch.cli import registry_cmds as cli
from conch.engine.distribution.progress import Progress
from conch.engine.distribution.service import registry_domain
from conch.errors import InvalidArgument, NotFound
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageIndex
from conch.oci.platform import Platform
from conch.registry.client.auth import Credentials, merge_scopes, parse_challenges, scope
from conch.registry.client.resolve import platforms_of, select_manifest
from conch.registry.client.transport import Registries, registry_error


@pytest.mark.parametrize("header, expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('Basic realm="a, b", Bearer realm=x,service=y',
     [("basic", {"realm": "a, b"}), ("bearer", {"realm": "x", "service": "y"})]),
    (r'Bearer realm="q\"uote", error="insufficient_scope"',
     [("bearer", {"realm": 'q"uote', "error": "insufficient_scope"})]),
    ("", []),
])
def test_parse_challenges(header, expected):
    assert [(c.scheme, c.params) for c in parse_challenges(header)] == expected


def test_scopes():
    assert scope("library/busybox") == "repository:library/busybox:pull"
    assert scope("a/b", ("pull", "push")) == "repository:a/b:pull,push"
    assert merge_scopes([scope("a"), scope("a", ("push",)), scope("b")]) == (
        "repository:a:pull,push", "repository:b:pull")


def test_credentials_basic_header():
    assert Credentials().anonymous
    assert Credentials(username="u", password="p:w").basic() == "Basic dTpwOnc="


def _entry(arch: str, variant: str = "", os_: str = "linux") -> Descriptor:
    return Descriptor(media_type=mt.OCI_MANIFEST, digest=Digest.from_bytes(arch.encode() + variant.encode()),
                      size=1, platform=Platform(os=os_, architecture=arch, variant=variant))


def test_platform_selection_from_an_index():
    index = ImageIndex(manifests=(_entry("arm", "v6"), _entry("arm", "v7"), _entry("arm64", "v8"),
                                  _entry("amd64"), _entry("unknown", os_="unknown")))
    assert select_manifest(index, Platform.parse("linux/amd64")).platform.architecture == "amd64"
    assert select_manifest(index, Platform.parse("linux/arm64")).platform.architecture == "arm64"
    assert select_manifest(index, Platform.parse("linux/arm/v7")).platform.variant == "v7"
    assert select_manifest(index, Platform.parse("linux/arm/v6")).platform.variant == "v6"
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x in the manifest list"):
        select_manifest(index, Platform.parse("linux/s390x"))
    assert len(platforms_of(index)) == 4  # the attestation entry is left out


def test_x_registry_auth_round_trip():
    config = {"username": "ü ser", "password": "p?ss/+", "serveraddress": "localhost:5000"}
    encoded = cli.encode_auth(config)
    assert "+" not in encoded and "/" not in encoded
    assert decode_auth_config(encoded) == config
    assert decode_auth_config(encoded.rstrip("=")) == config  # padding optional
    assert decode_auth_config("") == {}
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        decode_auth_config("!!!")
    creds = credentials_of({"auth": "dTpwOnc="})
    assert (creds.username, creds.password) == ("u", "p:w")


def test_config_json_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCH_CONFIG", str(tmp_path / "cfg"))
    path = tmp_path / "cfg" / "config.json"
    path.parent.mkdir()
    path.write_text('{"psFormat": "table {{.ID}}"}')
    assert cli.store_credentials("http://localhost:5000/", "u", "p") == "localhost:5000"
    assert cli.store_credentials("docker.io", "hub", "pw") == cli.INDEX_SERVER
    doc = cli.load_config()
    assert doc["psFormat"] == "table {{.ID}}"  # other keys survive
    assert doc["auths"]["localhost:5000"] == {"auth": "dTpw"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cli.get_credentials("localhost:5000") == {
        "username": "u", "password": "p", "serveraddress": "localhost:5000"}
    assert cli.get_credentials("index.docker.io")["username"] == "hub"
    assert cli.get_credentials("other:1") is None
    assert cli.auth_headers("other:1") == {}
    assert not [p for p in path.parent.iterdir() if p.name != "config.json"]  # no temp litter


def test_registry_domains_and_insecure_rules():
    assert registry_domain("https://index.docker.io/v1/") == "docker.io"
    assert registry_domain("") == "docker.io"
    assert registry_domain("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    r = Registries(["10.1.0.0/16", "reg.example:5000", "plain.example"])
    assert r.is_insecure("localhost:5000") and r.is_insecure("127.9.9.9:1")
    assert r.is_insecure("[::1]:5000") and r.is_insecure("10.1.2.3:443")
    assert r.is_insecure("reg.example:5000") and r.is_insecure("plain.example:8080")
    assert not r.is_insecure("reg.example") and not r.is_insecure("docker.io")
    assert not r.is_insecure("10.2.0.1:5000")


def test_registry_error_bodies():
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}'
    assert registry_error(body, 404) == "manifest unknown: manifest unknown"
    assert registry_error(b"<html>", 502) == "HTTP 502"


@pytest.mark.parametrize("from_image, tag, expected", [
    ("docker.io/library/busybox", "latest", ("docker.io/library/busybox:latest", False)),
    ("busybox", "", ("busybox", True)),
    ("busybox:1.36", "", ("busybox:1.36", False)),
    ("localhost:5000/a/b", "v1", ("localhost:5000/a/b:v1", False)),
    ("localhost:5000/a/b:old", "v2", ("localhost:5000/a/b:v2", False)),
    ("busybox", "sha256:" + "a" * 64, ("busybox@sha256:" + "a" * 64, False)),
    ("busybox@sha256:" + "b" * 64, "latest", ("busybox@sha256:" + "b" * 64, False)),
])
def test_pull_reference(from_image, tag, expected):
    assert pull_reference(from_image, tag) == expected


def test_jsonmessage_shapes():
    assert human_size(1048576) == "1.049MB" and human_size(999) == "999B"
    assert progress_bar(0, 100).startswith("[>" + " " * 50 + "] ")
    assert progress_bar(100, 100) == "[" + "=" * 50 + ">]     100B/100B"
    assert progress_json(Progress(id="abc", status="Downloading", current=5, total=10)) == {
        "status": "Downloading", "progressDetail": {"current": 5, "total": 10},
        "progress": progress_bar(5, 10), "id": "abc"}
    assert progress_json(Progress(id="latest", status="Pulling from library/busybox")) == {
        "status": "Pulling from library/busybox", "id": "latest"}
    assert progress_json(Progress(id="abc", status="Pull complete")) == {
        "status": "Pull complete", "progressDetail": {}, "id": "abc"}
    assert progress_json(Progress(aux={"Tag": "v1"})) == {"progressDetail": {}, "aux": {"Tag": "v1"}}


def test_progress_display_plain_and_terminal():
    msgs = [{"status": "Pulling from a/b", "id": "v1"},
            {"status": "Downloading", "id": "l1", "progress": "[=>  ] 1B/2B",
             "progressDetail": {"current": 1, "total": 2}},
            {"status": "Pull complete", "id": "l1", "progressDetail": {}},
            {"status": "Digest: sha256:x"}]
    out = io.StringIO()
    cli.ProgressDisplay(out, tty=False).run(msgs)
    assert out.getvalue() == "v1: Pulling from a/b\nl1: Pull complete\nDigest: sha256:x\n"
    out = io.StringIO()
    cli.ProgressDisplay(out, tty=True).run(msgs)
    text = out.getvalue()
    assert "\x1b[1A\x1b[2K\rl1: Downloading [=>  ] 1B/2B\r\x1b[1B" in text
    assert "\x1b[1A\x1b[2K\rl1: Pull complete\r\x1b[1B" in text
    with pytest.raises(Exception, match="boom"):
        cli.ProgressDisplay(io.StringIO(), tty=False).show({"error": "boom",
                                                            "errorDetail": {"message": "boom"}})
