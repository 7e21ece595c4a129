"""A real ``conch registry serve`` on 127.0.0.1, driven with plain HTTP (http.client).

The full push/pull protocol, hostile input (each must get the spec's error and store
nothing), auth (token flow, Basic, anonymous pull, scopes), TLS, and gc while serving.
"""

import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import urllib.parse

import pytest

from conch.testing.registry_server import RegistryServer, htpasswd_file, self_signed_cert

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class Client:
    def __init__(self, server, auth=None, context=None):
        self.server, self.auth, self.context = server, auth, context

    def __call__(self, method, path, body=None, headers=None):
        if self.server.scheme == "https":
            conn = http.client.HTTPSConnection("127.0.0.1", self.server.port, context=self.context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = dict(headers or {})
        if self.auth:
            headers.setdefault("Authorization", self.auth)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.headers, data


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_code(data: bytes) -> str:
    return json.loads(data)["errors"][0]["code"]


def push_blob(c, name, data):
    status, h, _ = c("POST", f"/v2/{name}/blobs/uploads/?digest={sha(data)}", body=data)
    assert status == 201, _
    return sha(data)


def manifest(config: bytes, layers: list[bytes], media=OCI_MANIFEST, **extra) -> bytes:
    ctype = "application/vnd.oci.image.config.v1+json" if media == OCI_MANIFEST else \
        "application/vnd.docker.container.image.v1+json"
    doc = {"schemaVersion": 2, "mediaType": media,
           "config": {"mediaType": ctype, "digest": sha(config), "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(x),
                       "size": len(x)} for x in layers], **extra}
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RegistryServer(tmp_path_factory.mktemp("reg") / "root") as srv:
        yield srv


@pytest.fixture
def c(server):
    return Client(server)


def stored_files(server):
    out = set()
    for base in ("blobs", "repositories"):
        for dirpath, _, files in os.walk(server.root / base):
            out |= {os.path.join(dirpath, f) for f in files}
    return out


def test_base_and_chunked_push_then_pull(c, server):
    status, h, body = c("GET", "/v2/")
    assert status == 200 and h["Docker-Distribution-API-Version"] == "registry/2.0"
    layer = os.urandom(300_000)
    status, h, _ = c("POST", "/v2/team/app/blobs/uploads/")
    assert status == 202 and h["Range"] == "0-0"
    loc = h["Location"]
    for start in range(0, len(layer), 100_000):
        chunk = layer[start:start + 100_000]
        status, h, _ = c("PATCH", loc, body=chunk, headers={
            "Content-Range": f"{start}-{start + len(chunk) - 1}", "Content-Type": "application/octet-stream"})
        assert status == 202 and h["Range"] == f"0-{start + len(chunk) - 1}"
        loc = h["Location"]
    status, h, _ = c("GET", loc)
    assert status == 204 and h["Range"] == f"0-{len(layer) - 1}"
    status, h, _ = c("PUT", f"{loc}?digest={sha(layer)}")
    assert status == 201 and h["Docker-Content-Digest"] == sha(layer)
    config = b'{"architecture":"amd64","os":"linux"}'
    push_blob(c, "team/app", config)
    m = manifest(config, [layer])
    status, h, _ = c("PUT", "/v2/team/app/manifests/v1", body=m, headers={"Content-Type": OCI_MANIFEST})
    assert status == 201 and h["Docker-Content-Digest"] == sha(m)
    for ref in ("v1", sha(m)):
        status, h, body = c("GET", f"/v2/team/app/manifests/{ref}")
        assert (status, body, h["Content-Type"], h["Docker-Content-Digest"]) == (200, m, OCI_MANIFEST, sha(m))
    status, h, body = c("HEAD", "/v2/team/app/manifests/v1")
    assert status == 200 and int(h["Content-Length"]) == len(m) and body == b""
    status, h, body = c("GET", f"/v2/team/app/blobs/{sha(layer)}")
    assert status == 200 and body == layer and h["Docker-Content-Digest"] == sha(layer)
    status, h, body = c("GET", f"/v2/team/app/blobs/{sha(layer)}", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == layer[10:20]
    status, h, body = c("HEAD", f"/v2/team/app/blobs/{sha(layer)}")
    assert status == 200 and int(h["Content-Length"]) == len(layer)
    # the blob is not readable through another repository...
    status, _, body = c("GET", f"/v2/other/blobs/{sha(layer)}")
    assert status == 404 and error_code(body) == "BLOB_UNKNOWN"
    # ...until mounted there
    status, h, _ = c("POST", f"/v2/other/blobs/uploads/?mount={sha(layer)}&from=team/app")
    assert status == 201 and h["Location"].endswith(sha(layer))
    assert c("HEAD", f"/v2/other/blobs/{sha(layer)}")[0] == 200
    # a mount of an unknown blob falls back to an upload session
    status, h, _ = c("POST", f"/v2/other/blobs/uploads/?mount={sha(b'nope')}&from=team/app")
    assert status == 202 and "/blobs/uploads/" in h["Location"]
    assert c("DELETE", h["Location"])[0] == 204


def test_docker_manifest_tags_catalog_and_deletes(c):
    config, layer = b'{"os":"linux"}', b"layer-bytes"
    push_blob(c, "lib/x", config)
    push_blob(c, "lib/x", layer)
    m = manifest(config, [layer], media=DOCKER_MANIFEST)
    for tag in ("a", "b", "c", "d"):
        assert c("PUT", f"/v2/lib/x/manifests/{tag}", body=m, headers={"Content-Type": DOCKER_MANIFEST})[0] == 201
    status, h, body = c("GET", "/v2/lib/x/tags/list?n=2")
    assert json.loads(body) == {"name": "lib/x", "tags": ["a", "b"]}
    assert h["Link"] == '</v2/lib/x/tags/list?n=2&last=b>; rel="next"'
    status, h, body = c("GET", "/v2/lib/x/tags/list?n=2&last=b")
    assert json.loads(body)["tags"] == ["c", "d"] and "Link" not in h
    assert json.loads(c("GET", "/v2/lib/x/tags/list?n=0")[2])["tags"] == []
    assert c("GET", "/v2/lib/x/manifests/a")[1]["Content-Type"] == DOCKER_MANIFEST
    assert "lib/x" in json.loads(c("GET", "/v2/_catalog")[2])["repositories"]
    status, h, body = c("GET", "/v2/_catalog?n=1")
    assert len(json.loads(body)["repositories"]) == 1 and 'rel="next"' in h["Link"]
    assert c("DELETE", "/v2/lib/x/manifests/a")[0] == 202
    assert error_code(c("GET", "/v2/lib/x/manifests/a")[2]) == "MANIFEST_UNKNOWN"
    assert c("GET", "/v2/lib/x/manifests/b")[0] == 200
    assert c("DELETE", f"/v2/lib/x/manifests/{sha(m)}")[0] == 202
    assert json.loads(c("GET", "/v2/lib/x/tags/list")[2])["tags"] == []
    assert c("DELETE", f"/v2/lib/x/blobs/{sha(layer)}")[0] == 202
    assert error_code(c("GET", f"/v2/lib/x/blobs/{sha(layer)}")[2]) == "BLOB_UNKNOWN"
    assert error_code(c("GET", "/v2/never/tags/list")[2]) == "NAME_UNKNOWN"
    assert error_code(c("GET", "/v2/never/manifests/latest")[2]) == "NAME_UNKNOWN"


def test_referrers_and_index(c):
    config, layer = b"{}", b"img"
    for blob in (config, layer):
        push_blob(c, "ref/img", blob)
    img = manifest(config, [layer])
    c("PUT", "/v2/ref/img/manifests/latest", body=img, headers={"Content-Type": OCI_MANIFEST})
    subject = {"mediaType": OCI_MANIFEST, "digest": sha(img), "size": len(img)}
    sig = manifest(config, [layer], artifactType="application/vnd.example.sig", subject=subject,
                   annotations={"k": "v"})
    status, h, _ = c("PUT", f"/v2/ref/img/manifests/{sha(sig)}", body=sig, headers={"Content-Type": OCI_MANIFEST})
    assert status == 201 and h["OCI-Subject"] == sha(img)
    sbom = manifest(config, [layer], artifactType="application/spdx+json", subject=subject)
    c("PUT", f"/v2/ref/img/manifests/{sha(sbom)}", body=sbom, headers={"Content-Type": OCI_MANIFEST})
    status, h, body = c("GET", f"/v2/ref/img/referrers/{sha(img)}")
    index = json.loads(body)
    assert status == 200 and h["Content-Type"] == OCI_INDEX and index["mediaType"] == OCI_INDEX
    assert {m["artifactType"] for m in index["manifests"]} == {"application/vnd.example.sig",
                                                               "application/spdx+json"}
    status, h, body = c("GET", f"/v2/ref/img/referrers/{sha(img)}?artifactType=application/spdx%2Bjson")
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [sha(sbom)]
    assert h["OCI-Filters-Applied"] == "artifactType"
    assert json.loads(c("GET", f"/v2/ref/img/referrers/{sha(b'none')}")[2])["manifests"] == []
    c("DELETE", f"/v2/ref/img/manifests/{sha(sig)}")
    assert len(json.loads(c("GET", f"/v2/ref/img/referrers/{sha(img)}")[2])["manifests"]) == 1
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(img), "size": len(img)}]}).encode()
    assert c("PUT", "/v2/ref/img/manifests/multi", body=idx, headers={"Content-Type": OCI_INDEX})[0] == 201
    bad = idx.replace(sha(img).encode(), sha(b"missing").encode())
    assert error_code(c("PUT", "/v2/ref/img/manifests/bad", body=bad,
                        headers={"Content-Type": OCI_INDEX})[2]) == "MANIFEST_BLOB_UNKNOWN"


@pytest.mark.parametrize("case", ["digest_mismatch", "bad_digest", "unknown_upload", "bad_name",
                                  "bad_tag", "range_gap", "size_mismatch", "missing_blob",
                                  "garbage_manifest", "huge_manifest", "ref_digest_mismatch",
                                  "foreign_upload"])
def test_hostile_input_is_refused_and_stores_nothing(c, server, case):
    data = os.urandom(1000)
    # an upload session of another repository, for "foreign_upload"
    other = c("POST", "/v2/someone/else/blobs/uploads/")[1]["Location"]
    before = stored_files(server)
    if case == "digest_mismatch":
        status, _, body = c("POST", f"/v2/h/blobs/uploads/?digest={sha(b'other')}", body=data)
        want = (400, "DIGEST_INVALID")
    elif case == "bad_digest":
        status, _, body = c("POST", "/v2/h/blobs/uploads/?digest=sha256:xyz", body=data)
        want = (400, "DIGEST_INVALID")
    elif case == "unknown_upload":
        status, _, body = c("PATCH", "/v2/h/blobs/uploads/00000000-0000-0000-0000-000000000000", body=data)
        want = (404, "BLOB_UPLOAD_UNKNOWN")
    elif case == "foreign_upload":
        status, _, body = c("PATCH", other.replace("/someone/else/", "/h/"), body=data)
        want = (404, "BLOB_UPLOAD_UNKNOWN")
    elif case == "bad_name":
        status, _, body = c("POST", f"/v2/Upper/Case/blobs/uploads/?digest={sha(data)}", body=data)
        want = (400, "NAME_INVALID")
    elif case == "bad_tag":
        status, _, body = c("PUT", "/v2/h/manifests/-bad", body=b"{}", headers={"Content-Type": OCI_MANIFEST})
        want = (400, "TAG_INVALID")
    elif case == "range_gap":
        loc = c("POST", "/v2/h/blobs/uploads/")[1]["Location"]
        status, h, body = c("PATCH", loc, body=data, headers={"Content-Range": "10-1009"})
        assert h["Range"] == "0-0"
        c("DELETE", loc)
        want = (416, "BLOB_UPLOAD_INVALID")
    elif case == "size_mismatch":
        loc = c("POST", "/v2/h/blobs/uploads/")[1]["Location"]
        status, _, body = c("PATCH", loc, body=data, headers={"Content-Range": "0-9"})
        c("DELETE", loc)
        want = (400, "SIZE_INVALID")
    elif case == "missing_blob":
        status, _, body = c("PUT", "/v2/h/manifests/t", body=manifest(b"{}", [data]),
                            headers={"Content-Type": OCI_MANIFEST})
        want = (400, "MANIFEST_BLOB_UNKNOWN")
    elif case == "garbage_manifest":
        status, _, body = c("PUT", "/v2/h/manifests/t", body=os.urandom(5000),
                            headers={"Content-Type": OCI_MANIFEST})
        want = (400, "MANIFEST_INVALID")
    elif case == "huge_manifest":
        status, _, body = c("PUT", "/v2/h/manifests/t", body=b" " * (5 << 20),
                            headers={"Content-Type": OCI_MANIFEST})
        want = (413, "SIZE_INVALID")
    elif case == "ref_digest_mismatch":
        push_blob(c, "h", b"{}")
        c("DELETE", f"/v2/h/blobs/{sha(b'{}')}")
        before = stored_files(server)
        m = manifest(b"{}", [])
        status, _, body = c("PUT", f"/v2/h/manifests/{sha(b'x')}", body=m, headers={"Content-Type": OCI_MANIFEST})
        want = (400, "DIGEST_INVALID")
    c("DELETE", other)
    assert (status, error_code(body)) == want
    assert stored_files(server) == before


def test_gc_while_serving(c, server, tmp_path):
    push_blob(c, "gc/t", b"orphan")
    old = 1_000_000_000
    from conch.oci.digest import Digest
    from conch.registry.server.storage import Storage
    path = Storage(server.root).blob_path(Digest.parse(sha(b"orphan")))
    os.utime(path, (old, old))
    out = subprocess.run([sys.executable, "-m", "conch.cli.main", "registry", "gc", "--root",
                          str(server.root)], capture_output=True, text=True, check=True).stdout
    assert f"deleted blob {sha(b'orphan')}" in out
    assert not path.exists()
    assert c("HEAD", f"/v2/gc/t/blobs/{sha(b'orphan')}")[0] == 404
    assert c("GET", "/v2/team/app/manifests/v1")[0] == 200  # referenced content survives


# -- auth -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authreg")
    htpasswd = htpasswd_file(tmp / "htpasswd", {"alice": "wonderland"})
    with RegistryServer(tmp / "root", htpasswd=htpasswd, anonymous_pull=True) as srv:
        yield srv


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def token(c, scope, auth=None):
    q = urllib.parse.urlencode({"service": "conch-registry", "scope": scope})
    status, _, body = c("GET", f"/token?{q}", headers={"Authorization": auth} if auth else {})
    return status, (json.loads(body) if status == 200 else body)


def test_auth_token_flow_and_scopes(auth_server):
    anon = Client(auth_server)
    status, h, body = anon("GET", "/v2/")
    assert status == 401 and error_code(body) == "UNAUTHORIZED"
    assert h["WWW-Authenticate"] == (f'Bearer realm="http://{auth_server.host}/token",'
                                     'service="conch-registry"')
    status, h, _ = anon("POST", "/v2/p/blobs/uploads/")
    assert status == 401 and 'scope="repository:p:pull,push"' in h["WWW-Authenticate"]
    assert token(anon, "repository:p:pull", basic("alice", "nope"))[0] == 401
    assert Client(auth_server, basic("alice", "nope"))("GET", "/v2/")[0] == 401

    status, tok = token(anon, "repository:p:pull,push", basic("alice", "wonderland"))
    assert status == 200 and tok["token"] == tok["access_token"] and tok["expires_in"] > 0
    alice = Client(auth_server, f"Bearer {tok['token']}")
    assert alice("GET", "/v2/")[0] == 200
    data = b"secret layer"
    push_blob(alice, "p", data)
    # the token is for repository p only
    status, h, _ = alice("POST", "/v2/q/blobs/uploads/")
    assert status == 401 and 'error="insufficient_scope"' in h["WWW-Authenticate"]
    assert alice("GET", "/v2/_catalog")[0] == 401
    # anonymous pull: a token with pull only, even when push was asked for
    status, tok = token(anon, "repository:p:pull,push")
    assert status == 200
    reader = Client(auth_server, f"Bearer {tok['token']}")
    assert reader("GET", f"/v2/p/blobs/{sha(data)}")[2] == data
    assert reader("POST", "/v2/p/blobs/uploads/")[0] == 401
    assert anon("GET", f"/v2/p/blobs/{sha(data)}")[0] == 200  # direct anonymous pull
    assert anon("GET", "/v2/_catalog")[0] == 401
    # Basic credentials straight on /v2/
    direct = Client(auth_server, basic("alice", "wonderland"))
    assert direct("GET", "/v2/_catalog")[0] == 200
    push_blob(direct, "q", b"q layer")
    tampered = tok["token"][:-2] + ("AA" if not tok["token"].endswith("AA") else "BB")
    status, h, _ = Client(auth_server, f"Bearer {tampered}")("GET", f"/v2/p/blobs/{sha(data)}")
    assert status == 401 and 'error="invalid_token"' in h["WWW-Authenticate"]


def test_tls(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    with RegistryServer(tmp_path / "root", tls=(cert, key)) as srv:
        ctx = ssl.create_default_context(cafile=str(cert))
        status, _, _ = Client(srv, context=ctx)("GET", "/v2/")
        assert status == 200
