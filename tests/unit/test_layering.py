"""DESIGN.md's layering, kept true by walking every module's imports with ``ast``:
lower never imports higher, the CLI reaches the daemon only through the client, and no
modules import each other (directly or round a longer loop, at module level or inside a
function): ``test_no_import_cycles``.

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


# -- no import cycles ----------------------------------------------------------------------
#
# A module graph over every conch module: an edge for each import statement, wherever it
# stands (a cycle hidden in a function is still a cycle: break it by moving the shared
# piece down, as DESIGN.md says). `from P import n` is an edge to P.n when that is a
# module, else to P. Imports under `if TYPE_CHECKING:` never run and are left out.


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, for the package at ``root``."""
    top = root.name
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                   and node.test.id == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            for target in targets:
                if target != top and not target.startswith(top + "."):
                    continue
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def _describe(graph: dict[str, dict[str, int]], cycles: list[list[str]]) -> str:
    lines = []
    for comp in cycles:
        lines.append("cycle: " + " <-> ".join(comp))
        for a in comp:
            for b, line in sorted(graph[a].items()):
                if b in comp:
                    lines.append(f"    {a.replace('.', '/')}.py:{line} imports {b}")
    return "\n".join(lines)


def test_no_import_cycles():
    graph = import_graph()
    cycles = import_cycles(graph)
    assert not cycles, ("modules importing each other (move the shared piece down to a "
                        "module both may import):\n" + _describe(graph, cycles))


def test_cycle_finder_finds_a_deliberate_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    # the way back hides in a function: still a cycle
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("import pkg.a\nimport os\n")
    # guarded by TYPE_CHECKING (never runs) and one-way: no cycle
    (pkg / "d.py").write_text("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("from pkg.d import TYPE_CHECKING\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub.b"] == {"pkg.c": 2}
    assert import_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert "pkg/sub/b.py:2 imports pkg.c" in _describe(graph, import_cycles(graph))
