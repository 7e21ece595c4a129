"""A real docker credential helper for tests: ``docker-credential-<name>`` written into a
directory the test puts first on PATH.

It is a small Python program (the venv's interpreter in its ``#!`` line) that speaks the
docker-credential-helpers protocol (``store``/``get``/``erase``/``list``, JSON on stdin and
stdout, ``credentials not found in native keychain`` with exit 1 for a missing entry) and
keeps its entries in ``<dir>/<name>-store.json``. Every call is appended to
``<dir>/<name>-calls.log`` as ``<action> <stdin's first line without the secret>`` so a
test can see which helper was asked what. ``CONCHTEST_FAIL`` in the environment (set to an action)
makes that action exit 1 with a message, as a locked keychain would.

Nothing is mocked: the CLI under test finds and runs this program exactly as it would run
docker-credential-pass or -secretservice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

_PROGRAM = r'''#!{python}
import json, os, sys
STORE = {store!r}
LOG = {log!r}
NOT_FOUND = "credentials not found in native keychain"

def load():
    try:
        with open(STORE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {{}}

def save(doc):
    with open(STORE + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(STORE + ".tmp", STORE)

action = sys.argv[1] if len(sys.argv) == 2 else ""
data = sys.stdin.read()
with open(LOG, "a") as f:
    shown = json.loads(data).get("ServerURL", "") if action == "store" else data.strip()
    f.write(f"{{action}} {{shown}}\n")
if os.environ.get("CONCHTEST_FAIL") == action:
    print("the keychain is locked")
    sys.exit(1)
doc = load()
if action == "store":
    creds = json.loads(data)
    doc[creds["ServerURL"]] = {{"Username": creds["Username"], "Secret": creds["Secret"]}}
    save(doc)
elif action == "get":
    url = data.strip()
    if url not in doc:
        print(NOT_FOUND)
        sys.exit(1)
    print(json.dumps({{"ServerURL": url, **doc[url]}}))
elif action == "erase":
    url = data.strip()
    if url not in doc:
        print(NOT_FOUND)
        sys.exit(1)
    del doc[url]
    save(doc)
elif action == "list":
    print(json.dumps({{url: v["Username"] for url, v in doc.items()}}))
else:
    print(f"Usage: {{sys.argv[0]}} <store|get|erase|list|version>")
    sys.exit(1)
'''


class CredentialHelper:
    """``docker-credential-<name>`` in ``bindir`` (see the module docstring)."""

    def __init__(self, bindir: Path, name: str = "conchtest") -> None:
        self.name = name
        self.bindir = Path(bindir)
        self.bindir.mkdir(parents=True, exist_ok=True)
        self.store_path = self.bindir / f"{name}-store.json"
        self.log_path = self.bindir / f"{name}-calls.log"
        self.program = self.bindir / f"docker-credential-{name}"
        self.program.write_text(_PROGRAM.format(python=sys.executable, store=str(self.store_path),
                                                log=str(self.log_path)))
        self.program.chmod(0o755)

    def entries(self) -> dict[str, dict[str, str]]:
        """``{server URL: {"Username", "Secret"}}`` as the helper holds them now."""
        try:
            return json.loads(self.store_path.read_text())
        except FileNotFoundError:
            return {}

    def calls(self) -> list[str]:
        try:
            return self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def path_env(self, env: dict[str, str] | None = None) -> str:
        """A PATH with ``bindir`` first (the rest from ``env`` or ours)."""
        rest = (env if env is not None else os.environ).get("PATH", "")
        return f"{self.bindir}{os.pathsep}{rest}"
