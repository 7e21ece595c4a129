"""shim/runtime/syscall_table.h is tools/gen_seccomp_table.py's output for the current
conch/runtime/syscall_table.py: the C seccomp compiler must skip exactly the syscall
names the Python one skips, or the two would compile different programs."""

import importlib.util
import pathlib

from conch.runtime.syscall_table import BY_ARCH

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_seccomp_table", ROOT / "tools/gen_seccomp_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_header_is_the_generators_output():
    gen = _generator()
    source = (ROOT / "conch/runtime/syscall_table.py").read_text()
    committed = (ROOT / "shim/runtime/syscall_table.h").read_text()
    assert committed == gen.render(source), (
        "regenerate: python3 tools/gen_seccomp_table.py > shim/runtime/syscall_table.h"
    )


def test_generator_reads_the_same_tables_python_imports():
    gen = _generator()
    found = gen.tables((ROOT / "conch/runtime/syscall_table.py").read_text())
    for arch, var in gen.ARCHES:
        assert found[var] == BY_ARCH[arch]
    assert {arch for arch, _ in gen.ARCHES} == set(BY_ARCH)
