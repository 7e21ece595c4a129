"""Credential helpers (``credsStore``/``credHelpers``) in the CLI, with no daemon: a real
helper program (conch.testing.credhelper) on PATH, run by the real code and by the real
``conch`` executable for logout and for pull's credential lookup (which fails before any
request, so no conchd is needed). The round trip through a registry is in
tests/e2e/test_credential_helpers.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conch.cli import credentials
from conch.cli import registry_cmds as cli
from conch.testing.credhelper import CredentialHelper

CONCH = Path(sys.executable).parent / "conch"
SERVER = "127.0.0.1:5999"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """CONCH_CONFIG in tmp, a ``conchtest`` and an ``other`` helper first on PATH."""
    helper = CredentialHelper(tmp_path / "bin")
    other = CredentialHelper(tmp_path / "bin", "other")
    monkeypatch.setenv("CONCH_CONFIG", str(tmp_path / "cfg"))
    monkeypatch.setenv("PATH", helper.path_env())
    monkeypatch.delenv("CONCHTEST_FAIL", raising=False)
    return helper, other


def _write_config(doc: dict) -> Path:
    path = Path(cli.config_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _conch(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, CONCH_HOST="unix:///nonexistent/conchd.sock", **(env_extra or {}))
    return subprocess.run([str(CONCH), *args], env=env, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def test_helper_choice_follows_docker():
    doc = {"credsStore": "store", "credHelpers": {"a.example": "ha", "b.example": ""}}
    assert credentials.helper_for(doc, "a.example") == "ha"   # credHelpers wins
    assert credentials.helper_for(doc, "c.example") == "store"  # else credsStore
    assert credentials.helper_for(doc, "b.example") == ""  # "" there: the file, as docker
    assert credentials.helper_for({}, "a.example") == ""
    assert credentials.helper_for({"credHelpers": {"x": "hx"}}, "a.example") == ""


def test_store_goes_to_the_helper_and_the_file_keeps_only_the_marker(env):
    helper, _ = env
    path = _write_config({"credsStore": "conchtest", "psFormat": "x",
                          "auths": {SERVER: {"auth": base64.b64encode(b"old:plain").decode()}}})
    assert cli.store_credentials(f"http://{SERVER}/", "alice", "s3cret") == SERVER
    doc = json.loads(path.read_text())
    assert doc["auths"] == {SERVER: {}} and doc["psFormat"] == "x"  # the old plain auth is gone
    assert "s3cret" not in path.read_text() and "plain" not in path.read_text()
    assert helper.entries() == {SERVER: {"Username": "alice", "Secret": "s3cret"}}
    assert cli.get_credentials(SERVER) == {
        "username": "alice", "password": "s3cret", "serveraddress": SERVER}
    header = cli.auth_headers(SERVER)["X-Registry-Auth"]
    assert json.loads(base64.urlsafe_b64decode(header))["password"] == "s3cret"
    assert credentials.helper_list("conchtest") == {SERVER: "alice"}
    assert helper.calls()[:2] == [f"store {SERVER}", f"get {SERVER}"]


def test_not_found_in_the_helper_is_anonymous(env):
    _write_config({"credsStore": "conchtest", "auths": {SERVER: {"auth": "dTpw"}}})
    # docker's native store ignores the file's plain auth when a helper is configured
    assert cli.get_credentials(SERVER) is None
    assert cli.auth_headers(SERVER) == {}


def test_cred_helpers_override_creds_store(env):
    helper, other = env
    _write_config({"credsStore": "conchtest", "credHelpers": {SERVER: "other"}})
    cli.store_credentials(SERVER, "bob", "pw-b")
    cli.store_credentials("127.0.0.1:6000", "carol", "pw-c")
    assert other.entries() == {SERVER: {"Username": "bob", "Secret": "pw-b"}}
    assert helper.entries() == {"127.0.0.1:6000": {"Username": "carol", "Secret": "pw-c"}}
    assert cli.get_credentials(SERVER)["password"] == "pw-b"
    assert cli.get_credentials("127.0.0.1:6000")["password"] == "pw-c"
    assert cli.get_credentials("docker.io") is None  # Hub key asked of credsStore's helper
    assert helper.calls()[-1] == f"get {cli.INDEX_SERVER}"


def test_identity_token_is_stored_as_token_username(env):
    helper, _ = env
    _write_config({"credsStore": "conchtest"})
    cli.store_credentials(SERVER, "alice", "", identity_token="refresh-tok")
    assert helper.entries()[SERVER] == {"Username": "<token>", "Secret": "refresh-tok"}
    assert cli.get_credentials(SERVER) == {"username": "", "password": "",
                                           "serveraddress": SERVER, "identitytoken": "refresh-tok"}


def test_identity_token_in_the_file(env):
    path = _write_config({})
    cli.store_credentials(SERVER, "alice", "", identity_token="tok")
    assert json.loads(path.read_text())["auths"][SERVER] == {
        "auth": base64.b64encode(b"alice:").decode(), "identitytoken": "tok"}
    assert cli.get_credentials(SERVER)["identitytoken"] == "tok"


def test_missing_helper_is_an_error_and_nothing_is_written(env):
    path = _write_config({"credsStore": "nope", "auths": {}})
    before = path.read_text()
    with pytest.raises(credentials.HelperError) as err:
        cli.store_credentials(SERVER, "alice", "s3cret")
    assert str(err.value) == ('error storing credentials - err: exec: "docker-credential-nope": '
                              "executable file not found in $PATH, out: ``")
    assert path.read_text() == before  # no fallback into the file
    with pytest.raises(credentials.HelperError, match='error getting credentials - err: exec: '
                       '"docker-credential-nope": executable file not found'):
        cli.get_credentials(SERVER)


def test_failing_helper_reports_its_exit_status_and_output(env, monkeypatch):
    path = _write_config({"credsStore": "conchtest"})
    monkeypatch.setenv("CONCHTEST_FAIL", "store")
    with pytest.raises(credentials.HelperError) as err:
        cli.store_credentials(SERVER, "alice", "s3cret")
    assert str(err.value) == ("error storing credentials - err: exit status 1, "
                              "out: `the keychain is locked`")
    assert "s3cret" not in path.read_text()


def test_pull_with_a_missing_helper_fails_before_any_request(env):
    _write_config({"credHelpers": {SERVER: "missing"}})
    p = _conch("pull", f"{SERVER}/x/y:1")
    assert p.returncode == 1
    assert ('error getting credentials - err: exec: "docker-credential-missing": '
            "executable file not found in $PATH, out: ``") in p.stderr
    p = _conch("push", f"{SERVER}/x/y:1")
    assert p.returncode == 1 and '"docker-credential-missing"' in p.stderr


def test_logout_erases_from_the_helper_and_drops_the_marker(env):
    helper, _ = env
    path = _write_config({"credsStore": "conchtest"})
    cli.store_credentials(SERVER, "alice", "s3cret")
    p = _conch("logout", SERVER)
    assert (p.returncode, p.stdout) == (0, f"Removing login credentials for {SERVER}\n"), p.stderr
    assert helper.entries() == {} and json.loads(path.read_text())["auths"] == {}
    assert helper.calls()[-1] == f"erase {SERVER}"
    p = _conch("logout", SERVER)
    assert p.stdout == f"Not logged in to {SERVER}\n"


def test_logout_when_the_helper_refuses_warns_and_keeps_the_marker(env):
    helper, _ = env
    path = _write_config({"credsStore": "conchtest"})
    cli.store_credentials(SERVER, "alice", "s3cret")
    p = _conch("logout", SERVER, env_extra={"CONCHTEST_FAIL": "erase"})
    # docker's runLogout: the warning, exit 0; its native store keeps the marker
    assert p.returncode == 0, p.stderr
    assert "WARNING: could not erase credentials:" in p.stderr
    assert (f"{SERVER}: error erasing credentials - err: exit status 1, "
            "out: `the keychain is locked`") in p.stderr
    assert json.loads(path.read_text())["auths"] == {SERVER: {}}
    assert SERVER in helper.entries()
