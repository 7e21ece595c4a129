"""An idle conchd does not load the registry client, conch.archive or tarfile (issue 3's
idle RSS goal: together ~1.3 MiB of conchd's RSS). They load with the first pull, push,
login, search, unpack, import, cp, export, diff or commit.

The start-up set is read from conch/daemon/main.py itself (every ``from conch... import``
in it: conchd imports them before it serves), plus the modules the engine's constructors
import lazily; a fresh interpreter imports them all and its sys.modules is checked.
"""

import ast
import os
import subprocess
import sys

import conch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(conch.__file__)))
MAIN = os.path.join(REPO, "conch", "daemon", "main.py")

# imported inside the constructors conchd's build_engine calls (Engine, ImagesFacade)
CONSTRUCTED = ("conch.engine.distribution.service", "conch.engine.containers.filesystem")
NOT_AT_IDLE = ("conch.registry.client", "conch.archive", "conch.archive.apply", "tarfile")


def startup_imports() -> list[str]:
    """``from conch... import a, b`` statements of conch/daemon/main.py, as Python source:
    at module level and in its functions, not in functions nested in those (a factory such
    as ``_registries``'s runs at the first pull, not at start-up)."""
    tree = ast.parse(open(MAIN, encoding="utf-8").read())
    out = []

    def visit(node, depth):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if depth == 0:
                    visit(child, 1)
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module and \
                    child.module.startswith("conch"):
                names = ", ".join(a.name for a in child.names)
                out.append(f"from {child.module} import {names}")
            visit(child, depth)

    visit(tree, 0)
    return out


def _modules_after(code: str) -> set[str]:
    script = f"import sys; sys.path.insert(0, {REPO!r})\n{code}\nprint(' '.join(sys.modules))\n"
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(out.stdout.split())


def test_the_startup_set_is_found():
    imports = startup_imports()
    # the composition root and the API are among them: the parse found the real set
    assert "from conch.engine.engine import Engine" in imports
    assert any(i.startswith("from conch.api.server import") for i in imports)


def test_idle_conchd_does_not_load_the_registry_client_archive_or_tarfile():
    code = "\n".join(["import conch.daemon.main", *startup_imports(),
                      *(f"import {m}" for m in CONSTRUCTED),
                      # build_engine's registries factory is made, not called
                      "conch.daemon.main._registries(['10.0.0.0/8'])"])
    loaded = _modules_after(code)
    assert "conch.engine.engine" in loaded and "conch.api.routes_archive" in loaded
    assert [m for m in NOT_AT_IDLE if m in loaded] == []


def test_registries_are_made_at_first_use_with_the_daemons_insecure_list():
    code = (
        "from conch.daemon.main import _registries\n"
        "from conch.engine.distribution.service import Distribution\n"
        "d = Distribution(None, None, _registries(['10.0.0.0/8', 'reg.example:5000']))\n"
        "assert 'conch.registry.client.transport' not in sys.modules\n"
        "r = d.registries\n"
        "assert d.registries is r\n"
        "assert r.is_insecure('10.1.2.3:5000') and r.is_insecure('reg.example:5000')\n"
        "assert not r.is_insecure('docker.io')\n"
        "assert not Distribution(None, None).registries.is_insecure('10.1.2.3')\n"
    )
    assert "conch.registry.client.transport" in _modules_after(code)
