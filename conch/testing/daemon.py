"""A private ``conchd`` for end-to-end and compatibility tests.

:class:`Daemon` starts the venv's ``conchd`` on its own temp roots and a short unix
socket (``/tmp/cd-XXXX/s``: sun_path holds only 108 bytes), waits for ``/_ping``, and
drives it through the real clients: the ``conch`` CLI (:meth:`Daemon.conch`), the
``docker`` CLI (:meth:`Daemon.docker`) and the API client (:attr:`Daemon.api`).

Layout of one daemon's temp dir::

    /tmp/cd-XXXX/s            the API socket
    /tmp/cd-XXXX/data         --data-root
    /tmp/cd-XXXX/exec         --exec-root
    /tmp/cd-XXXX/conchd.log   conchd's stdout/stderr (shown when a test fails to start it)

Lifecycle: :meth:`start` → tests → :meth:`close`, which removes every container
(``rm -f``), stops conchd with SIGTERM, lazily unmounts whatever is left under its dir
(and reports that as a leak), removes the dir, and asserts with
:mod:`conch.testing.leaks` that no mount, cgroup or process of ours outlived it.
:meth:`kill9` and :meth:`start` again on the same roots are how durability tests crash
and restart it.

Other sessions may run engines on this machine at the same time (benchmarks start
dockerd, podman and other conchd), so the leak check here is scoped: a new mount or cgroup
that names a 64-hex id none of *our* containers had, or a mount under another session's
``/tmp`` directory, is someone else's. Our ids are collected from conchd's live
``/events`` stream (a thread per daemon run) and from ``ps -a``.

Networking: each Daemon gets its own default bridge device (``cb<hex>``), nftables table
(``conch_<hex>``) and default-bridge subnet (a free 10.x.y.0/24), so two test daemons
never collide; the leak check counts the links (that bridge, ``br-<network id>`` of
networks it reported, ``v<container id>..`` veths) and the table as its own.

Pytest use: :func:`daemon_fixture` makes a module-scoped fixture (one daemon per test
module, with ``busybox:latest`` imported), and :func:`clean_after` is the per-test
guard: it snapshots the host, yields, removes the test's containers and asserts no
leak. Everything skips (with the reason) when not root or when conchd is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import re
import threading

from conch.testing.leaks import HostSnapshot, LeakReport, diff_snapshots, read_mounts

__all__ = ["Daemon", "busybox_tar", "daemon_fixture", "clean_after", "scoped_report", "BIN", "DOCKER",
           "free_subnet", "free_port", "ok"]

BIN = Path(sys.executable).parent
DOCKER = "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else shutil.which("docker")

_tar_cache: Path | None = None


_PR_SET_PDEATHSIG = 1


def _die_with_parent_hook():
    """A preexec_fn for conchd: SIGTERM it when the test process dies, so that a test
    run killed by a timeout leaves no conchd behind (its fixtures never run). libc is
    loaded here, before the fork: the child only calls prctl."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def busybox_tar() -> Path:
    """A tar of :func:`conch.testing.rootfs.busybox_rootfs`, built once per process."""
    global _tar_cache
    if _tar_cache is None or not _tar_cache.exists():
        from conch.testing.rootfs import busybox_rootfs

        base = Path(tempfile.mkdtemp(prefix="cd-img-"))
        rootfs = busybox_rootfs(base / "rootfs")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(base / "rootfs.tar"), "."], check=True)
        shutil.rmtree(rootfs)
        import atexit

        atexit.register(shutil.rmtree, base, True)
        _tar_cache = base / "rootfs.tar"
    return _tar_cache


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (conchd runs containers)"
    for name in ("conchd", "conch", "conch-runtime"):
        if not os.access(BIN / name, os.X_OK):
            return f"{name} is not installed in this venv ({BIN}); run `make setup`"
    return None


class Daemon:
    """One conchd on private roots (see the module docstring)."""

    def __init__(self, *, runtime: str = "conch", daemon_env: dict[str, str] | None = None,
                 config: dict | None = None, extra_args: list[str] | tuple = (),
                 wrap: list[str] | tuple = (), pass_fds: tuple = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))
        self.sock = self.dir / "s"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.log_path = self.dir / "conchd.log"
        self.runtime = runtime
        self.daemon_env = dict(daemon_env or {})  # added to conchd's environment only
        # always a private daemon.json: the machine's /etc/conch/daemon.json is not the test's
        self.config_file = self.dir / "daemon.json"
        self.config_file.write_text(json.dumps(config or {}))
        self.extra_args = list(extra_args)
        # argv before conchd's (e.g. a shell that sets LISTEN_PID to its own pid and execs
        # conchd, as systemd does for socket activation), and fds it inherits
        self.wrap, self.pass_fds = list(wrap), tuple(pass_fds)
        self.own_host = True  # False: extra_args say where to listen (-H fd://, socket activation)
        self.proc: subprocess.Popen | None = None
        self.before = HostSnapshot.take()
        self.host = f"unix://{self.sock}"
        # both CLIs' credential files in the daemon's temp dir, never the machine's home
        self.env = dict(os.environ, CONCH_HOST=self.host, DOCKER_HOST=self.host,
                        DOCKER_CONFIG=str(self.dir / "docker-config"),
                        CONCH_CONFIG=str(self.dir / "conch-config"))
        self.env.pop("DOCKER_CONTEXT", None)
        self.ids: set[str] = set()  # every container id this daemon ever reported
        self.network_ids: set[str] = set()  # every network id it reported
        tag = os.urandom(3).hex()
        self.bridge = f"cb{tag}"
        self.nft_table = f"conch_{tag}"
        self.bip = _free_subnet()
        self._events: threading.Thread | None = None
        self._events_sock = None

    # -- process ------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20) -> "Daemon":
        from conch.client.http import Client

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrap, str(BIN / "conchd"), "--data-root", str(self.data_root), "--exec-root",
                 str(self.exec_root), *(["-H", self.host] if self.own_host else []),
                 "--runtime", self.runtime,
                 "--bridge-name", self.bridge, "--nft-table", self.nft_table, "--bip", self.bip,
                 "--config-file", str(self.config_file), *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                pass_fds=self.pass_fds,
                env=dict(os.environ, **self.daemon_env) if self.daemon_env else None,
                preexec_fn=_die_with_parent_hook())
        client = Client(self.host, timeout=5)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"conchd exited {self.proc.returncode}:\n{self.log()}")
            try:
                if client.ping() == "OK":
                    self._watch_events()
                    return self
            except OSError:
                pass
            except Exception:  # noqa: BLE001 - any answer but OK: keep waiting
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"conchd did not answer /_ping in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def _watch_events(self) -> None:
        from conch.client.http import Client

        resp = Client(self.host).request("GET", "/events",
                                         params={"filters": {"type": ["container", "network"]}})
        self._events_sock = resp.sock

        def pump():
            try:
                for line in resp.iter_lines():
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    cid = ev.get("id") or ev.get("Actor", {}).get("ID")
                    if cid and ev.get("Type") == "network":
                        self.network_ids.add(cid)
                    elif cid:
                        self.ids.add(cid)
            except Exception:  # noqa: BLE001 - the stream ends when conchd stops or dies
                pass

        self._events = threading.Thread(target=pump, daemon=True, name="conchd-events")
        self._events.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _stop_watching(self) -> None:
        # Hang up our /events stream before stopping conchd: a client still streaming
        # must not be what a graceful shutdown waits on (test_sigterm_with_open_streams
        # checks conchd does not wait on it either).
        if self._events_sock is not None:
            try:
                self._events_sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._events_sock = None
        if self._events is not None:
            self._events.join(timeout=5)
            self._events = None

    def kill9(self) -> None:
        """Crash conchd (SIGKILL) and reap it; containers and shims live on."""
        assert self.proc is not None
        self._stop_watching()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait; returns conchd's exit status."""
        if self.proc is None:
            return 0
        self._stop_watching()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"conchd ignored SIGTERM for {timeout}s:\n{self.log()}")
        self.proc = None
        return rc

    @property
    def api(self):
        from conch.client.http import Client

        return Client(self.host, timeout=60)

    # -- clients ------------------------------------------------------------------
    def conch(self, *args, input: str | bytes | None = None, timeout: float = 60,
              check: bool = False, text: bool = True) -> subprocess.CompletedProcess:
        return self._run([str(BIN / "conch"), *map(str, args)], input, timeout, check, text)

    def docker(self, *args, input: str | bytes | None = None, timeout: float = 60,
               check: bool = False, text: bool = True) -> subprocess.CompletedProcess:
        assert DOCKER, "the docker CLI is not installed"
        return self._run([DOCKER, *map(str, args)], input, timeout, check, text)

    def _run(self, argv, input, timeout, check, text):
        if input is not None and text and isinstance(input, bytes):
            input = input.decode()
        proc = subprocess.run(argv, env=self.env, input=input, capture_output=True,
                              text=text, timeout=timeout,
                              stdin=subprocess.DEVNULL if input is None else None)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:1] + argv[1:])} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def import_busybox(self, ref: str = "busybox:latest") -> None:
        self.conch("import", "-c", 'CMD ["sh"]', busybox_tar(), ref, check=True, timeout=120)

    # -- teardown -----------------------------------------------------------------
    def container_ids(self) -> list[str]:
        p = self.conch("ps", "-aq", "--no-trunc", timeout=30)
        ids = p.stdout.split() if p.returncode == 0 else []
        self.ids.update(ids)
        return ids

    def rm_all(self) -> None:
        ids = self.container_ids()
        if ids:
            self.conch("rm", "-f", *ids, timeout=120)

    def unmount_leftovers(self) -> list[str]:
        """Lazily unmount everything still mounted under this daemon's dir (deepest
        first) and return what was there."""
        left = sorted({m.mountpoint for m in read_mounts().values()
                       if m.mountpoint.startswith(str(self.dir) + "/")},
                      key=len, reverse=True)
        for mp in left:
            subprocess.run(["umount", "-l", mp], capture_output=True)
        return left

    def wait_no_leaks(self, before: HostSnapshot, timeout: float = 10) -> LeakReport:
        """Our leaks since ``before`` (see the module docstring), after up to ``timeout``
        seconds for them to go; an empty (falsy) report when there are none."""
        deadline = time.monotonic() + timeout
        while True:
            report = scoped_report(self, before)
            if not report or time.monotonic() >= deadline:
                return report
            time.sleep(0.1)

    def close(self, check_leaks: bool = True) -> None:
        problems = []
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.rm_all()
                rc = self.stop()
                if rc != 0:
                    problems.append(f"conchd exited {rc} on SIGTERM:\n{self.log()}")
        finally:
            left = self.unmount_leftovers()
            if left:
                problems.append("mounts left under the daemon's roots: " + ", ".join(left))
            try:
                if check_leaks:
                    report = self.wait_no_leaks(self.before, timeout=10)
                    if report:
                        problems.append(str(report))
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)
        assert not problems, "\n".join(problems)


_HEX_ID = re.compile(r"[0-9a-f]{64}")


def _foreign(daemon: Daemon, text: str) -> bool:
    """Does this mountpoint/cgroup path belong to another session's engine?"""
    ids = _HEX_ID.findall(text)
    if ids and not any(i in daemon.ids for i in ids):
        return True
    if text.startswith("/tmp/") and not text.startswith(str(daemon.dir) + "/"):
        return True
    return False


def _our_link(daemon: Daemon, name: str) -> bool:
    if name == daemon.bridge:
        return True
    if name.startswith("br-"):
        return any(n.startswith(name[3:]) for n in daemon.network_ids)
    if re.fullmatch(r"v[0-9a-f]{14}", name):
        return any(i.startswith(name[1:13]) for i in daemon.ids)
    return False


def free_subnet(low: int = 150, high: int = 199) -> str:
    """A random ``10.<low..high>.y.0/24`` that no host route overlaps: for the networks a
    test creates (150-199; test daemons' default bridges take 200-250)."""
    import ipaddress
    import random

    from conch.engine.network.records import host_routes

    routes = [ipaddress.ip_network(r) for r in host_routes() if not r.endswith("/0")]
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(low, high)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(r) for r in routes):
            return str(net)
    raise RuntimeError(f"no free 10.{low}-{high}.y.0/24 on this host")


def _free_subnet() -> str:
    """The default bridge's --bip for a test daemon: gateway/24 in a free 10.200-250 net."""
    import ipaddress

    net = ipaddress.ip_network(free_subnet(200, 250))
    return f"{net.network_address + 1}/24"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for -p in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ok(proc: subprocess.CompletedProcess) -> str:
    """``proc``'s stdout, after asserting it exited 0 (its output in the message)."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def scoped_report(daemon: Daemon, before: HostSnapshot) -> LeakReport:
    r = diff_snapshots(before, HostSnapshot.take(before.roots))
    return LeakReport(
        mounts=[m for m in r.mounts if not _foreign(daemon, m.mountpoint)],
        cgroups=[c for c in r.cgroups if not _foreign(daemon, c.partition(":")[2])],
        links=[n for n in r.links if _our_link(daemon, n)],  # others' veths come and go
        nft_tables=[t for t in r.nft_tables if t in (f"ip {daemon.nft_table}", f"ip6 {daemon.nft_table}")],
        # a conchd restarted by the test itself is not a leak while it runs, nor are
        # its warm shims (conch.engine.containers.warmpool) and their waiting runtimes
        processes=[p for p in r.processes if not _daemon_own(daemon, p, r.processes)],
        files=r.files)


def _daemon_own(daemon: Daemon, proc, new) -> bool:
    if daemon.proc is None or daemon.proc.poll() is not None:
        return False
    if proc.pid == daemon.proc.pid:
        return True
    warm = {p.pid for p in new if "--warm" in p.cmdline and str(daemon.dir) in p.cmdline}
    return proc.pid in warm or proc.ppid in warm


def daemon_fixture(scope: str = "module", *, import_image: bool = True,
                   daemon_env: dict[str, str] | None = None,
                   extra_args: list[str] | None = None):
    """A pytest fixture yielding a started :class:`Daemon` (busybox:latest imported),
    closed (with the leak check) at the end of ``scope``; ``daemon_env`` is added to
    conchd's environment (e.g. ``SSL_CERT_FILE``), ``extra_args`` to its argv."""
    import pytest

    @pytest.fixture(scope=scope)
    def daemon():
        reason = _unavailable()
        if reason:
            pytest.skip(reason)
        d = Daemon(daemon_env=daemon_env, extra_args=extra_args or ())
        try:
            d.start()
            if import_image:
                d.import_busybox()
            probe = d.conch("run", "--rm", "busybox", "true")
            if probe.returncode != 0:
                pytest.fail(f"conchd cannot run a container: {probe.stderr.strip()[:500]}")
            yield d
        finally:
            d.close()

    return daemon


def clean_after(daemon: Daemon):
    """Generator for a per-test fixture: snapshot the host, run the test, ``rm -f`` every
    container the test left, then assert nothing new (mounts, cgroups, processes)
    remains besides what was there before the test (conchd itself)."""
    before = HostSnapshot.take()
    known = set(daemon.container_ids())
    yield daemon
    if daemon.proc is None:  # a test that failed while conchd was down: bring it back
        daemon.start()
    ids = [c for c in daemon.container_ids() if c not in known]
    if ids:
        daemon.conch("rm", "-f", *ids, timeout=120)
    report = daemon.wait_no_leaks(before, timeout=10)
    assert not report, str(report)
