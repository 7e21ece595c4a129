"""Issue 17: no ``conch`` command ever answers a user error with a Python traceback.

Every verb of the CLI (taken from conch.cli.main's tables, so a new verb is covered the day
it is added) is run as a real subprocess with malformed inputs:

* a flag it does not have, and ``--help``;
* no daemon at the socket; a server that hangs up after reading the request; one that
  answers half a response and closes (the daemon dying mid-request, client side); one that
  speaks no HTTP; one that answers 500 — these are fake unix-socket servers in this process,
  so no conchd is started or killed here;
* bad flag values and bad ``--format`` templates (against the fake engine's real API app).

Each must end with a one-line-ish error (no "Traceback"), within its timeout, with docker's
exit code: the docker CLI (``/usr/local/bin/docker``) is run with the same argv against the
same server, and when it knows the verb the codes must agree."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conch.cli.main import NOUNS, VERBS
from conch.testing.daemon import BIN, DOCKER

CONCH = str(BIN / "conch")
if not os.access(CONCH, os.X_OK):
    pytest.skip(f"conch is not installed in this venv ({BIN}); run `make setup`", allow_module_level=True)

# positional arguments that get a verb as far as its first request
ARGS: dict[str, list[str]] = {
    "run": ["busybox", "true"], "create": ["busybox"], "exec": ["c1", "true"],
    "rename": ["c1", "c2"], "cp": ["c1:/etc/hostname", "-"], "commit": ["c1", "img:tag"],
    "tag": ["busybox", "b2"], "import": ["-"], "load": ["-i", "/nonexistent.tar"],
    "save": ["-o", "/dev/null", "busybox"], "build": ["."], "login": ["-u", "u", "--password-stdin", "reg.invalid"],
    "logout": ["reg.invalid"], "pull": ["busybox"], "push": ["busybox"], "port": ["c1"],
    "update": ["--cpus", "1", "c1"], "connect": ["n1", "c1"], "disconnect": ["n1", "c1"],
    "events": ["--since", "0", "--until", "1"], "stats": ["--no-stream"], "logs": ["c1"],
    "history": ["busybox"], "wait": ["c1"], "top": ["c1"], "attach": ["--no-stdin", "c1"],
    "ps": [], "images": [], "ls": [], "list": [], "version": [], "info": [], "df": [],
    "prune": ["-f"], "gc": ["/nonexistent-registry-dir"], "generate": ["c1"], "play": ["/nonexistent.yaml"],
    "inspect": ["c1"], "diff": ["c1"], "export": ["-o", "/dev/null", "c1"],
}
SKIP = {("registry", "serve")}  # a server: it would serve, not fail


def _commands() -> list[list[str]]:
    out = [[v] for v in VERBS if v not in NOUNS]
    for noun, subs in NOUNS.items():
        out += [[noun, s] for s in subs if (noun, s) not in SKIP]
    return out


COMMANDS = _commands()


def _argv(cmd: list[str]) -> list[str]:
    return [*cmd, *ARGS.get(cmd[-1], ["x1"])]


# -- fake servers -----------------------------------------------------------------------------


class FakeServer:
    """A unix socket that answers every request the same broken way (``mode``)."""

    def __init__(self, path: Path, mode: str):
        self.path, self.mode = str(path), mode
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"fake-{mode}")
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            if self.mode == "truncated":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Api-Version: 1.50\r\nContent-Length: 4096\r\n\r\n[{\"Id\": \"abc")
            elif self.mode == "garbage":
                conn.sendall(b"this is not HTTP\r\n\r\n")
            elif self.mode == "error500":
                body = b'{"message":"boom"}'
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                             b"Api-Version: 1.50\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            # "hangup": nothing
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("fake")
    made = {m: FakeServer(base / f"{m}.sock", m) for m in ("hangup", "truncated", "garbage", "error500")}
    hosts = {m: f"unix://{s.path}" for m, s in made.items()}
    hosts["down"] = f"unix://{base}/nobody-listens.sock"
    yield hosts
    for s in made.values():
        s.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from conch.api.server import create_app
    from conch.testing.fake_engine import FakeEngine, ServerThread

    engine = FakeEngine()
    engine.images.add("busybox:latest")
    with ServerThread(create_app(engine), tmp_path_factory.mktemp("api") / "a.sock") as srv:
        yield srv.host


def _run(exe: str, argv: list[str], host: str, cwd: Path) -> tuple[int, str, str]:
    env = dict(os.environ, CONCH_HOST=host, DOCKER_HOST=host, DOCKER_CONFIG=str(cwd / "dcfg"),
               CONCH_CONFIG=str(cwd / "ccfg"))
    env.pop("DOCKER_CONTEXT", None)
    try:
        p = subprocess.run([exe, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=45)
    except subprocess.TimeoutExpired:
        return -1, "", f"timed out: {argv}"
    return p.returncode, p.stdout, p.stderr


# conch-only front ends (docker has no such verb here): checked for tracebacks only
CONCH_ONLY = {"compose", "kube", "registry"}

# Where conch's exit code knowingly differs from docker's, with why (kept short and
# reported on the issue; a case listed here is still checked for a traceback).
KNOWN: dict[tuple[str, str], str] = {}


def _known(argv: list[str], mode: str) -> bool:
    verb = argv[1] if argv[0] in ("container", "image", "volume", "network", "system", "builder") \
        and len(argv) > 1 else argv[0]
    return (verb, mode) in KNOWN


def _check_all(cases: list[tuple[list[str], str]], cwd: Path, mode: str, compare: bool = True) -> list[str]:
    """Run every (argv, host) with conch (and docker), in parallel; the list of failures."""
    def one(case):
        argv, host = case
        c = _run(CONCH, argv, host, cwd)
        if "Traceback" in c[2] or "Traceback" in c[1]:
            return [f"{argv} @{mode}: traceback\n{c[2][-1500:]}"]
        if c[0] == -1:
            return [f"{argv} @{mode}: timed out"]
        if not compare or not DOCKER or argv[0] in CONCH_ONLY or _known(argv, mode):
            return []
        d = _run(DOCKER, argv, host, cwd)
        if d[0] != c[0]:
            return [f"{argv} @{mode}: exit {c[0]}, docker {d[0]}\n  conch: {c[2].strip()[:300]}"
                    f"\n  docker: {d[2].strip()[:300]}"]
        return []

    with ThreadPoolExecutor(max_workers=6) as pool:
        return [p for ps in pool.map(one, cases) for p in ps]


def test_every_verb_is_covered():
    assert len(COMMANDS) > 80
    assert ["container", "ls"] in COMMANDS and ["ps"] in COMMANDS


def test_unknown_flag(tmp_path, servers):
    cases = [([*cmd, "--no-such-flag"], servers["down"]) for cmd in COMMANDS]
    assert _check_all(cases, tmp_path, "flag") == []


def test_help_is_no_error(tmp_path, servers):
    for cmd in COMMANDS[::7]:
        code, out, err = _run(CONCH, [*cmd, "--help"], servers["down"], tmp_path)
        assert code == 0 and "Traceback" not in err and out, (cmd, code, err)


@pytest.mark.parametrize("mode", ["down", "hangup", "truncated", "garbage", "error500"])
def test_broken_daemon(tmp_path, servers, mode):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    cases = [(_argv(cmd), servers[mode]) for cmd in COMMANDS]
    # a half-answered or hung-up request: docker and conch word it differently, and which
    # verbs retry differs; the promise is a message and a failure, never a traceback
    assert _check_all(cases, tmp_path, mode, compare=mode in ("down", "error500")) == []


BAD_VALUES = [
    ["run", "--memory", "lots", "busybox"], ["run", "-p", "99999:80", "busybox"], ["run", "--cpus", "x", "busybox"],
    ["run", "-e"], ["run"], ["run", "--ulimit", "nofile", "busybox"],
    ["run", "--pids-limit", "x", "busybox"], ["run", "-v", "::", "busybox"], ["run", "--mount", "type=nope", "busybox"],
    ["ps", "--last", "x"], ["ps", "--format", "{{x}}"], ["inspect", "-f", "{{range}}", "x"], ["ps", "-f", "nofilter"], ["stop", "-t", "x", "c1"], ["logs", "--tail", "x", "c1"],
    ["logs", "--since", "yesterday-ish", "c1"], ["update", "--memory", "x", "c1"], ["kill", "-s", "NOPE", "c1"],
    ["images", "-f", "bogus"], ["network", "create", "--subnet", "300.1.1.0/24", "n"], ["volume", "create", "-o"],
    ["inspect"], ["rm"], ["tag", "a"], ["cp", "a", "b"],
    ["exec", "c1"], ["commit"], ["inspect", "--type", "nope", "x"], ["run", "--network"],
    ["container", "nope"], ["nope"], ["image", "nope"], ["-H"], ["--nope"],
]


def test_bad_values(tmp_path, servers):
    assert _check_all([(argv, servers["down"]) for argv in BAD_VALUES], tmp_path, "bad") == []


BAD_TEMPLATES = ["{{", "{{x}}", "{{range}}", "{{.Nope}}", "{{if .ID}}", "{{.ID.X.Y}}", "{{index 1 2}}",
                 "{{printf}}", "{{json}}", "{{template \"x\"}}", "{{(}}", "{{\"}}", "{{break}}", "{{3x}}"]
FORMAT_VERBS = [["ps", "-a"], ["images"], ["network", "ls"], ["volume", "ls"], ["history", "busybox"],
                ["inspect", "busybox"], ["image", "inspect", "busybox"], ["version"], ["info"],
                ["system", "df"], ["stats", "--no-stream"], ["events", "--since", "0", "--until", "1"]]


def test_bad_templates(tmp_path, api):
    cases = [([*v, "--format", t], api) for v in FORMAT_VERBS for t in BAD_TEMPLATES]
    assert _check_all(cases, tmp_path, "template") == []
