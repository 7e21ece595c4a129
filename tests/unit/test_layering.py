"""DESIGN.md's layering, kept true by walking every module's imports with ``ast``:
lower never imports higher, and the CLI reaches the daemon only through the client.

    0  errors, oci, kernel, metadata
    1  content, snapshots, archive, cgroups, runtime, shim
    2  images, registry, network, volumes, build
    3  engine
    4  api
    5  daemon
    cli -> client (+ errors, oci, compose for `conch compose`);  client -> errors, oci;
    compose -> client, errors, oci (+ the pure .dockerignore matcher);  testing: anything
    cli -> kube (for `conch kube`, lazily);  kube -> client, errors, oci
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "conch"

LAYER = {
    "errors": 0, "oci": 0, "kernel": 0, "metadata": 0,
    "content": 1, "snapshots": 1, "archive": 1, "cgroups": 1, "runtime": 1, "shim": 1,
    "images": 2, "registry": 2, "network": 2, "volumes": 2, "build": 2,
    "engine": 3, "api": 4, "daemon": 5,
}
CLI_ALLOWED = {"cli", "client", "errors", "oci", "compose", "kube"}
COMPOSE_ALLOWED = {"compose", "client", "errors", "oci"}  # like the CLI: only the API
KUBE_ALLOWED = {"kube", "client", "errors", "oci"}  # conch kube: likewise
CLI_BUILD_MATCHER = "conch.build.dockerignore"  # pure: `conch build` filters its context
CLIENT_ALLOWED = {"client", "errors", "oci"}  # oci: pure codecs (its fastjson)


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def violations():
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        pkg = _package(path)
        if pkg in ("testing", "__init__"):
            continue
        for name, line in _imports(path):
            if not name.startswith("conch."):
                continue
            target = name.split(".")[1]
            where = f"{path.relative_to(ROOT.parent)}:{line} imports {name}"
            if pkg == "cli":
                if target not in CLI_ALLOWED and name != CLI_BUILD_MATCHER:
                    out.append(where + " (the CLI talks to conchd only through conch.client)")
            elif pkg == "compose":
                if target not in COMPOSE_ALLOWED and name != CLI_BUILD_MATCHER:
                    out.append(where + " (conch compose talks to conchd only through conch.client)")
            elif pkg == "kube":
                if target not in KUBE_ALLOWED:
                    out.append(where + " (conch kube talks to conchd only through conch.client)")
            elif pkg == "client":
                if target not in CLIENT_ALLOWED:
                    out.append(where + " (the client knows only the API)")
            elif target == "testing":
                out.append(where + " (library code must not import test helpers)")
            elif pkg in LAYER and target in LAYER and LAYER[target] > LAYER[pkg]:
                out.append(where + f" (layer {LAYER[pkg]} must not import layer {LAYER[target]})")
    return out


def test_lower_layers_never_import_higher_ones():
    assert violations() == []


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    unknown = packages - set(LAYER) - {"cli", "client", "compose", "kube", "testing"}
    assert not unknown, f"give these packages a layer in this test and DESIGN.md: {unknown}"
