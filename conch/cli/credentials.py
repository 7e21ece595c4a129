"""Docker credential helpers: ``credsStore`` / ``credHelpers`` in config.json, as the docker
CLI reads them (docker/cli ``cli/config/configfile`` and ``credentials/native_store.go``).

Choice of store for a registry key (``server_key``: ``host[:port]``, or
``https://index.docker.io/v1/`` for Docker Hub): ``credHelpers[key]`` when the key is there
(an empty name there means "the file", as docker's map lookup does), else ``credsStore``,
else the file's ``auths``. :func:`helper_for` returns that name, ``""`` for the file.

The helper protocol (docker/docker-credential-helpers): the program
``docker-credential-<name>`` on PATH is run with one argument, its stdout captured and its
stderr passed through to ours.

- ``store``: stdin ``{"ServerURL", "Username", "Secret"}`` JSON;
- ``get``: stdin the server URL; stdout ``{"ServerURL", "Username", "Secret"}``; a missing
  credential is exit status 1 with ``credentials not found in native keychain`` on stdout,
  which is "not logged in", not an error;
- ``erase``: stdin the server URL;
- ``list``: stdout ``{"<server URL>": "<username>"}``.

Username ``<token>`` means the secret is an identity token, not a password.

Any other failure (program missing from PATH, non-zero exit) raises :class:`HelperError`
whose text is docker's: ``error getting credentials - err: exec: "docker-credential-x":
executable file not found in $PATH, out: ```` and the like. Nothing here ever falls back
to writing a secret into config.json. ``subprocess`` is imported only when a helper runs:
the CLI's import path stays lean.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from conch.cli.main import CommandError

PREFIX = "docker-credential-"
NOT_FOUND = "credentials not found in native keychain"
TOKEN_USERNAME = "<token>"


class HelperError(CommandError):
    """A credential helper could not be run or failed; the text is docker's wording."""


def helper_for(doc: dict[str, Any], key: str) -> str:
    """The helper name that holds ``key``'s credentials, or ``""`` for config.json itself."""
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict) and key in helpers:
        name = helpers[key]
        return name if isinstance(name, str) else ""
    store = doc.get("credsStore")
    return store if isinstance(store, str) else ""


def _run(name: str, action: str, stdin: str) -> tuple[int, str, str]:
    """Run ``docker-credential-<name> <action>``: (exit status, stdout, error text).

    The error text is Go's ``exec.Cmd`` error as docker prints it ("exit status N", or
    the exec failure), empty on success.
    """
    import subprocess

    program = PREFIX + name
    try:
        proc = subprocess.run([program, action], input=stdin.encode(), stdout=subprocess.PIPE,
                              check=False)
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        # Go's exec.LookPath skips non-executables too, so both read the same.
        return -1, "", f'exec: "{program}": executable file not found in $PATH'
    except OSError as exc:
        return -1, "", f"fork/exec {program}: {exc.strerror or exc}"
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode == 0:
        return 0, out, ""
    if proc.returncode < 0:
        import signal

        # Go's wording: "signal: killed" (strsignal, lower case)
        what = signal.strsignal(-proc.returncode) or str(-proc.returncode)
        return proc.returncode, out, f"signal: {what.lower()}"
    return proc.returncode, out, f"exit status {proc.returncode}"


def helper_store(name: str, server: str, username: str, secret: str,
                 identity_token: str = "") -> None:
    """Hand ``server``'s credentials to the helper (an identity token as ``<token>``)."""
    if identity_token:
        username, secret = TOKEN_USERNAME, identity_token
    body = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    _, out, err = _run(name, "store", body + "\n")
    if err:
        raise HelperError(f"error storing credentials - err: {err}, out: `{out}`")


def helper_get(name: str, server: str) -> dict[str, str] | None:
    """``{"username", "password", "serveraddress"[, "identitytoken"]}`` or None when the
    helper has nothing for ``server``."""
    _, out, err = _run(name, "get", server)
    if err:
        if out == NOT_FOUND:
            return None
        raise HelperError(f"error getting credentials - err: {err}, out: `{out}`")
    try:
        doc = json.loads(out)
    except ValueError as exc:
        raise HelperError(f"error getting credentials - err: {PREFIX}{name} printed "
                          f"invalid JSON: {exc}, out: `{out[:200]}`") from exc
    if not isinstance(doc, dict):
        raise HelperError(f"error getting credentials - err: {PREFIX}{name} printed "
                          f"no JSON object, out: `{out[:200]}`")
    username, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
    if username == TOKEN_USERNAME:
        return {"username": "", "password": "", "serveraddress": server,
                "identitytoken": secret}
    return {"username": username, "password": secret, "serveraddress": server}


def helper_erase(name: str, server: str) -> None:
    """Remove ``server``'s credentials from the helper (HelperError when it refuses)."""
    _, out, err = _run(name, "erase", server)
    if err:
        if out == NOT_FOUND:  # nothing to erase is what logout wants (docker warns here)
            return
        raise HelperError(f"error erasing credentials - err: {err}, out: `{out}`")


def helper_list(name: str) -> dict[str, str]:
    """``{server URL: username}`` of everything the helper holds."""
    _, out, err = _run(name, "list", "")
    if err:
        raise HelperError(f"error listing credentials - err: {err}, out: `{out}`")
    try:
        doc = json.loads(out or "{}")
    except ValueError as exc:
        raise HelperError(f"error listing credentials - err: {exc}, out: `{out[:200]}`") from exc
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
