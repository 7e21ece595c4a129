"""Registry verbs: pull, push, login, logout (docker/cli's ``image pull/push``,
``registry login/logout``), plus the credentials file and progress display they share.

Credentials live in ``~/.conch/config.json`` (``$CONCH_CONFIG/config.json`` when set), in
docker's format: ``{"auths": {"<server>": {"auth": base64("user:pass")}}}``; other keys of
the file are kept. The file is written atomically (temp file, fsync, rename) with mode
0600. Docker Hub's key is ``https://index.docker.io/v1/``, as docker's; other registries
are keyed by ``host[:port]``. Requests carry them as ``X-Registry-Auth``: base64url of the
JSON AuthConfig (``username``, ``password``, ``serveraddress``, ``identitytoken``).

Credential helpers (``conch.cli.credentials``): when ``credHelpers`` names a helper for the
registry, or ``credsStore`` one for all, the secret lives only in that helper; the file then
keeps just the marker ``"auths": {"<server>": {}}`` (docker's native store), written after
the helper took the secret and removed on logout. A failing helper is an error, never a
reason to write the password into the file.

Progress (docker's ``jsonmessage.DisplayJSONMessagesStream``): on a terminal each layer
id owns a line that is redrawn in place (cursor up, clear, rewrite, cursor down), with
the progress bar; when stdout is not a terminal, plain lines, without the progress bars.
"""

from __future__ import annotations

import base64
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

from conch import errors
from conch.cli import credentials
from conch.cli.main import CommandError, Context

INDEX_SERVER = "https://index.docker.io/v1/"
_HUB_NAMES = ("index.docker.io", "docker.io", "registry-1.docker.io")


# --- credentials ----------------------------------------------------------------------


def config_path() -> str:
    base = os.environ.get("CONCH_CONFIG") or os.path.join(os.path.expanduser("~"), ".conch")
    return os.path.join(base, "config.json")


def load_config(path: str | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise CommandError(f"Error: loading config file {path}: {exc}") from exc
    return doc if isinstance(doc, dict) else {}


def save_config(doc: dict[str, Any], path: str | None = None) -> None:
    """Write ``doc`` atomically with mode 0600 (it holds passwords)."""
    path = path or config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(doc, indent="\t") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def server_key(server: str) -> str:
    """The ``auths`` key for a server address or registry domain (docker's)."""
    s = server.strip()
    for prefix in ("https://", "http://"):
        s = s.removeprefix(prefix)
    host = s.split("/", 1)[0]
    if not host or host in _HUB_NAMES:
        return INDEX_SERVER
    return host


def get_credentials(server: str, doc: dict[str, Any] | None = None) -> dict[str, str] | None:
    """``{"username", "password", "serveraddress"[, "identitytoken"]}`` stored for
    ``server`` (in its helper, or the file), or None. HelperError when the helper fails."""
    doc = load_config() if doc is None else doc
    key = server_key(server)
    helper = credentials.helper_for(doc, key)
    if helper:
        return credentials.helper_get(helper, key)
    entry = (doc.get("auths") or {}).get(key)
    if not isinstance(entry, dict) or not (entry.get("auth") or entry.get("identitytoken")):
        return None
    try:
        user, _, password = base64.b64decode(entry.get("auth") or "").decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    creds = {"username": user, "password": password, "serveraddress": key}
    if entry.get("identitytoken"):
        creds["identitytoken"] = str(entry["identitytoken"])
    return creds


def store_credentials(server: str, username: str, password: str,
                      identity_token: str = "") -> str:
    """Store ``server``'s credentials in its helper (the file gets the ``{}`` marker only,
    and only once the helper took them) or in the file. Returns the ``auths`` key."""
    doc = load_config()
    key = server_key(server)
    helper = credentials.helper_for(doc, key)
    if helper:
        credentials.helper_store(helper, key, username, password, identity_token)
        doc.setdefault("auths", {})[key] = {}
    else:
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        if identity_token:  # docker keeps "user:" in auth and the token beside it
            entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(),
                     "identitytoken": identity_token}
        doc.setdefault("auths", {})[key] = entry
    save_config(doc)
    return key


def erase_credentials(key: str, doc: dict[str, Any]) -> None:
    """Remove ``key`` from its helper, then from the file's ``auths`` (docker's order: a
    helper that refuses leaves the marker, so the user can retry)."""
    helper = credentials.helper_for(doc, key)
    if helper:
        credentials.helper_erase(helper, key)
    (doc.get("auths") or {}).pop(key, None)


def encode_auth(config: dict[str, str]) -> str:
    """``X-Registry-Auth``: base64url of the JSON AuthConfig (docker's encoding)."""
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def auth_headers(domain: str) -> dict[str, str]:
    creds = get_credentials(domain)
    return {"X-Registry-Auth": encode_auth(creds)} if creds else {}


# --- progress -------------------------------------------------------------------------


class ProgressDisplay:
    """Draws a jsonmessage stream (see the module docstring)."""

    def __init__(self, out, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.ids: dict[str, int] = {}
        self.aux: list[dict[str, Any]] = []

    def show(self, msg: dict[str, Any]) -> None:
        if msg.get("error") or msg.get("errorDetail"):
            raise errors.ConchError(msg.get("error") or msg["errorDetail"].get("message", ""))
        if msg.get("aux"):
            self.aux.append(msg["aux"])
            return
        ident, status = msg.get("id", ""), msg.get("status", "")
        text = f"{ident}: {status}" if ident else status
        if not self.tty:
            if not msg.get("progress"):
                self.out.write(text + "\n")
            return
        if msg.get("progress"):
            text += " " + msg["progress"]
        if not ident:
            self.out.write(f"\x1b[2K\r{text}\n")
        else:
            if ident not in self.ids:
                self.ids[ident] = len(self.ids)
                self.out.write("\n")
            diff = len(self.ids) - self.ids[ident]
            self.out.write(f"\x1b[{diff}A\x1b[2K\r{text}\r\x1b[{diff}B")
        self.out.flush()

    def run(self, messages: Iterable[dict[str, Any]]) -> None:
        for msg in messages:
            self.show(msg)


def _is_tty(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def _stream(ctx: Context, path: str, params: dict[str, Any], headers: dict[str, str]):
    resp = ctx.client.request("POST", path, params=params, headers=headers)
    return ctx.client.stream_json("POST", path, response=resp)


# --- verbs ----------------------------------------------------------------------------


def cmd_pull(ctx: Context, argv: list[str]) -> int:
    from conch.oci.reference import Reference

    p = ctx.parser("[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry")
    p.add_argument("-a", "--all-tags", action="store_true", help="Download all tagged images in the repository")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    ns = p.parse(argv)
    try:
        bare = Reference.parse(ns.name, default_tag=False)
    except errors.ConchError as exc:
        raise CommandError(f"Error: {exc}") from exc
    if ns.all_tags and (bare.tag or bare.digest is not None):
        raise CommandError("Error: tag can't be used with --all-tags/-a")
    ref = bare if ns.all_tags else Reference.parse(ns.name)
    if not ns.quiet and not ns.all_tags and not bare.tag and bare.digest is None:
        ctx.out("Using default tag: latest")
    params: dict[str, Any] = {"fromImage": ref.name,
                              "tag": str(ref.digest) if ref.digest is not None else ref.tag}
    if ns.platform:
        params["platform"] = ns.platform
    messages = _stream(ctx, "/images/create", params, auth_headers(ref.domain))
    display = ProgressDisplay(ctx.stdout, _is_tty(ctx.stdout))
    if ns.quiet:
        for msg in messages:
            if msg.get("error") or msg.get("errorDetail"):
                display.show(msg)
    else:
        display.run(messages)
    ctx.out(str(ref))
    return 0


def cmd_push(ctx: Context, argv: list[str]) -> int:
    from conch.oci.reference import Reference

    p = ctx.parser("[OPTIONS] NAME[:TAG]", "Upload an image to a registry")
    p.add_argument("-a", "--all-tags", action="store_true", help="Push all tags of an image to the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name", metavar="NAME[:TAG]")
    ns = p.parse(argv)
    try:
        bare = Reference.parse(ns.name, default_tag=False)
    except errors.ConchError as exc:
        raise CommandError(f"Error: {exc}") from exc
    if ns.all_tags and bare.tag:
        raise CommandError("Error: tag can't be used with --all-tags/-a")
    tag = "" if ns.all_tags else (bare.tag or "latest")
    if not ns.all_tags and not bare.tag and not ns.quiet:
        ctx.out("Using default tag: latest")
    from urllib.parse import quote

    messages = _stream(ctx, f"/images/{quote(bare.name, safe='/:@')}/push", {"tag": tag},
                       {"X-Registry-Auth": encode_auth(get_credentials(bare.domain) or {})})
    display = ProgressDisplay(ctx.stdout, _is_tty(ctx.stdout))
    if ns.quiet:
        for msg in messages:
            if msg.get("error") or msg.get("errorDetail"):
                display.show(msg)
        ctx.out(str(bare.with_tag(tag)) if tag else bare.name)
    else:
        display.run(messages)
    return 0


def cmd_login(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] [SERVER]", "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.")
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password or Personal Access Token (PAT)")
    p.add_argument("--password-stdin", action="store_true", help="Take the Password or Personal Access Token (PAT) from stdin")
    p.add_argument("server", nargs="?", metavar="SERVER")
    ns = p.parse(argv)
    server = ns.server or INDEX_SERVER
    key = server_key(server)
    password = ns.password
    if ns.password is not None:
        ctx.err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
        if ns.password_stdin:
            raise CommandError("Error: --password and --password-stdin are mutually exclusive")
    if ns.password_stdin:
        if not ns.username:
            raise CommandError("Error: Must provide --username with --password-stdin")
        password = ctx.stdin.read().rstrip("\r\n")
    username = ns.username
    if username is None and password is None:
        try:
            stored = get_credentials(key)
        except credentials.HelperError:
            stored = None  # as docker: a helper that cannot answer means "ask"
        if stored is not None:
            try:
                _auth(ctx, stored)
                ctx.out("Authenticating with existing credentials...")
                ctx.out("Login Succeeded")
                return 0
            except errors.ConchError:
                pass
    if not username:
        ctx.stdout.write("Username: ")
        ctx.stdout.flush()
        username = ctx.stdin.readline().strip()
        if not username:
            raise CommandError("Error: Username is required")
    if password is None:
        import getpass

        password = getpass.getpass("Password: ") if _is_tty(ctx.stdin) else ctx.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("Error: Password is required")
    resp = _auth(ctx, {"username": username, "password": password, "serveraddress": key})
    token = str(resp.get("IdentityToken") or "")
    try:  # docker keeps an identity token instead of the password when the daemon gives one
        store_credentials(key, username, "" if token else password, token)
    except credentials.HelperError as exc:
        raise CommandError(f"Error saving credentials: {exc}") from exc
    if not credentials.helper_for(load_config(), key):
        ctx.err(f"WARNING! Your credentials are stored unencrypted in '{config_path()}'.")
    ctx.out("Login Succeeded")
    return 0


def _auth(ctx: Context, config: dict[str, str]) -> dict[str, Any]:
    return ctx.client.post("/auth", config) or {}


def cmd_logout(ctx: Context, argv: list[str]) -> int:
    """docker's ``runLogout``: logged in means a key (or its old ``http(s)://`` spelling) in
    ``auths`` (with a helper that is the marker); each is erased from its store; when every
    erase fails, a warning and exit 0, and the markers stay (docker's behaviour)."""
    p = ctx.parser("[SERVER]", "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.")
    p.add_argument("server", nargs="?", metavar="SERVER")
    ns = p.parse(argv)
    key = server_key(ns.server or INDEX_SERVER)
    doc = load_config()
    auths = doc.get("auths") or {}
    spellings = [key] if key == INDEX_SERVER else [key, f"http://{key}", f"https://{key}"]
    present = [s for s in spellings if s in auths]
    if not present:
        ctx.out(f"Not logged in to {key}")
        return 0
    ctx.out(f"Removing login credentials for {key}")
    failures = []
    for spelling in present:
        try:
            erase_credentials(spelling, doc)
        except credentials.HelperError as exc:
            failures.append(f"{spelling}: {exc}")
    if len(failures) < len(present):
        save_config(doc)
    else:
        ctx.err("WARNING: could not erase credentials:")
        for line in failures:
            ctx.err(line)
    return 0
