"""HTTPS pull and push end to end: the conch CLI -> a private conchd -> ``conch registry
serve --tls-cert/--tls-key``, with a throwaway CA trusted the normal way.

The CA is trusted through OpenSSL's ``SSL_CERT_FILE`` in conchd's environment only (a
bundle of the host's CAs plus the test CA); the host's /etc/ssl is never touched.

Which registries get a verified HTTPS connection is docker's rule (see
:mod:`conch.registry.client.transport`): HTTPS first for every registry; a loopback
registry (``localhost``, 127.0.0.0/8, ``::1``, or a name resolving to one) is *insecure*,
so its certificate is not verified and plain HTTP is the fallback. To prove certificate
verification the registry must therefore sit at a non-loopback address: the test makes a
network namespace with a veth pair (a free 10.x.y.0/24, host end .1, namespace end .2) and
runs the TLS registry inside it. All traffic stays on this host, between conchd and that
namespace; the namespace (and with it the veth pair) is deleted at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from conch.testing.daemon import busybox_tar, clean_after, daemon_fixture, free_subnet, ok
from conch.testing.registry_server import RegistryServer

# created by the ca_bundle fixture, removed by teardown_module; conchd reads the bundle
# only when a pull or push opens its HTTPS session, so it may appear after conchd starts
WORK = Path("/tmp") / f"conch-tls-{os.getpid()}"
BUNDLE = WORK / "bundle.pem"
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(dest: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (cert, key) made with the openssl CLI."""
    dest.mkdir(parents=True, exist_ok=True)
    cert, key = dest / f"{name}.pem", dest / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN=conch test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(key), "-out", str(cert))
    return cert, key


def make_server_cert(ca: tuple[Path, Path], dest: Path, ips: list[str]) -> tuple[Path, Path]:
    """A server certificate for ``localhost`` and ``ips``, signed by ``ca``."""
    dest.mkdir(parents=True, exist_ok=True)
    cert, key, csr, ext = (dest / "server.pem", dest / "server.key", dest / "server.csr",
                           dest / "ext.cnf")
    sans = ",".join(["DNS:localhost"] + [f"IP:{ip}" for ip in ips])
    ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
                   "subjectKeyIdentifier=hash\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return cert, key


daemon = daemon_fixture(daemon_env={"SSL_CERT_FILE": str(BUNDLE)})


@pytest.fixture(scope="module")
def ca_bundle() -> tuple[Path, Path]:
    """The trusted test CA; BUNDLE = the host's CAs (read, never changed) + that CA."""
    WORK.mkdir(parents=True, exist_ok=True)
    trusted = make_ca(WORK / "trusted", "trusted-ca")
    system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b""
    BUNDLE.write_bytes(system + b"\n" + trusted[0].read_bytes())
    return trusted


@pytest.fixture(scope="module")
def netns():
    """``(name, address)``: a network namespace holding a veth end at ``address`` (a
    free 10.x.y.2/24), reachable from the host through the other end (.1)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    net = ipaddress.ip_network(free_subnet())
    host_ip, ns_ip = str(net.network_address + 1), str(net.network_address + 2)
    tag = os.urandom(3).hex()
    name, host_end, ns_end = f"conch-tls-{tag}", f"tlsh{tag}", f"tlsn{tag}"
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", name],
             ["ip", "addr", "add", f"{host_ip}/24", "dev", host_end],
             ["ip", "link", "set", host_end, "up"],
             ["ip", "-n", name, "addr", "add", f"{ns_ip}/24", "dev", ns_end],
             ["ip", "-n", name, "link", "set", ns_end, "up"],
             ["ip", "-n", name, "link", "set", "lo", "up"]]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        yield name, ns_ip
    finally:
        # deleting the namespace destroys its veth end, and with it the host end
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
    assert subprocess.run(["ip", "link", "show", host_end], capture_output=True).returncode != 0


@pytest.fixture(scope="module")
def trusted_registry(netns, ca_bundle):
    """A TLS registry in the namespace whose certificate the test CA signed."""
    name, ip = netns
    tls = make_server_cert(ca_bundle, WORK / "trusted-server", [ip, "127.0.0.1"])
    with RegistryServer(WORK / "trusted-root", tls=tls, bind=ip, netns=name) as reg:
        yield reg


@pytest.fixture(scope="module")
def rogue_registry(netns, ca_bundle):
    """A TLS registry in the namespace whose certificate a CA nobody trusts signed."""
    name, ip = netns
    ca = make_ca(WORK / "rogue", "rogue-ca")
    tls = make_server_cert(ca, WORK / "rogue-server", [ip, "127.0.0.1"])
    with RegistryServer(WORK / "rogue-root", tls=tls, bind=ip, netns=name) as reg:
        yield reg


@pytest.fixture(scope="module")
def loopback_registry(ca_bundle):
    """A TLS-only registry on 127.0.0.1 whose certificate nobody trusts."""
    ca = make_ca(WORK / "loopback", "loopback-ca")
    tls = make_server_cert(ca, WORK / "loopback-server", ["127.0.0.1"])
    with RegistryServer(WORK / "loopback-root", tls=tls) as reg:
        yield reg


@pytest.fixture
def d(daemon, tmp_path):
    daemon.env["CONCH_CONFIG"] = str(tmp_path / "conch-config")
    if daemon.conch("image", "inspect", "busybox").returncode != 0:
        daemon.import_busybox()
    yield from clean_after(daemon)


def _ingest_empty(d) -> bool:
    ingest = d.data_root / "content" / "ingest"
    return not ingest.exists() or not os.listdir(ingest)


def _push_rmi_pull_run(d, ref: str) -> None:
    d.conch("tag", "busybox", ref, check=True)
    out = ok(d.conch("push", ref))
    digest = out.strip().splitlines()[-1].split()[2]
    assert digest.startswith("sha256:"), out
    d.conch("rmi", ref, check=True)
    d.conch("rmi", "-f", "busybox", check=True)  # the pull must really fetch the layer
    out = ok(d.conch("pull", ref))
    assert "Pull complete" in out and f"Digest: {digest}" in out, out
    assert ok(d.conch("run", "--rm", ref, "echo", "over https")) == "over https\n"
    inspect = json.loads(ok(d.conch("image", "inspect", ref)))[0]
    repo = ref.rpartition(":")[0]
    assert f"{repo}@{digest}" in inspect["RepoDigests"]
    assert _ingest_empty(d)
    d.conch("rmi", ref, check=True)
    d.conch("import", "-c", 'CMD ["sh"]', busybox_tar(), "busybox:latest", check=True, timeout=120)


def test_push_pull_over_https_with_a_trusted_ca(d, trusted_registry):
    """A non-loopback registry: HTTPS only, verified against SSL_CERT_FILE's CAs."""
    _push_rmi_pull_run(d, f"{trusted_registry.host}/tls/busybox:v1")
    # the blobs are in the TLS registry's storage: it really went there
    assert len(list((trusted_registry.root / "blobs").rglob("*/*/*"))) >= 3  # layer, config, manifest


def test_localhost_tries_https_first(d, loopback_registry):
    """``localhost:PORT`` as under dockerd: HTTPS first, certificate not verified
    (a loopback registry is insecure), HTTP only as a fallback. The server speaks TLS
    only, so a working push and pull prove conch used HTTPS."""
    _push_rmi_pull_run(d, f"localhost:{loopback_registry.port}/tls/busybox:v1")


def test_a_loopback_name_from_etc_hosts_is_insecure_as_under_docker(d, loopback_registry):
    """docker resolves a registry's name and treats it as insecure when it resolves to
    127.0.0.0/8: so an untrusted certificate is accepted for it, as for localhost."""
    name = _loopback_alias()
    if name is None:
        pytest.skip("no name other than localhost maps to 127.0.0.0/8 in /etc/hosts")
    ref = f"{name}:{loopback_registry.port}/tls/alias:v1"
    d.conch("tag", "busybox", ref, check=True)
    ok(d.conch("push", ref))
    d.conch("rmi", ref, check=True)


def test_unknown_ca_is_refused(d, rogue_registry):
    """A certificate signed by a CA conchd does not trust: pull and push fail (exit 1)
    with an error about the certificate, no image and no partial ingest are left."""
    ref = f"{rogue_registry.host}/tls/busybox:v1"
    p = d.conch("pull", ref)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "certificate" in p.stderr and rogue_registry.host in p.stderr, p.stderr
    assert "tls: failed to verify certificate" in p.stderr, p.stderr
    assert d.conch("image", "inspect", ref).returncode != 0
    assert _ingest_empty(d)
    d.conch("tag", "busybox", ref, check=True)
    p = d.conch("push", ref)
    assert p.returncode == 1 and "certificate" in p.stderr, (p.stdout, p.stderr)
    d.conch("rmi", ref, check=True)
    # nothing reached the rogue registry's storage
    assert not list(rogue_registry.root.rglob("blobs/*/*/*"))
    assert _ingest_empty(d)


def _loopback_alias() -> str | None:
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split("#")[0].split()
        if len(fields) < 2:
            continue
        try:
            ip = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if ip.version == 4 and ip.is_loopback:
            for name in fields[1:]:
                if name != "localhost" and "." not in name:
                    return name
    return None


def teardown_module(module) -> None:
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)
