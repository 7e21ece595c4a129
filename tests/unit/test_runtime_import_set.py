"""conch-runtime's import sets: what each verb loads is part of its start-up cost.

Every container start execs the runtime cold (containerd and podman as well as conch's
shim) and pays each module it imports (issue 16: no slower than runc). A fresh isolated
interpreter (``-I -S``, as the launcher runs it) runs a verb or imports a path's
modules, and sys.modules is checked against what that path is meant to load, so a new
import on a hot path fails here instead of costing milliseconds unnoticed:

* the launcher's first import (``conch.runtime.main``) loads no ``os``: the cgroup
  pre-arming thread starts before it (see ``main.run``);
* ``state``, ``start`` and ``delete`` in their common case (``fastpath``) load exactly
  :data:`FAST_PATH` beyond the interpreter's own start-up modules: no ``os``;
* ``create``/``run`` load none of :data:`EXPENSIVE` (``ctypes`` among them: the libc
  binding is on ``_ctypes``) and no conch module outside :data:`CREATE_PATH`.

No root needed: the fast-path verbs run on records written here, with a live process of
this test standing in for a container's init.
"""

import json
import os
import subprocess
import sys
import time

import conch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(conch.__file__)))

FAST_PATH = {
    "conch", "conch.errors", "conch.oci", "conch.oci.fastjson", "conch.runtime",
    "conch.runtime.main", "conch.runtime.state", "conch.runtime.fastpath", "_json",
}
# modules that cost milliseconds (ctypes: ~2 ms; json/re/enum/typing/dataclasses...: more)
EXPENSIVE = (
    "ctypes", "struct", "json", "re", "enum", "signal", "typing", "dataclasses", "inspect",
    "logging", "socket", "subprocess", "threading", "shutil", "tempfile", "__future__",
    "collections", "functools", "selectors", "argparse", "locale", "traceback",
)
CREATE_PATH = {
    "conch", "conch.errors", "conch.oci", "conch.oci.fastjson",
    "conch.kernel", "conch.kernel.libc", "conch.kernel.prctl", "conch.kernel.namespaces",
    "conch.kernel.mount", "conch.kernel.capabilities",
    "conch.cgroups", "conch.cgroups.fs", "conch.cgroups.record", "conch.cgroups.resources",
    "conch.cgroups.v1", "conch.cgroups.v2",
    "conch.runtime", "conch.runtime.main", "conch.runtime.prearm", "conch.runtime.commands",
    "conch.runtime.state", "conch.runtime.config", "conch.runtime.create",
    "conch.runtime.init", "conch.runtime.process", "conch.runtime.rootfs",
    "conch.runtime.sync", "conch.runtime.fastpath",
}


def _loaded(code: str, *, env: dict | None = None) -> tuple[set[str], str]:
    """Modules a fresh ``-I -S`` interpreter loaded for ``code`` beyond its own start-up,
    and what ``code`` printed. The probe itself imports nothing (it writes with posix)."""
    script = (
        "import sys\nbase = set(sys.modules)\n"
        f"sys.path.insert(0, {REPO!r})\n{code}\n"
        "import posix\n"
        "posix.write(2, ('MODULES ' + ' '.join(sorted(set(sys.modules) - base))).encode())\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    modules = proc.stderr.rsplit("MODULES ", 1)[1].split()
    return {m for m in modules if m != "posix"}, proc.stdout


def _verb(root, *args: str) -> str:
    return (f"sys.argv = ['conch-runtime', '--root', {str(root)!r}, *{list(args)!r}]\n"
            "from conch.runtime import main\n"
            "code = main.main()\n"
            "assert code == 0, code\n")


def _process_start(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def _record(root, cid: str, **fields) -> str:
    d = root / cid
    d.mkdir(parents=True)
    state = {"id": cid, "bundle": "/nonexistent/bundle", "pid": 0, "pid_start": 0,
             "created": "2026-01-01T00:00:00.000000000Z", "status": "created",
             "annotations": {}, "cgroup": None, "creator_pid": 0, "rootfs": "",
             "config_path": "/nonexistent/bundle/config.json", "owner": "", "hooks": []}
    state.update(fields)
    (d / "state.json").write_text(json.dumps(state))
    return str(d)


def test_the_launchers_first_import_loads_no_os():
    loaded, _ = _loaded("import conch.runtime.main")
    assert loaded == {"conch", "conch.runtime", "conch.runtime.main"}


def test_state_and_delete_of_a_stopped_container_take_the_fast_path(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _record(tmp_path, "c1", pid=dead.pid, pid_start=1, status="running")
    loaded, out = _loaded(_verb(tmp_path, "state", "c1"))
    assert loaded == FAST_PATH
    assert json.loads(out) == {"ociVersion": "1.2.0", "id": "c1", "status": "stopped",
                               "bundle": "/nonexistent/bundle", "pid": 0}
    loaded, _ = _loaded(_verb(tmp_path, "delete", "c1"))
    assert loaded == FAST_PATH
    assert not (tmp_path / "c1").exists()


def test_start_of_a_created_container_takes_the_fast_path(tmp_path):
    # a stand-in init: blocks opening exec.fifo for writing, writes its byte, then waits
    fifo = tmp_path / "c2" / "exec.fifo"
    _record(tmp_path, "c2")
    os.mkfifo(fifo, 0o622)
    init = subprocess.Popen([sys.executable, "-c",
                             f"f = open({str(fifo)!r}, 'wb', buffering=0); f.write(b'0');"
                             "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while True:  # its start time is what the record must match
            try:
                start = _process_start(init.pid)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        _record_update(tmp_path / "c2" / "state.json", pid=init.pid, pid_start=start)
        loaded, out = _loaded(_verb(tmp_path, "state", "c2"))
        assert loaded == FAST_PATH and json.loads(out)["status"] == "created"
        loaded, _ = _loaded(_verb(tmp_path, "start", "c2"))
        assert loaded == FAST_PATH | {"select"}
        assert not fifo.exists()
        assert json.loads((tmp_path / "c2" / "state.json").read_text())["status"] == "running"
        loaded, out = _loaded(_verb(tmp_path, "state", "c2"))
        assert loaded == FAST_PATH and json.loads(out)["status"] == "running"
    finally:
        init.kill()
        init.wait()


def _record_update(path, **fields) -> None:
    state = json.loads(path.read_text())
    state.update(fields)
    path.write_text(json.dumps(state))


def test_unusual_cases_run_the_general_verb(tmp_path):
    # a record of an older runtime (no "hooks"): config.json may have poststop hooks
    dead = subprocess.Popen(["true"])
    dead.wait()
    d = _record(tmp_path, "c3", pid=dead.pid, pid_start=1, status="running")
    state = json.loads((tmp_path / "c3" / "state.json").read_text())
    del state["hooks"]
    (tmp_path / "c3" / "state.json").write_text(json.dumps(state))
    loaded, _ = _loaded(_verb(tmp_path, "delete", "c3"))
    assert "conch.runtime.commands" in loaded
    assert not os.path.exists(d)


def test_create_and_run_load_nothing_expensive():
    # what create/run import, in the order they do; preload is what the parent does
    # for its children before forking (libc loaded, the last capability read)
    loaded, _ = _loaded(
        "from conch.runtime import main, prearm, commands, create, init\n"
        "from conch.kernel import prctl\n"
        "import conch.cgroups, conch.cgroups.v1, conch.cgroups.v2, conch.cgroups.resources\n"
        "init.preload({'linux': {}}, {})\n"
    )
    assert not [m for m in EXPENSIVE if m in loaded]
    assert not {m for m in loaded if m.startswith("conch")} - CREATE_PATH
