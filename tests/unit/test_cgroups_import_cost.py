"""conch.cgroups stays cheap to import: conch-runtime imports it on every container start.

See the note at the top of conch/cgroups/__init__.py. A fresh isolated interpreter
(``-I -S``: no site, no PYTHONPATH, no user modules) imports the package, both managers
and resources; none of the stdlib modules that cost milliseconds may have been loaded.
Timing is not asserted (too noisy for CI); the module list is what keeps it fast.
"""

import os
import subprocess
import sys

import conch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(conch.__file__)))

# dataclasses pulls in inspect (and ast, dis, tokenize...); logging pulls in threading,
# traceback, string; typing is ~2-3 ms alone; signal imports enum (and functools,
# collections).
EXPENSIVE = ("dataclasses", "inspect", "typing", "logging", "re", "textwrap", "string", "signal", "enum")


def _modules_after(code: str) -> set[str]:
    """sys.modules after running ``code`` in a fresh isolated interpreter.

    The probe itself imports nothing (json, for one, would load re).
    """
    script = f"import sys; sys.path.insert(0, {REPO!r})\n{code}\nprint(' '.join(sys.modules))\n"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_package_and_both_managers_loads_nothing_expensive():
    result = _modules_after(
        "import conch.cgroups, conch.cgroups.v1, conch.cgroups.v2, conch.cgroups.resources"
    )
    assert {"conch.cgroups.v1", "conch.cgroups.v2", "conch.cgroups.resources"} <= result
    assert not [name for name in EXPENSIVE if name in result]


def test_building_managers_and_planning_loads_nothing_expensive(tmp_path):
    # The start path beyond import: parse resources, build both managers, plan writes.
    result = _modules_after(
        "from conch.cgroups import load_manager\n"
        "from conch.cgroups.resources import parse_resources\n"
        f"v2 = load_manager({{'version': 2, 'dir': {str(tmp_path / 'c')!r}, 'mountpoint': {str(tmp_path)!r}}})\n"
        f"v1 = load_manager({{'version': 1, 'dirs': {{'memory': {str(tmp_path / 'm')!r}, 'pids': {str(tmp_path / 'p')!r}}}}})\n"
        "res = parse_resources({'memory': {'limit': 1 << 26, 'swappiness': -1}, 'pids': {'limit': 5}})\n"
        "plan = v2.plan(res) + v1.plan(res.replace(memory=None))\n"
        "assert [w.name for w in plan] == ['memory.max', 'pids.max', 'pids.max'], plan"
    )
    assert not [name for name in EXPENSIVE if name in result]


def test_manager_protocol_is_still_importable_from_the_package():
    from conch.cgroups import Manager
    from conch.cgroups.protocol import Manager as Defined

    assert Manager is Defined
    import conch.cgroups

    assert conch.cgroups.Manager is Defined
    try:
        conch.cgroups.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("module __getattr__ must raise AttributeError for unknown names")
