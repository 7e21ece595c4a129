"""The C create/run path of conch-runtime's front (shim/runtime/*.c) against the Python
runtime (conch/runtime/, the reference): issue 16 point 6.

The front takes ``create``/``run`` in C only when everything in config.json is done there
exactly as Python does it; otherwise it execs Python. Its contract, which these tests rely
on: ``CONCH_RUNTIME_FRONT=0`` always runs Python; ``CONCH_RUNTIME_FRONT_DEBUG=1`` makes the
front print one stderr line, "conch-runtime front: create in C" / "... run in C" or
"conch-runtime front: python: <reason>".

Every comparison runs the *same* bundle (same config.json, same cgroupsPath) with the
*same* container id through Python, then through the front, one after the other, so
nothing but the path differs; the front's own line is taken out of stderr before the
comparison (it is the only line the two may differ by). What is compared:

1. ``test_same_view`` (and ``_create_start``, ``test_combinations_same_view``): a probe
   inside the container prints a "view" (mountinfo normalised, /proc/self/status
   ids/caps/seccomp, ulimit -a, hostname, domainname, cwd, env, umask, /proc/self/cgroup,
   /dev, oom_score_adj, the cgroup limit files, plus a few lines per config); exit code,
   stdout and stderr must be equal, and the front must say "run in C" / "create in C"
   for every config in the matrix (so a silent decline fails).
   ``test_process_attributes_same``: the init's own /proc (signals, session, limits,
   namespaces, fds); ``test_host_side_cgroups_and_records``: the cgroup files seen from
   the host and the state records.
2. ``test_declines``: configs the C path must leave to Python say "python:" and still run
   as Python runs them.
3. ``test_errors*``, ``test_edges_same``, ``test_more_same``, ``test_flags_same``: refusals
   and odd configs give Python's exit code and words (also through ``--log``), whichever
   path takes them, and leave nothing behind; sizes past the C path's tables do not
   crash it.
4. ``test_console_socket_*``: process.terminal with ``--console-socket`` (create, run -d,
   run): the socket's fd and message, and the terminal the container sees and writes
   through, equal Python's; unreachable sockets fail in Python's words.
5. lifecycle: every other verb works on a C-created container, and its records and
   ``state`` output equal a Python-created one's; run's stdio, exit codes, forwarded
   signals; many runs at once; a state root made under odd umasks.

Normalisations (not the runtime's choice): in mountinfo, mount ids, device numbers and
peer group numbers are renumbered by first appearance (so the shape stays: which mounts
share a device or a peer group, who is whose parent); the test's temp dir is written
``<tmp>``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conch.runtime.presets import default_seccomp
from conch.testing.bundles import DOCKER_DEFAULT_CAPS, write_config
from conch.testing.runtime_front import FRONT_LINE, env_for, front_binary_or_skip, split_front

pytestmark = pytest.mark.root

CG_ROOT = Path("/sys/fs/cgroup")

# ---------------------------------------------------------------------------------------
# the two paths (conch.testing.runtime_front: env_for, split_front)


@pytest.fixture
def conch(runtime_by_name):
    return front_binary_or_skip(runtime_by_name("conch"))


class Outcome:
    def __init__(self, proc: subprocess.CompletedProcess, tmp: Path):
        self.front, stderr = split_front(proc.stderr)
        self.returncode = proc.returncode
        self.stdout = normalise(proc.stdout, tmp)
        self.stderr = normalise(stderr, tmp)

    def key(self):
        return (self.returncode, self.stdout, self.stderr)


def run_both(rt, bundle: Path, tmp: Path, *extra: str, before_each=None, cid: str | None = None,
             verb: str = "run", check_left: bool = True, **kw) -> tuple[Outcome, Outcome]:
    """The same bundle and id through Python, then through the front. ``before_each``
    (path) may rewrite config.json first (fresh namespaces to join, say). Checks that
    each side left no state dir and no cgroup of the bundle behind."""
    cid = cid or f"fc-{uuid.uuid4().hex[:10]}"
    rt.created.append(cid)
    out = []
    for path in ("python", "front"):
        if before_each is not None:
            before_each(path)
        proc = rt(verb, "--bundle", bundle, *extra, cid, env=env_for(path), **kw)
        out.append(Outcome(proc, tmp))
        if check_left and verb == "run" and "--detach" not in extra and "--keep" not in extra:
            assert_nothing_left(rt, cid, bundle)
    return out[0], out[1]


def cgroup_dirs(bundle: Path) -> list[Path]:
    cg = (json.loads((bundle / "config.json").read_text()).get("linux") or {}).get("cgroupsPath", "")
    if not cg:
        return []
    return [d for d in CG_ROOT.glob("*" + cg) if d.is_dir()]


def assert_nothing_left(rt, cid: str, bundle: Path, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in [rt.root / cid] if p.exists()] + cgroup_dirs(bundle)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"left behind after {cid}: {left}"


def explain(want: Outcome, got: Outcome) -> str:
    parts = [f"front said: {got.front}"]
    if got.returncode != want.returncode:
        parts.append(f"exit code: python {want.returncode}, front {got.returncode}")
    for stream in ("stdout", "stderr"):
        a, b = getattr(want, stream), getattr(got, stream)
        if a != b:
            parts.append(f"{stream}:")
            parts.extend(difflib.unified_diff(a.splitlines(), b.splitlines(), "python", "front",
                                              lineterm="", n=1))
    return "\n".join(parts)


def assert_same(want: Outcome, got: Outcome, what: str) -> None:
    if want.key() != got.key():
        pytest.fail(f"{what}: the front differs from Python:\n{explain(want, got)}", pytrace=False)


def assert_took(outcome: Outcome, expected: str, what: str) -> None:
    """``expected`` "run in C", "create in C" or "python:"."""
    assert len(outcome.front) == 1 and expected in outcome.front[0], (
        f"{what}: wanted the front to say {expected!r}, it said {outcome.front or 'nothing'}")


# ---------------------------------------------------------------------------------------
# normalising


def normalise(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>")
    if "== mountinfo" not in text:
        return text
    head, _, rest = text.partition("== mountinfo\n")
    block, sep, tail = rest.partition("== ")
    return head + "== mountinfo\n" + normalise_mountinfo(block) + sep + tail


def normalise_mountinfo(block: str) -> str:
    ids: dict[str, str] = {}
    devs: dict[str, str] = {}
    peers: dict[str, str] = {}

    def renumber(table: dict[str, str], value: str, prefix: str) -> str:
        return table.setdefault(value, f"{prefix}{len(table)}")

    lines = block.splitlines()
    for line in lines:  # ids first: a parent may come after its child (masked paths)
        renumber(ids, line.split()[0], "m")
    out = []
    for line in lines:
        pre, _, post = line.partition(" - ")
        mid, parent, dev, root, mnt, opts, *optional = pre.split()
        optional = [re.sub(r":(\d+)$", lambda m: ":" + renumber(peers, m.group(1), "p"), o)
                    for o in optional]
        out.append(" ".join([ids[mid], ids.get(parent, "outside"), renumber(devs, dev, "d"),
                             root, mnt, opts, *optional, "-", post]))
    return "\n".join(out) + ("\n" if out else "")


# ---------------------------------------------------------------------------------------
# the view

CG_FILES = ("memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes "
            "memory/memory.soft_limit_in_bytes memory/memory.swappiness "
            "cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus "
            "pids/pids.max devices/devices.list")

VIEW = f"""
echo "== mountinfo"; cat /proc/self/mountinfo
echo "== status"; grep -E '^(Cap|NoNewPrivs|Seccomp|Groups|Uid|Gid)' /proc/self/status
echo "== ulimit"; ulimit -a
echo "== hostname"; hostname
echo "== domainname"; cat /proc/sys/kernel/domainname
echo "== cwd"; pwd
echo "== env"; env | sort
echo "== umask"; umask
echo "== id"; id
echo "== cgroup"; cat /proc/self/cgroup
echo "== dev"; ls -l /dev | sed -E 's/ [A-Z][a-z]{{2}} +[0-9]+ +([0-9]{{2}}:[0-9]{{2}}|[0-9]{{4}}) / /'
echo "== dev stat"; stat -c '%n %F %a %u:%g %t:%T' /dev/* | sort
echo "== oom"; cat /proc/self/oom_score_adj
echo "== cgroup files"
for f in {CG_FILES}; do
  if [ -e /sys/fs/cgroup/$f ]; then echo "$f: $(tr '\\n' ' ' < /sys/fs/cgroup/$f)"; else echo "$f: none"; fi
done
echo "== extra"
"""
END = "\necho to-stderr >&2\nexit 7\n"


def view(extra: str = "") -> list[str]:
    return ["sh", "-c", VIEW + extra + END]


# ---------------------------------------------------------------------------------------
# the matrix: name -> (edit(spec, tmp), extra probe lines, needs fresh namespaces)


def _mounts_tmpfs_ro(spec, tmp):
    spec["root"]["readonly"] = True
    spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "size=1m", "mode=1770"]})


def _binds(spec, tmp):
    src = tmp / "bindsrc"
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "file").write_text("bound\n")
    spec["mounts"] += [
        {"destination": "/mnt/ro", "type": "bind", "source": str(src), "options": ["bind", "ro"]},
        # data words next to rbind: mount(2) ignores data with MS_BIND, runc drops them
        {"destination": "/mnt/rbind", "type": "bind", "source": str(src),
         "options": ["rbind", "rw", "mode=755", "size=1k", "nosuid"]},
        {"destination": "/mnt/file", "type": "bind", "source": str(src / "file"),
         "options": ["rbind", "ro", "rprivate"]},
    ]


def _user(spec, tmp):
    spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [1001, 5, 44],
                               "umask": 0o027}


def _caps_reduced(spec, tmp):
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec["process"]["capabilities"] = {"bounding": caps, "effective": caps[:1], "permitted": caps}


def _caps_ambient(spec, tmp):
    caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_NET_RAW"]
    spec["process"]["user"] = {"uid": 1000, "gid": 1000}
    spec["process"]["capabilities"] = {s: list(caps) for s in
                                       ("bounding", "effective", "permitted", "inheritable", "ambient")}


def _nnp(spec, tmp):
    spec["process"]["noNewPrivileges"] = True
    spec["process"]["user"] = {"uid": 1000, "gid": 1000}


def _rlimits(spec, tmp):
    spec["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
    ]


def _oom(spec, tmp):
    spec["process"]["oomScoreAdj"] = 321


def _names(spec, tmp):
    spec["hostname"] = "box-front"
    spec["domainname"] = "example.test"


def _sysctl(spec, tmp):
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1",
                               "net.core.somaxconn": "511"}


def _devices(spec, tmp):
    spec["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640,
         "uid": 0, "gid": 5},
        {"path": "/dev/sub/loopish", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600},
    ]
    spec["linux"]["resources"]["devices"] += [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "b", "major": 7, "minor": 200, "access": "rwm"},
    ]


def _masked(spec, tmp):
    spec["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/keys", "/etc/hostname", "/home",
                                    "/nonexistent/path", "/proc/acpi"]
    spec["linux"]["readonlyPaths"] = ["/proc/sys", "/etc", "/nonexistent/ro", "/proc/sysrq-trigger"]


def _prop(kind):
    def edit(spec, tmp):
        spec["linux"]["rootfsPropagation"] = kind
    return edit


def _no_netns(spec, tmp):
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]


def _cgroupns(spec, tmp):
    spec["linux"]["namespaces"].append({"type": "cgroup"})


def _resources(spec, tmp):
    spec["linux"]["resources"].update({
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 64},
    })


def _seccomp(spec, tmp):
    spec["linux"]["seccomp"] = default_seccomp(DOCKER_DEFAULT_CAPS)


def _cwd_missing(spec, tmp):
    spec["process"]["cwd"] = "/work/made/here"


def _no_home(uid):
    def edit(spec, tmp):
        spec["process"]["env"] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "A=1"]
        spec["process"]["user"] = {"uid": uid, "gid": uid}
    return edit


def _docker(spec, tmp):
    """What the engine sends (presets.docker_spec): Docker's mounts, masks and seccomp."""
    from conch.runtime.presets import docker_spec
    files = {}
    for name in ("hostname", "hosts", "resolv.conf"):
        (tmp / f"etc-{name}").write_text(f"{name}\n")
        files[f"/etc/{name}"] = str(tmp / f"etc-{name}")
    mounts = [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}
              for dst, src in files.items()]
    new = docker_spec(args=spec["process"]["args"], rootfs="rootfs", env=["PATH=/bin", "HOSTNAME=dockerish"],
                      hostname="dockerish", mounts=mounts, cgroups_path=spec["linux"]["cgroupsPath"],
                      memory=64 << 20, pids_limit=100, oom_score_adj=0)
    spec.clear()
    spec.update(new)


def _joined(kinds):
    """Namespaces of ``kinds`` joined by path; made fresh for each side (each side must
    start from the same namespace state: Python brings lo up in a netns it joins, say)."""
    def edit(spec, tmp, make_ns):
        for kind in kinds:
            path = make_ns(kind)
            for ns in spec["linux"]["namespaces"]:
                if ns["type"] == kind:
                    ns["path"] = path
    return edit


MATRIX = {
    "base": (None, ""),
    "readonly-root-tmpfs": (_mounts_tmpfs_ro, "touch /x; echo rc=$?; touch /scratch/x; echo rc=$?"),
    "binds": (_binds, "ls /mnt/ro /mnt/rbind; cat /mnt/file; touch /mnt/ro/x; echo rc=$?; "
                      "touch /mnt/rbind/y && rm /mnt/rbind/y; echo rc=$?"),
    "user": (_user, "touch /tmp/u; stat -c '%a %u:%g' /tmp/u"),
    "caps-reduced": (_caps_reduced, ""),
    "caps-ambient": (_caps_ambient, ""),
    "no-new-privileges": (_nnp, ""),
    "rlimits": (_rlimits, ""),
    "oom-score-adj": (_oom, ""),
    "hostname-domainname": (_names, "uname -n"),
    "sysctl": (_sysctl, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced "
                        "/proc/sys/net/core/somaxconn"),
    "devices": (_devices, "ls -ln /dev/sub; head -c1 /dev/fuse; echo rc=$?"),
    "masked-readonly": (_masked, "for p in /proc/kcore /proc/keys /etc/hostname /home /proc/acpi; do "
                                 "stat -c '%n %F %s %a' $p; done; ls -A /home; touch /etc/x; echo rc=$?"),
    "propagation-shared": (_prop("shared"), ""),
    "propagation-private": (_prop("private"), ""),
    "propagation-rslave": (_prop("rslave"), ""),
    "joined-net-uts": (_joined(("network", "uts")), "ip -o link | cut -d' ' -f2,3,9"),
    "no-netns": (_no_netns, ""),
    "cgroupns": (_cgroupns, "ls /sys/fs/cgroup/memory | head -3"),
    "resources": (_resources, ""),
    "seccomp-docker-default": (_seccomp, "unshare -U true; echo rc=$?"),
    "cwd-missing": (_cwd_missing, "stat -c '%a %u:%g' /work /work/made /work/made/here"),
    "env-no-home-root": (_no_home(0), ""),
    "env-no-home-user": (_no_home(1000), ""),
    "docker-config": (_docker, "cat /etc/hostname /etc/hosts"),
}


@pytest.fixture
def make_ns(tmp_path, no_leaks):
    """``make_ns("network"|"uts")`` -> a path holding a fresh namespace (unshare's
    bind mount of it on a file under tmp_path), unmounted before the leak check."""
    made: list[Path] = []
    flags = {"network": "--net", "uts": "--uts", "ipc": "--ipc"}

    def make(kind: str) -> str:
        path = tmp_path / f"ns-{kind}-{uuid.uuid4().hex[:8]}"
        path.touch()
        subprocess.run(["unshare", f"{flags[kind]}={path}", "true"], check=True, timeout=30)
        made.append(path)
        return str(path)

    yield make
    for path in made:
        subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("name", list(MATRIX))
def test_same_view(name, conch, bundle, tmp_path, make_ns):
    edit, extra = MATRIX[name]
    args = view(extra)
    if edit is None:
        b = bundle(args)
        before_each = None
    elif edit.__code__.co_argcount == 3:  # joined namespaces: fresh ones per side
        b = bundle(args)
        spec = json.loads((b / "config.json").read_text())

        def before_each(path):
            fresh = json.loads(json.dumps(spec))
            edit(fresh, tmp_path, make_ns)
            write_config(b, fresh)
    else:
        b = bundle(args, lambda s: edit(s, tmp_path))
        before_each = None
    want, got = run_both(conch, b, tmp_path, before_each=before_each)
    assert want.returncode == 7, f"{name}: the probe did not run under Python:\n{want.stderr}"
    assert_same(want, got, name)
    assert_took(got, "run in C", name)


# ---------------------------------------------------------------------------------------
# declines: must go to Python, and still run


def _hooks(spec, tmp):
    spec["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo hook >> {tmp}/hook-ran"]}],
                     "poststop": [{"path": "/bin/true"}]}


def _terminal(spec, tmp):
    spec["process"]["terminal"] = True


def _userns(spec, tmp):
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]


def _unknown(spec, tmp):
    spec["linux"]["conchTestUnknown"] = {"x": 1}


def _apparmor(spec, tmp):
    spec["process"]["apparmorProfile"] = "unconfined"


def _hugepages(spec, tmp):
    spec["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 0}]


# name -> (edit, extra run options, Python's exit code: 4 is the probe's own; the
# Python runtime refuses AppArmor, and hugetlb is not mounted on this host)
DECLINES = {
    "hooks": (_hooks, (), 4),
    "terminal": (_terminal, (), 4),
    "user-namespace": (_userns, (), 4),
    "unknown-key": (_unknown, (), 4),
    "apparmor-profile": (_apparmor, (), 1),
    "hugepage-limits": (_hugepages, (), 1 if not (CG_ROOT / "hugetlb").is_dir() else 4),
    "preserve-fds": (None, ("--preserve-fds", "1"), 4),
}

SMALL = "id; hostname; ulimit -n; ls /proc/self/fd | sort -n; cat /proc/self/cgroup | head -2; exit 4"


@pytest.mark.parametrize("name", list(DECLINES))
def test_declines(name, conch, bundle, tmp_path):
    edit, extra, code = DECLINES[name]
    args = ["sh", "-c", SMALL]
    b = bundle(args, *([lambda s: edit(s, tmp_path)] if edit else []))
    kw = {}
    if "--preserve-fds" in extra:
        # fd 3 open in the runtime: a file the container reads
        (tmp_path / "fd3").write_text("from fd 3\n")
        spec = json.loads((b / "config.json").read_text())
        spec["process"]["args"] = ["sh", "-c", "cat <&3; " + SMALL]
        write_config(b, spec)
        fd = os.open(tmp_path / "fd3", os.O_RDONLY)
        kw = dict(pass_fds=(3,), preexec_fn=lambda: (os.dup2(fd, 3), os.lseek(3, 0, os.SEEK_SET)))
    want, got = run_both(conch, b, tmp_path, *extra, **kw)
    if kw:
        os.close(fd)
    assert want.returncode == code, f"{name}: Python exited {want.returncode}:\n{want.stderr}"
    assert_same(want, got, name)
    assert_took(got, "python:", name)
    if name == "hooks":
        assert (tmp_path / "hook-ran").read_text() == "hook\nhook\n"


class ConsoleSocket:
    """A --console-socket listener: keeps the pty master the runtime sends, with the
    message body it came with (None: a connection that closed without sending one)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.master = -1
        self.body: bytes | None = None
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:  # closed before anyone connected
            return
        self.connections += 1
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
            for extra in fds[1:]:
                os.close(extra)
            if fds:
                self.master, self.body = fds[0], msg

    def read_all(self, timeout: float = 10) -> bytes:
        self.thread.join(timeout)
        out, deadline = b"", time.monotonic() + timeout
        while self.master >= 0 and time.monotonic() < deadline:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
        return out

    def close(self):
        self.sock.close()
        if self.master >= 0:
            os.close(self.master)
        self.path.unlink(missing_ok=True)


# What the container sees of its terminal: stdio, the controlling tty (pid 1's session,
# tty_nr, foreground group), /dev/console (the slave bound there: same device as
# /dev/pts/0) and its mount, the window size and the termios settings.
TTY_PROBE = ("tty; for fd in 0 1 2; do readlink /proc/self/fd/$fd; done; "
             "cut -d' ' -f5-8 /proc/1/stat; stat -c '%n %F %t:%T %a %u:%g' /dev/console /dev/pts/0; "
             "grep -c ' /dev/console ' /proc/self/mountinfo; "
             "stty size; stty -a; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; "
             "echo to-stderr >&2; printf 'raw\\tbytes\\r\\n'; exit 5")


def _pty_master(fd: int) -> str:
    """What the received fd is: its /proc link and the pty number it answers TIOCGPTN with."""
    import fcntl
    import struct

    num = struct.unpack("I", fcntl.ioctl(fd, 0x80045430, b"\0" * 4))[0]  # TIOCGPTN
    return f"{os.readlink(f'/proc/self/fd/{fd}')} pts/{num}"


def _console_run(conch, b: Path, path: str, mode: str, sock_path: Path) -> dict:
    """One container with a --console-socket, by ``mode``: "create" (+ start), "run -d",
    or "run" (foreground: the runtime waits and deletes). What the socket got and read."""
    cid = conch.new_id()
    sock = ConsoleSocket(sock_path)
    try:
        flags = ("--console-socket", str(sock.path))
        if mode == "create":
            proc = conch("create", "--bundle", b, *flags, cid, env=env_for(path))
            assert proc.returncode == 0, proc.stderr
            conch("start", cid, check=True)
        elif mode == "run -d":
            proc = conch("run", "--detach", "--bundle", b, *flags, cid, env=env_for(path))
            assert proc.returncode == 0, proc.stderr
        else:
            proc = conch("run", "--bundle", b, *flags, cid, env=env_for(path))
        out = sock.read_all()
        if mode != "run":
            conch.wait_status(cid, "stopped")
            conch("delete", cid, check=True)
        front, stderr = split_front(proc.stderr)
        return {"front": front, "code": proc.returncode, "stdout": proc.stdout, "stderr": stderr,
                "connections": sock.connections, "body": sock.body,
                "master": _pty_master(sock.master) if sock.master >= 0 else None, "tty": out}
    finally:
        sock.close()
        assert_nothing_left(conch, cid, b)


@pytest.mark.parametrize("size", [None, {"height": 33, "width": 101}, {}, {"width": 77}])
@pytest.mark.parametrize("mode", ["create", "run -d", "run"])
def test_console_socket_same(mode, size, conch, bundle, tmp_path):
    """process.terminal with --console-socket is created in C: the socket gets a pty
    master, with Python's message body, and the container sees the same terminal
    (tty on 0-2, controlling tty, /dev/console, window size, termios) and writes the
    same bytes through it."""

    def edit(spec):
        _terminal(spec, tmp_path)
        if size is not None:
            spec["process"]["consoleSize"] = size

    b = bundle(["sh", "-c", TTY_PROBE], edit)
    got = {path: _console_run(conch, b, path, mode, tmp_path / f"c-{path}.sock")
           for path in ("python", "front")}
    want = got["python"]
    # the container's devpts is not reachable from here: its ptmx reads as "/ptmx"
    assert want["master"].endswith("ptmx pts/0") and b"all-ttys" in want["tty"], want
    if size and size.get("height") and size.get("width"):  # busybox stty fails on a 0
        assert f"\r\n{size['height']} {size['width']}\r\n".encode() in want["tty"], want["tty"]
    for key in ("code", "stdout", "stderr", "connections", "body", "master", "tty"):
        assert got["front"][key] == want[key], (
            f"{key}: python {want[key]!r}\nfront  {got['front'][key]!r}")
    verb = "create in C" if mode == "create" else "run in C"
    assert len(got["front"]["front"]) == 1 and verb in got["front"]["front"][0], got["front"]["front"]


def test_console_socket_without_terminal(conch, bundle, tmp_path):
    """--console-socket with process.terminal false (and a consoleSize Python ignores):
    connected, closed without an fd, the container's stdio untouched, as Python does."""
    b = bundle(["sh", "-c", "echo out; [ -t 0 ] || echo no-tty; exit 3"],
               lambda s: s["process"].update(consoleSize={"height": 10, "width": 20}))
    got = {path: _console_run(conch, b, path, "run", tmp_path / f"n-{path}.sock")
           for path in ("python", "front")}
    want = got["python"]
    assert (want["code"], want["stdout"], want["connections"], want["master"]) == (3, "out\nno-tty\n", 1, None)
    for key in ("code", "stdout", "stderr", "connections", "body", "master", "tty"):
        assert got["front"][key] == want[key], key
    assert len(got["front"]["front"]) == 1 and "run in C" in got["front"]["front"][0], got["front"]["front"]


def test_console_socket_with_a_closed_stdio_fd(conch, bundle, tmp_path):
    """A terminal while the caller's fd 0 is closed: where the slave would land depends
    on the runtime's own open fds, so the front leaves it to Python, which still runs it."""
    b = bundle(["sh", "-c", "tty; exit 6"], lambda s: _terminal(s, tmp_path))
    cid = conch.new_id()
    sock = ConsoleSocket(tmp_path / "closed.sock")
    try:
        with open(tmp_path / "err", "w+") as err:
            proc = subprocess.run(conch.cmd("run", "--console-socket", sock.path, "--bundle", b, cid),
                                  env=env_for("front"), stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=60, preexec_fn=lambda: os.close(0))
            err.seek(0)
            front, rest = split_front(err.read())
        assert (proc.returncode, rest) == (6, ""), rest
        assert len(front) == 1 and "python: process.terminal with fd 0 closed" in front[0], front
        assert sock.read_all().replace(b"\r\n", b"\n") == b"/dev/pts/0\n"
    finally:
        sock.close()
    assert_nothing_left(conch, cid, b)


def _not_listening(tmp: Path) -> str:
    path = tmp / "refused.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # bound, never listening: ECONNREFUSED
    s.close()
    return str(path)


@pytest.mark.parametrize("verb", ["create", "run -d", "run"])
@pytest.mark.parametrize("case", ["missing", "refused", "not-a-socket", "terminal-no-socket",
                                  "bad-console-size"])
def test_console_socket_errors(case, verb, conch, bundle, tmp_path):
    """A console socket that cannot be reached, or a terminal without one (create),
    fails with Python's words and exit code whichever path runs it, and nothing is left;
    what the C path cannot take exactly is declined."""
    edit = _terminal
    if case == "missing":
        sock = str(tmp_path / "no-such.sock")
    elif case == "refused":
        sock = _not_listening(tmp_path)
    elif case == "not-a-socket":
        (tmp_path / "plain").write_text("")
        sock = str(tmp_path / "plain")
    elif case == "bad-console-size":
        sock = str(tmp_path / "no-such.sock")

        def edit(spec, tmp):
            _terminal(spec, tmp)
            spec["process"]["consoleSize"] = {"height": 70000, "width": 80}
    else:
        sock = ""
    if case == "terminal-no-socket" and verb == "run":
        pytest.skip("a foreground run proxies the pty itself: test_declines['terminal']")
    b = bundle(["sh", "-c", "echo should-not-run"], lambda s: edit(s, tmp_path))
    args = ["--detach"] if verb == "run -d" else []
    if sock:
        args += ["--console-socket", sock]
    cid = f"fc-{uuid.uuid4().hex[:10]}"
    want, got = run_both(conch, b, tmp_path, *args, cid=cid, verb=verb.split()[0])
    assert want.returncode != 0 and "should-not-run" not in want.stdout, want.stderr
    assert_same(want, got, case)
    assert_nothing_left(conch, cid, b)
    expected = "python:" if case in ("terminal-no-socket", "bad-console-size") else "python: console socket"
    assert len(got.front) == 1 and expected in got.front[0], got.front


# ---------------------------------------------------------------------------------------
# errors: Python's words and exit code, nothing left


def _missing_exe(spec, tmp):
    spec["process"]["args"] = ["/no/such/program", "x"]


def _missing_bind(spec, tmp):
    spec["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(tmp / "no-such-dir"),
                           "options": ["rbind"]})


def _bad_option(spec, tmp):
    spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["size=not-a-size"]})


ERRORS = {
    "missing-executable": _missing_exe,
    "bind-source-missing": _missing_bind,
    "mount-option-refused": _bad_option,
}


@pytest.mark.parametrize("verb", ["run", "create"])
@pytest.mark.parametrize("name", list(ERRORS))
def test_errors(name, verb, conch, bundle, tmp_path):
    b = bundle(["echo", "never"], lambda s: ERRORS[name](s, tmp_path))
    cid = f"fe-{uuid.uuid4().hex[:10]}"
    want, got = run_both(conch, b, tmp_path, cid=cid, verb=verb, stdin=subprocess.DEVNULL)
    assert want.returncode != 0, f"{name}: Python did not fail:\n{want.stdout}"
    assert_same(want, got, f"{name} ({verb})")
    assert_nothing_left(conch, cid, b)


@pytest.mark.parametrize("verb", ["run", "create"])
def test_error_existing_id(verb, conch, bundle, tmp_path):
    b = bundle(["sleep", "60"])
    cid = f"fx-{uuid.uuid4().hex[:10]}"
    conch.created.append(cid)
    first = conch("create", "--bundle", b, cid, env=env_for("front"))
    assert first.returncode == 0, first.stderr
    try:
        b2 = bundle(["echo", "never"])
        want, got = run_both(conch, b2, tmp_path, cid=cid, verb=verb, check_left=False)
        assert want.returncode != 0
        assert_same(want, got, f"existing id ({verb})")
        assert conch.state(cid)["status"] == "created"  # the first one untouched
    finally:
        conch("delete", "--force", cid, check=True)
    assert_nothing_left(conch, cid, b)


@pytest.mark.parametrize("cid", ["bad/id", "..", "", "-dash", "x" * 1100])
def test_error_bad_id(cid, conch, bundle, tmp_path):
    b = bundle(["echo", "never"])
    outs = []
    for path in ("python", "front"):
        proc = conch("run", "--bundle", b, cid, env=env_for(path))
        outs.append(Outcome(proc, tmp_path))
    assert outs[0].returncode != 0
    assert_same(outs[0], outs[1], f"bad id {cid!r}")
    assert not cgroup_dirs(b)


# ---------------------------------------------------------------------------------------
# lifecycle of a C-created container; its records equal a Python-created one's

LOOP = ["sh", "-c", "trap 'echo got-term; exit 0' TERM; while :; do sleep 0.05; done"]


def _norm_record(text: str, cid: str, pid: int) -> str:
    """state.json (one line of JSON: pretty-printed here so a diff names the key),
    state.front or `state` output, with what changes from container to container
    (id, pids, start times, creation time) replaced by placeholders."""
    text = text.replace(cid, "<id>")
    lines = text.split("\n")
    if lines[0].startswith('{"') and lines[0].endswith("}"):  # state.json
        record = json.loads(lines[0])
        for key in ("pid", "pid_start", "creator_pid", "created"):
            if key in record:
                record[key] = f"<{key}>"
        lines[0] = json.dumps(record, indent=1)
    if re.fullmatch(r"\d+ \d+ \d+", lines[0]):  # state.front's first line
        lines[0] = "<pid> <start> " + lines[0].split()[2]
    text = "\n".join(lines)
    text = re.sub(r'"created": "[^"]+"', '"created": "<time>"', text)
    return re.sub(rf'"pid": {pid}\b', '"pid": <pid>', text)


def _create(conch, b, path, *extra):
    cid = conch.new_id()
    proc = conch("create", "--bundle", b, *extra, cid, env=env_for(path))
    assert proc.returncode == 0, proc.stderr
    front, _ = split_front(proc.stderr)
    return cid, front


def test_lifecycle_of_a_c_created_container(conch, bundle, tmp_path):
    b = bundle(LOOP)
    states: dict[str, list] = {}
    records: dict[str, list] = {}
    fronts = {}
    for path in ("python", "front"):
        pidfile = tmp_path / f"pid-{path}"
        cid, fronts[path] = _create(conch, b, path, "--pid-file", pidfile)
        pid = conch.state(cid)["pid"]
        assert pidfile.read_text() == str(pid)
        rec = [_norm_record((conch.root / cid / f).read_text(), cid, pid)
               for f in ("state.json", "state.front")]
        seen = [conch("state", cid, check=True).stdout]
        conch("start", cid, check=True)
        seen.append(conch("state", cid, check=True).stdout)
        ex = conch("exec", cid, "sh", "-c", "echo exec-ok; id -u; exit 5")
        assert (ex.returncode, ex.stdout) == (5, "exec-ok\n0\n"), ex.stderr
        ps = conch("ps", "--format", "json", cid, check=True)
        assert pid in json.loads(ps.stdout)
        conch("pause", cid, check=True)
        seen.append(conch("state", cid, check=True).stdout)
        conch("resume", cid, check=True)
        seen.append(conch("state", cid, check=True).stdout)
        conch("kill", cid, "TERM", check=True)
        conch.wait_status(cid, "stopped")
        seen.append(conch("state", cid, check=True).stdout)
        conch("delete", cid, check=True)
        assert not (conch.root / cid).exists()
        states[path] = [_norm_record(s, cid, pid) for s in seen]
        records[path] = rec
    for what, seen in (("state output", states), ("state.json/state.front", records)):
        if seen["front"] != seen["python"]:
            diff = difflib.unified_diff("\n".join(seen["python"]).splitlines(),
                                        "\n".join(seen["front"]).splitlines(),
                                        "python", "front", lineterm="", n=2)
            pytest.fail(f"lifecycle: {what} differs:\n" + "\n".join(diff), pytrace=False)
    assert len(fronts["front"]) == 1 and "create in C" in fronts["front"][0], fronts["front"]
    assert_nothing_left(conch, "none", b)


def test_run_detach_and_keep(conch, bundle, tmp_path):
    b = bundle(LOOP)
    for path in ("python", "front"):
        cid = conch.new_id()
        pidfile = tmp_path / f"pid-{path}"
        proc = conch("run", "--detach", "--pid-file", pidfile, "--bundle", b, cid, env=env_for(path))
        assert proc.returncode == 0, proc.stderr
        front, _ = split_front(proc.stderr)
        st = conch.state(cid)
        assert st["status"] == "running" and pidfile.read_text() == str(st["pid"])
        conch("kill", cid, "KILL", check=True)
        conch.wait_status(cid, "stopped")
        conch("delete", cid, check=True)
        if path == "front":
            assert len(front) == 1 and "run in C" in front[0], front

    b2 = bundle(["sh", "-c", "echo kept; exit 3"])
    for path in ("python", "front"):
        cid = conch.new_id()
        proc = conch("run", "--keep", "--bundle", b2, cid, env=env_for(path))
        front, err = split_front(proc.stderr)
        assert (proc.returncode, proc.stdout, err) == (3, "kept\n", "")
        assert conch.state(cid)["status"] == "stopped"
        conch("delete", cid, check=True)
        assert not (conch.root / cid).exists()
        if path == "front":
            assert len(front) == 1 and "run in C" in front[0], front
    assert_nothing_left(conch, "none", b)


def test_run_exit_code_and_forwarded_signal(conch, bundle, tmp_path):
    b = bundle(["sh", "-c", "exit 3"])
    codes = {}
    for path in ("python", "front"):
        proc = conch("run", "--bundle", b, conch.new_id(), env=env_for(path))
        codes[path] = proc.returncode
    assert codes == {"python": 3, "front": 3}

    # no trap: sh as pid 1 ignores TERM unless it handles it, so exec a sleeper that
    # dies of it (busybox sleep has the default action)
    b = bundle(["sh", "-c", "trap 'exit 143' TERM; echo ready; while :; do sleep 0.05; done"])
    for path in ("python", "front"):
        cid = conch.new_id()
        proc = subprocess.Popen(conch.cmd("run", "--bundle", b, cid), env=env_for(path),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        front, err = split_front(err)
        assert proc.returncode == 143, (path, proc.returncode, err)
        assert not (conch.root / cid).exists()
        if path == "front":
            assert len(front) == 1 and "run in C" in front[0], front
    assert_nothing_left(conch, "none", b)


# ---------------------------------------------------------------------------------------
# the cgroup files and records from the host side, while the container runs

HOST_CG_FILES = {
    "memory": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
               "memory.swappiness", "memory.kmem.limit_in_bytes", "memory.use_hierarchy",
               "memory.oom_control"),
    "cpu": ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"),
    "cpuset": ("cpuset.cpus", "cpuset.mems"),
    "pids": ("pids.max",),
    "devices": ("devices.list",),
    "blkio": ("blkio.weight",),
    "freezer": ("freezer.state",),
}


def host_cgroup_view(cgroups_path: str, pid: int) -> dict[str, str]:
    view = {}
    for ctrl_dir in sorted(CG_ROOT.iterdir()):
        d = ctrl_dir / cgroups_path.lstrip("/")
        view[f"{ctrl_dir.name}/"] = "dir" if d.is_dir() else "missing"
        if d.is_dir():
            procs = (d / "cgroup.procs").read_text().split()
            view[f"{ctrl_dir.name}/cgroup.procs"] = "init in" if str(pid) in procs else f"init not in: {procs}"
        for name in HOST_CG_FILES.get(ctrl_dir.name, ()):
            try:
                view[f"{ctrl_dir.name}/{name}"] = (d / name).read_text()
            except OSError as exc:
                view[f"{ctrl_dir.name}/{name}"] = f"error {exc.errno}"
    return view


@pytest.mark.parametrize("name", ["base", "resources", "devices", "docker-config", "cgroupns",
                                  "seccomp-docker-default", "masked-readonly"])
def test_host_side_cgroups_and_records(name, conch, bundle, tmp_path):
    edit, _ = MATRIX[name]
    b = bundle(LOOP, *([lambda s: edit(s, tmp_path)] if edit else []))
    spec = json.loads((b / "config.json").read_text())
    spec["process"]["args"] = LOOP  # docker-config rewrote the whole spec
    write_config(b, spec)
    seen, fronts = {}, {}
    for path in ("python", "front"):
        cid, fronts[path] = _create(conch, b, path)
        pid = conch.state(cid)["pid"]
        try:
            created = host_cgroup_view(spec["linux"]["cgroupsPath"], pid)
            records = [_norm_record((conch.root / cid / f).read_text(), cid, pid)
                       for f in ("state.json", "state.front")]
            conch("start", cid, check=True)
            running = host_cgroup_view(spec["linux"]["cgroupsPath"], pid)
            conch("pause", cid, check=True)
            paused = host_cgroup_view(spec["linux"]["cgroupsPath"], pid)
            conch("resume", cid, check=True)
            seen[path] = (created, running, paused, records)
        finally:
            conch("delete", "--force", cid, check=True)
        assert_nothing_left(conch, cid, b)
    for i, what in enumerate(("after create", "running", "paused", "state.json/state.front")):
        want, got = seen["python"][i], seen["front"][i]
        if want != got:
            if isinstance(want, dict):
                diff = [f"  {k}: python {want.get(k)!r}, front {got.get(k)!r}"
                        for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
            else:
                diff = list(difflib.unified_diff("\n".join(want).splitlines(), "\n".join(got).splitlines(),
                                                 "python", "front", lineterm="", n=1))
            pytest.fail(f"{name}: {what} differs:\n" + "\n".join(diff), pytrace=False)
    assert len(fronts["front"]) == 1 and "create in C" in fronts["front"][0], fronts["front"]


# ---------------------------------------------------------------------------------------
# edges: whatever either path does with these (run, refuse, decline), the other does too

EDGE_PROBE = ["sh", "-c", "grep -v -e ' /proc/' -e ' /sys/fs/cgroup/' /proc/self/mountinfo "
              "| cut -d' ' -f4- | sed 's/ shared:[0-9]*//; s/ master:[0-9]*//'; ls -a /; exit 6"]


def _edit(**kv):
    def edit(spec, tmp):
        for dotted, value in kv.items():
            node = spec
            keys = dotted.split("__")
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            if value is _DELETE:
                node.pop(keys[-1], None)
            else:
                node[keys[-1]] = value
    return edit


_DELETE = object()


def _mount(**m):
    def edit(spec, tmp):
        m2 = {k: (v.replace("<tmp>", str(tmp)) if isinstance(v, str) else v) for k, v in m.items()}
        spec["mounts"].append(m2)
    return edit


def _no_uts_with_hostname(spec, tmp):
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "uts"]


def _bind_file_src(spec, tmp):
    (tmp / "afile").write_text("x\n")
    spec["mounts"].append({"destination": "/new/dir/file", "type": "bind", "source": str(tmp / "afile"),
                           "options": ["bind", "ro"]})


EDGES = {
    "cwd-is-a-file": _edit(process__cwd="/bin/busybox"),
    "cwd-relative": _edit(process__cwd="tmp"),
    "args-not-in-path": _edit(process__args=["no-such-cmd"]),
    "args-a-directory": _edit(process__args=["/tmp"]),
    "args-not-executable": _edit(process__args=["/etc/passwd"]),
    "args-empty": _edit(process__args=[]),
    "args-relative-path": _edit(process__args=["bin/echo", "rel"]),
    "hostname-without-uts": _no_uts_with_hostname,
    "unknown-capability": _edit(process__capabilities={"bounding": ["CAP_NOPE"], "effective": [],
                                                        "permitted": []}),
    "lowercase-capability": _edit(process__capabilities={"bounding": ["chown"], "effective": ["chown"],
                                                          "permitted": ["chown"]}),
    "bad-rlimit": _edit(process__rlimits=[{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]),
    "rlimit-soft-above-hard": _edit(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
    "oom-out-of-range": _edit(process__oomScoreAdj=-1001),
    "env-without-equals": _edit(process__env=["PATH=/bin", "JUSTNAME", "A=1", "A=2"]),
    "uid-not-in-passwd": _edit(process__user={"uid": 4242, "gid": 4343}),
    "sysctl-not-namespaced": _edit(linux__sysctl={"vm.swappiness": "10"}),
    "sysctl-unknown": _edit(linux__sysctl={"net.ipv4.no_such_knob": "1"}),
    # (a limit so low the init is OOM-killed during set-up is no test: Python itself then
    # says one of two things, by timing)
    "memory-swap-below-limit": _edit(linux__resources={"devices": [{"allow": False, "access": "rwm"}],
                                                       "memory": {"limit": 64 << 20, "swap": 32 << 20}}),
    "cpuset-bad": _edit(linux__resources={"devices": [{"allow": False, "access": "rwm"}],
                                          "cpu": {"cpus": "63"}}),
    "mount-relative-destination": _mount(destination="scratch", type="tmpfs", source="tmpfs", options=[]),
    "mount-dotdot-destination": _mount(destination="/../../../outside-rootfs", type="tmpfs",
                                       source="tmpfs", options=["size=1m"]),
    "mount-bind-file-new-parents": _bind_file_src,
    "mount-unknown-type": _mount(destination="/x", type="nosuchfs", source="none", options=[]),
    "mount-unknown-option": _mount(destination="/x", type="tmpfs", source="tmpfs", options=["frobnicate"]),
    "mount-propagation-per-mount": _mount(destination="/mnt", type="bind", source="<tmp>",
                                          options=["rbind", "rslave", "nosuid", "nodev", "noexec"]),
    "mount-over-proc-sub": _mount(destination="/proc/sys/kernel/x", type="tmpfs", source="tmpfs", options=[]),
    "mount-no-type-bind": _mount(destination="/mnt", source="<tmp>", options=["bind"]),
    "mount-tmpcopyup": _mount(destination="/etc", type="tmpfs", source="tmpfs", options=["tmpcopyup"]),
    "device-outside-dev": _edit(linux__devices=[{"path": "/tmp/null2", "type": "c", "major": 1, "minor": 3}]),
    "device-bad-type": _edit(linux__devices=[{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}]),
    "netns-path-missing": _edit(linux__namespaces=[{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                                   {"type": "ipc"}, {"type": "network", "path": "/no/such/ns"}]),
    "namespace-twice": _edit(linux__namespaces=[{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                                {"type": "ipc"}, {"type": "pid"}]),
    "no-mount-namespace": _edit(linux__namespaces=[{"type": "pid"}, {"type": "uts"}, {"type": "ipc"}]),
    "rootfs-missing": _edit(root__path="no-such-rootfs"),
    "rootfs-absolute": None,  # set in the test (the bundle's own rootfs, absolute)
    "no-process": _edit(process=_DELETE),
    "cgroups-path-relative": None,  # set in the test (a unique relative path, removed after)
    "seccomp-notify": _edit(linux__seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nope",
                                            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
    "seccomp-kill-default": _edit(linux__seccomp={"defaultAction": "SCMP_ACT_ERRNO",
                                                  "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
    "annotations": _edit(annotations={"org.example/a": "1", "b": "two words"}),
    "oci-version-old": _edit(ociVersion="0.1.0"),
    "umask-in-user": _edit(process__user={"uid": 0, "gid": 0, "umask": 0o077}),
    "personality": _edit(linux__personality={"domain": "LINUX32"}),
    "io-priority": _edit(process__ioPriority={"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
    "scheduler": _edit(process__scheduler={"policy": "SCHED_BATCH"}),
    "mount-label": _edit(linux__mountLabel=""),
    "hostname-too-long": _edit(hostname="h" * 65),
    "domainname-too-long": _edit(domainname="d" * 65),
    "sysctl-bad-value": _edit(linux__sysctl={"net.ipv4.ip_forward": "abc"}),
    "rlimit-infinity": _edit(process__rlimits=[{"type": "RLIMIT_CORE", "soft": 18446744073709551615,
                                                "hard": 18446744073709551615}]),
    "rlimit-negative": _edit(process__rlimits=[{"type": "RLIMIT_CORE", "soft": -1, "hard": -1}]),
    "oom-1001": _edit(process__oomScoreAdj=1001),
    "uid-negative": _edit(process__user={"uid": -1, "gid": 0}),
    "uid-huge": _edit(process__user={"uid": 4294967295, "gid": 0}),
    "uid-string": _edit(process__user={"uid": "0", "gid": 0}),
    "tmpfs-no-source": _mount(destination="/x", type="tmpfs", options=["size=1k"]),
    "mount-dest-is-file-src-dir": _mount(destination="/etc/passwd", type="bind", source="<tmp>",
                                         options=["rbind"]),
    "cwd-not-absolute-dotdot": _edit(process__cwd="/../../tmp"),
    "env-not-strings": _edit(process__env=["PATH=/bin", 5]),
    "args-not-strings": _edit(process__args=["sh", 5]),
    "config-null-linux": _edit(linux=None),
    "mounts-null": _edit(mounts=None),
    "terminal-null": _edit(process__terminal=None),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edges_same(name, conch, bundle, tmp_path, request):
    edit = EDGES[name]
    b = bundle(EDGE_PROBE, *([lambda s: edit(s, tmp_path)] if edit else []))
    spec = json.loads((b / "config.json").read_text())
    relative = f"conch-test-rel-{uuid.uuid4().hex[:8]}"
    if name == "rootfs-absolute":
        spec["root"]["path"] = str(b / "rootfs")
    if name == "cgroups-path-relative":
        # relative to the runtime's own cgroup, as runc: its parent is ours to remove
        spec["linux"]["cgroupsPath"] = f"{relative}/x"
    write_config(b, spec)
    cid = f"fg-{uuid.uuid4().hex[:10]}"
    try:
        want, got = run_both(conch, b, tmp_path, cid=cid, check_left=False)
    finally:
        if name == "cgroups-path-relative":
            for top in CG_ROOT.iterdir():
                for d in sorted(top.glob(f"**/{relative}"), reverse=True):
                    for leaf in (d / "x", d):
                        if leaf.is_dir():
                            leaf.rmdir()
    assert_same(want, got, name)
    assert_nothing_left(conch, cid, b)
    # which path it took is recorded for the report (-rA shows it)
    print(f"{name}: python exit {want.returncode}; front: {got.front}")


# ---------------------------------------------------------------------------------------
# stdio and exits of a foreground run


@pytest.mark.parametrize("name,args,stdin", [
    ("stdin", ["sh", "-c", "cat; echo; wc -c"], "line one\nline two\n"),
    ("stdin-closed", ["sh", "-c", "cat; echo rc=$?"], ""),
    ("big-output", ["sh", "-c", "seq 1 200000; seq 1 50000 >&2"], None),
    ("fds", ["sh", "-c", "ls -l /proc/self/fd | sed -E 's/.* ([0-9]+) -> /\\1 -> /; s/[0-9]{4,}/N/g'"], None),
    ("exit-by-signal-child", ["sh", "-c", "sleep 100 & kill -9 $!; wait $!; exit $?"], None),
    ("exit-255", ["sh", "-c", "exit 255"], None),
])
def test_stdio_same(name, args, stdin, conch, bundle, tmp_path):
    b = bundle(args)
    kw = {"input": stdin} if stdin is not None else {}
    want, got = run_both(conch, b, tmp_path, **kw)
    assert_same(want, got, name)
    assert_took(got, "run in C", name)


def test_init_killed_from_the_host(conch, bundle, tmp_path):
    """run's exit code is 128+signal when the container's init is killed (137 for KILL)."""
    b = bundle(["sh", "-c", "echo ready; while :; do sleep 0.05; done"])
    for path in ("python", "front"):
        cid = conch.new_id()
        proc = subprocess.Popen(conch.cmd("run", "--bundle", b, cid), env=env_for(path),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        os.kill(conch.state(cid)["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        front, err = split_front(err)
        assert (proc.returncode, out, err) == (137, "", ""), path
        assert not (conch.root / cid).exists()
        if path == "front":
            assert len(front) == 1 and "run in C" in front[0], front
    assert_nothing_left(conch, "none", b)


# ---------------------------------------------------------------------------------------
# create + start (the shim's way) shows the same view as run


def _create_start_view(conch, b: Path, path: str, out: Path) -> tuple[list[str], int, str]:
    """create with stdout/stderr on a file (the container keeps them), start, wait for
    it to stop, delete: (front lines of create, status from state, the output)."""
    cid = conch.new_id()
    err_path = out.with_suffix(".err")
    # files, not pipes: the container keeps them, and a pipe would be read to its EOF
    with open(out, "wb") as f, open(err_path, "wb") as e:
        proc = subprocess.run(conch.cmd("create", "--bundle", b, cid), env=env_for(path),
                              stdin=subprocess.DEVNULL, stdout=f, stderr=e, timeout=60)
    front, err = split_front(err_path.read_text())
    assert proc.returncode == 0, err
    assert err == "", err
    size = err_path.stat().st_size
    conch("start", cid, check=True)
    conch.wait_status(cid, "stopped", timeout=30)
    conch("delete", cid, check=True)
    # the container's stderr went on after create's own lines
    return front, proc.returncode, out.read_text() + err_path.read_bytes()[size:].decode()


@pytest.mark.parametrize("name", ["base", "user", "resources", "seccomp-docker-default", "docker-config",
                                  "masked-readonly", "binds", "devices", "cgroupns", "caps-ambient"])
def test_same_view_create_start(name, conch, bundle, tmp_path):
    edit, extra = MATRIX[name]
    b = bundle(view(extra), *([lambda s: edit(s, tmp_path)] if edit else []))
    want = _create_start_view(conch, b, "python", tmp_path / "out-python")
    got = _create_start_view(conch, b, "front", tmp_path / "out-front")
    w, g = normalise(want[2], tmp_path), normalise(got[2], tmp_path)
    if w != g:
        pytest.fail(f"{name} (create+start) differs:\n" + "\n".join(difflib.unified_diff(
            w.splitlines(), g.splitlines(), "python", "front", lineterm="", n=1)), pytrace=False)
    assert "to-stderr" in w
    assert len(got[0]) == 1 and "create in C" in got[0][0], got[0]
    assert_nothing_left(conch, "none", b)


# ---------------------------------------------------------------------------------------
# many at once: a shared parent cgroup made and removed concurrently


def test_parallel_runs_share_a_new_parent(conch, bundle, tmp_path):
    n = 8
    results = {}
    for path in ("python", "front"):
        parent = f"/conch-test/par-{uuid.uuid4().hex[:8]}"
        bundles = []
        for i in range(n):
            bundles.append(bundle(["sh", "-c", f"echo {i}; cat /proc/self/cgroup | grep memory"],
                                  linux__cgroupsPath=f"{parent}/c{i}"))
        procs = [subprocess.Popen(conch.cmd("run", "--bundle", b, conch.new_id()), env=env_for(path),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for b in bundles]
        outs = [(p.wait(timeout=60), p.stdout.read(), split_front(p.stderr.read())) for p in procs]
        for p in procs:
            p.stdout.close(), p.stderr.close()
        left = sorted(str(d.relative_to(CG_ROOT)).replace(parent, "<parent>")
                      for d in CG_ROOT.glob("*" + parent))
        for d in CG_ROOT.glob("*" + parent):  # the parent is nobody's to remove (as runc)
            d.rmdir()
        results[path] = ([(rc, out.replace(parent, "<parent>"), err) for rc, out, (_, err) in outs], left)
        if path == "front":
            assert all(len(f) == 1 and "run in C" in f[0] for _, _, (f, _) in outs), [o[2][0] for o in outs]
    assert results["front"] == results["python"]
    assert all(rc == 0 for rc, _, _ in results["front"][0]), results["front"][0]


# ---------------------------------------------------------------------------------------
# more that the C path may take: each must look the same as Python's, whichever path runs
# it; and sizes past the C path's fixed tables must not crash it

SHORT_VIEW = view("stat -c '%n %F %a %u:%g' /* /*/* | grep -v '^/proc/[0-9]' | sort")


def _many_mounts(n):
    def edit(spec, tmp):
        spec["mounts"] += [{"destination": f"/m/{i}", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=4k"]} for i in range(n)]
    return edit


def _link_dest(spec, tmp):
    # the destination goes through a symlink inside the rootfs: the mount lands at the
    # link's target *inside* the rootfs (the bundle edit makes the link)
    spec["mounts"].append({"destination": "/linkdir/sub", "type": "tmpfs", "source": "tmpfs",
                           "options": ["size=8k"]})
    spec["_links"] = {"linkdir": "/tmp", "escape": "/../../../../../../etc"}
    spec["mounts"].append({"destination": "/escape/conch-front-test", "type": "tmpfs",
                           "source": "tmpfs", "options": ["size=8k"]})


def _mount_opts(spec, tmp):
    src = tmp / "optsrc"
    src.mkdir(exist_ok=True)
    spec["mounts"] += [
        {"destination": "/t1", "type": "tmpfs", "source": "tmpfs",
         "options": ["mode=700", "uid=1000", "gid=1000", "noatime", "nodiratime", "size=16k"]},
        {"destination": "/t2", "type": "tmpfs", "source": "tmpfs",
         "options": ["strictatime", "nosymfollow", "dirsync", "sync", "nr_inodes=100"]},
        {"destination": "/b1", "type": "bind", "source": str(src), "options": ["rbind", "rshared"]},
        {"destination": "/b2", "type": "bind", "source": str(src), "options": ["bind", "slave", "ro", "noexec"]},
        {"destination": "/b3", "type": "bind", "source": str(src), "options": ["rbind", "runbindable"]},
        {"destination": "/b4", "type": "bind", "source": str(src), "options": ["rbind", "rro"]},
        {"destination": "/t1/nested", "type": "tmpfs", "source": "tmpfs", "options": ["size=4k"]},
        {"destination": "//double//slash/", "type": "tmpfs", "source": "tmpfs", "options": ["size=4k"]},
        {"destination": "/proc2", "type": "proc", "source": "proc", "options": ["hidepid=2"]},
        {"destination": "/mq2", "type": "mqueue", "source": "mqueue", "options": []},
    ]


def _ns_less(*drop):
    def edit(spec, tmp):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] not in drop]
        if "uts" in drop:
            spec.pop("hostname", None)
    return edit


MORE = {
    "mounts-200": _many_mounts(200),
    "mounts-300": _many_mounts(300),
    "groups-300": _edit(process__user={"uid": 1000, "gid": 1000, "additionalGids": list(range(2000, 2300))}),
    "groups-empty": _edit(process__user={"uid": 1000, "gid": 1000, "additionalGids": []}),
    "devices-300": _edit(linux__devices=[{"path": f"/dev/d{i}", "type": "c", "major": 1, "minor": 3}
                                         for i in range(300)]),
    "device-already-default": _edit(linux__devices=[{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                                                     "fileMode": 0o600}]),
    "device-fifo-no-mode": _edit(linux__devices=[{"path": "/dev/ff", "type": "p"}]),
    "device-u-type": _edit(linux__devices=[{"path": "/dev/uu", "type": "u", "major": 1, "minor": 5}]),
    "rlimits-17": _edit(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100 + i, "hard": 2000} for i in range(17)]),
    "rlimit-nofile-huge": _edit(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1 << 30, "hard": 1 << 30}]),
    "env-5000": _edit(process__env=["PATH=/bin"] + [f"V{i}={'x' * 100}" for i in range(5000)]),
    "env-empty": _edit(process__env=[]),
    "env-dup-and-unicode": _edit(process__env=["PATH=/bin", "A=1", "A=2", "É=ü ✓", "EMPTY="]),
    "env-home-set-user": _edit(process__env=["PATH=/bin", "HOME=/elsewhere"], process__user={"uid": 1000, "gid": 1000}),
    "caps-missing": _edit(process__capabilities=_DELETE),
    "caps-empty": _edit(process__capabilities={}),
    "caps-all": _edit(process__capabilities={s: [f"CAP_{n}" for n in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
        "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
        "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
        "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE").split()]
        for s in ("bounding", "effective", "permitted", "inheritable", "ambient")}),
    "nnp-and-seccomp-user": lambda s, t: (_nnp(s, t), _seccomp(s, t)),
    "oom-negative": _edit(process__oomScoreAdj=-500),
    "oom-1000": _edit(process__oomScoreAdj=1000),
    "cwd-symlink": _edit(process__cwd="/linkdir"),
    "hostname-empty": _edit(hostname=""),
    "sysctl-more": _edit(linux__sysctl={"net/ipv4/conf/all/forwarding": "1", "fs.mqueue.msg_max": "20",
                                        "kernel.msgmax": "4096", "net.ipv4.ping_group_range": "0 2147483647"}),
    "propagation-slave": _prop("slave"),
    "propagation-unbindable": _prop("unbindable"),
    "propagation-rshared": _prop("rshared"),
    "no-pid-ns": _ns_less("pid"),
    "no-ipc-no-uts": _ns_less("ipc", "uts"),
    "resources-more": _edit(linux__resources={
        "devices": [{"allow": True, "access": "rwm"}],
        "memory": {"limit": -1, "kernel": 1 << 30, "disableOOMKiller": True},
        "cpu": {"cpus": "0-1", "mems": "0", "realtimeRuntime": 0, "realtimePeriod": 1000000,
                "shares": 2, "quota": -1},
        "pids": {"limit": -1},
        "blockIO": {"weight": 500},
        "network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 2}]},
    }),
    "resources-unified": _edit(linux__resources={"devices": [{"allow": False, "access": "rwm"}],
                                                  "unified": {"memory.high": "1000000"}}),
    "resources-null": _edit(linux__resources=None),
    "mount-options": _mount_opts,
    "mount-through-symlink": _link_dest,
    "readonly-everything": lambda s, t: (_mounts_tmpfs_ro(s, t), _masked(s, t)),
    "long-destination": _edit(mounts=[{"destination": "/" + "/".join(["d" * 200] * 30), "type": "tmpfs",
                                       "source": "tmpfs", "options": []}]),
    "args-long": _edit(process__args=["sh", "-c", "echo " + "y" * 200000 + " | wc -c"]),
    "args-many": _edit(process__args=["echo"] + [str(i) for i in range(20000)]),
    # exec failures past the lookup (the files are made in the rootfs by the test)
    "exec-format-error": _edit(process__args=["/garbage"]),
    "exec-missing-interpreter": _edit(process__args=["/script"]),
    "exec-symlink-loop": _edit(process__args=["/loop1"]),
    "exec-via-path-noexec-first": _edit(process__args=["tool"], process__env=["PATH=/noexec:/bin2"]),
    # hostile rootfs: symlinks where mounts, masks and devices go (made by the test)
    "hostile-dev-symlink": lambda s, t: s.update(_links={"dev": "/../../../../../tmp/hostile-dev"}),
    "hostile-mask-symlinks": lambda s, t: (
        s.update(_links={"evil-file": "/../../../../etc/shadow", "evil-dir": "../../../../../etc"}),
        s["linux"].update(maskedPaths=["/evil-file", "/evil-dir"], readonlyPaths=["/evil-dir"])),
    "hostile-device-symlink": lambda s, t: (
        s.update(_links={"devsub": "/../../../../../tmp/hostile-devices"}),
        s["linux"].update(devices=[{"path": "/dev/../devsub/node", "type": "c", "major": 1, "minor": 3}])),
}

# made in the rootfs before each run of test_more_same: path -> (content, mode)
ROOTFS_FILES = {
    "garbage": (b"\x00\x01not an executable", 0o755),
    "script": (b"#!/no/such/interpreter\necho hi\n", 0o755),
    "noexec/tool": (b"#!/bin/sh\necho noexec\n", 0o644),
    "bin2/tool": (b"#!/bin/sh\necho bin2 tool\n", 0o755),
}
ROOTFS_LINKS = {"linkdir": "/tmp", "loop1": "/loop2", "loop2": "/loop1"}


@pytest.mark.parametrize("name", list(MORE))
def test_more_same(name, conch, bundle, tmp_path):
    edit = MORE[name]
    b = bundle(SHORT_VIEW, lambda s: edit(s, tmp_path))
    spec = json.loads((b / "config.json").read_text())
    for link, target in {**ROOTFS_LINKS, **spec.pop("_links", {})}.items():
        if (b / "rootfs" / link).is_dir() and not (b / "rootfs" / link).is_symlink():
            (b / "rootfs" / link).rmdir()
        (b / "rootfs" / link).symlink_to(target)
    def host_view():  # what a mask or mount onto a host path would change
        return {p: (os.stat(p).st_dev, os.stat(p).st_ino, os.stat(p).st_mode) for p in ("/etc/shadow", "/etc")}

    host_before = host_view()
    for rel, (content, mode) in ROOTFS_FILES.items():
        (b / "rootfs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / "rootfs" / rel).write_bytes(content)
        (b / "rootfs" / rel).chmod(mode)
    write_config(b, spec)
    cid = f"fm-{uuid.uuid4().hex[:10]}"
    want, got = run_both(conch, b, tmp_path, cid=cid, check_left=False)
    assert_same(want, got, name)
    assert_nothing_left(conch, cid, b)
    assert not Path("/etc/conch-front-test").exists(), "a mount escaped the rootfs"
    assert not Path("/tmp/hostile-dev").exists() and not Path("/tmp/hostile-devices").exists()
    assert host_view() == host_before, "a host path was changed"
    print(f"{name}: python exit {want.returncode}; front: {got.front}")


# ---------------------------------------------------------------------------------------
# errors through --log/--log-format json, as containerd's shim asks for them


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("name", ["bind-source-missing", "mount-option-refused", "missing-executable",
                                  "exec-format-error"])
def test_errors_logged(name, log_format, conch, bundle, tmp_path):
    edit = ERRORS.get(name) or MORE[name]
    b = bundle(["echo", "never"], lambda s: edit(s, tmp_path))
    (b / "rootfs" / "garbage").write_bytes(b"\x00junk")
    (b / "rootfs" / "garbage").chmod(0o755)
    seen = {}
    for path in ("python", "front"):
        cid = conch.new_id()
        log = tmp_path / f"log-{path}"
        proc = subprocess.run([conch.binary, "--root", str(conch.root), "--log", str(log),
                               "--log-format", log_format, "run", "--bundle", str(b), cid],
                              env=env_for(path), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)
        front, err = split_front(proc.stderr)
        text = log.read_text() if log.exists() else "<no log>"
        text = re.sub(r'"time": ?"[^"]+"', '"time": "<t>"', text)
        text = re.sub(r"time=\S+", "time=<t>", text)
        text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", "<t>", text).replace(cid, "<id>")
        seen[path] = (proc.returncode, err.replace(cid, "<id>"), text)
        assert_nothing_left(conch, cid, b)
    assert seen["front"] == seen["python"], f"{name}:\npython {seen['python']}\nfront  {seen['front']}"


# ---------------------------------------------------------------------------------------
# the init process's own attributes (of sh itself, $$: what the runtime handed to exec)

PROC_VIEW = r"""
p=/proc/$$
echo "== status"; grep -v -E '^(Vm|Rss|Hugetlb|voluntary|nonvoluntary|Threads|State|Pid|PPid|Tgid|NStgid|NSpid|NSpgid|NSsid)' $p/status
echo "== stat"; cut -d' ' -f6,7,9,18,19,20,41,42 $p/stat
echo "== sid-pgrp-is-self"; set -- $(cut -d' ' -f1,5,6 $p/stat); [ "$1" = "$2" ] && echo pgrp=self; [ "$1" = "$3" ] && echo sid=self
echo "== limits"; cat $p/limits
echo "== owner"; stat -c '%u:%g' $p $p/fd $p/environ
echo "== misc"; cat $p/oom_score_adj $p/coredump_filter $p/timerslack_ns $p/loginuid $p/sessionid 2>&1
echo "== sched"; grep -E '^policy|^prio' $p/sched
echo "== ns"; for t in cgroup ipc mnt net pid user uts time; do
  eval h=\$HOSTNS_$t; if [ "$(readlink $p/ns/$t)" = "$h" ]; then echo $t host; else echo $t new; fi; done
# sh's fds while no pipeline of its own is being built (it holds a pipe fd meanwhile)
ls -l $p/fd > /dev/shm/fds; echo "== fds"; sed -E 's/.* ([0-9]+) -> /\1 -> /; s/[0-9]{4,}/N/g' /dev/shm/fds
echo "== tty"; tty; echo "== end"
"""

NS_NAMES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time")


@pytest.mark.parametrize("name", ["base", "user", "caps-reduced", "caps-ambient", "no-new-privileges",
                                  "seccomp-docker-default", "rlimits", "no-netns", "cgroupns",
                                  "docker-config", "oom-score-adj", "resources"])
def test_process_attributes_same(name, conch, bundle, tmp_path):
    edit, _ = MATRIX[name]

    def host_ns(spec):
        spec["process"]["env"] = spec["process"].get("env", []) + [
            f"HOSTNS_{t}={os.readlink(f'/proc/self/ns/{t}')}" for t in NS_NAMES]
        spec["process"]["args"] = ["sh", "-c", PROC_VIEW]

    b = bundle(["true"], *([lambda s: edit(s, tmp_path)] if edit else []), host_ns)
    want, got = run_both(conch, b, tmp_path)
    assert want.returncode == 0 and "== end" in want.stdout, want.stderr
    assert_same(want, got, name)
    assert_took(got, "run in C", name)


@pytest.mark.parametrize("sig", ["INT", "HUP", "USR1", "USR2", "QUIT"])
def test_run_forwards_signals(sig, conch, bundle, tmp_path):
    script = (f"trap 'echo got-{sig}; exit 99' {sig}; echo ready; "
              "while :; do sleep 0.05; done")
    b = bundle(["sh", "-c", script])
    seen = {}
    for path in ("python", "front"):
        cid = conch.new_id()
        proc = subprocess.Popen(conch.cmd("run", "--bundle", b, cid), env=env_for(path),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(getattr(signal, f"SIG{sig}"))
        out, err = proc.communicate(timeout=30)
        front, err = split_front(err)
        seen[path] = (proc.returncode, out, err)
        if path == "front":
            assert len(front) == 1 and "run in C" in front[0], front
    assert seen["front"] == seen["python"] == (99, f"got-{sig}\n", "")


def test_run_detach_records_equal(conch, bundle, tmp_path):
    b = bundle(LOOP)
    records = {}
    for path in ("python", "front"):
        cid = conch.new_id()
        proc = conch("run", "--detach", "--bundle", b, cid, env=env_for(path))
        assert proc.returncode == 0, proc.stderr
        pid = conch.state(cid)["pid"]
        records[path] = [_norm_record((conch.root / cid / f).read_text(), cid, pid)
                         for f in ("state.json", "state.front")]
        conch("delete", "--force", cid, check=True)
    if records["front"] != records["python"]:
        pytest.fail("run --detach: records differ:\n" + "\n".join(difflib.unified_diff(
            "\n".join(records["python"]).splitlines(), "\n".join(records["front"]).splitlines(),
            "python", "front", lineterm="", n=2)), pytrace=False)
    assert_nothing_left(conch, "none", b)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_state_root_from_env_and_modes(umask, conch, bundle, tmp_path):
    """A new, nested root named by CONCH_RUNTIME_ROOT (no --root), made under the
    caller's umask: the same directories, files and modes as Python's."""
    b = bundle(["true"])
    seen = {}
    for path in ("python", "front"):
        root = tmp_path / f"root-{path}" / "a" / "b"
        cid = f"fr-{uuid.uuid4().hex[:10]}"
        env = dict(env_for(path), CONCH_RUNTIME_ROOT=str(root))
        # stderr on a file, not a pipe: the container keeps it (a pipe would be read
        # until the container exits, which it does not before start)
        with open(tmp_path / f"err-{path}", "w") as errf:
            proc = subprocess.run([conch.binary, "create", "--bundle", str(b), "--pid-file",
                                   str(tmp_path / f"p-{path}"), cid],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=errf, timeout=60, preexec_fn=lambda: os.umask(umask))
        try:
            front, err = split_front((tmp_path / f"err-{path}").read_text())
            assert proc.returncode == 0, err
            top = tmp_path / f"root-{path}"
            seen[path] = sorted(
                (str(p.relative_to(top)).replace(cid, "<id>"), oct(p.lstat().st_mode))
                for p in [top, *top.rglob("*")]) + [("pid-file", oct((tmp_path / f"p-{path}").stat().st_mode))]
            if path == "front":
                assert len(front) == 1 and "create in C" in front[0], front
        finally:
            subprocess.run([conch.binary, "delete", "--force", cid], env=env, capture_output=True, timeout=60)
        assert not (root / cid).exists()
    assert seen["front"] == seen["python"]


def test_many_runs_lose_nothing(conch, bundle, tmp_path):
    """60 C runs, 4 at a time: every exit code and every byte of output arrives."""
    b = bundle(["sh", "-c", 'echo "out $0"; echo "err $0" >&2; exit $(( $0 % 7 ))'])
    spec = json.loads((b / "config.json").read_text())
    jobs = []
    for i in range(60):
        bi = tmp_path / f"many{i}"
        bi.mkdir()
        (bi / "rootfs").symlink_to(b / "rootfs")
        s = json.loads(json.dumps(spec))
        s["process"]["args"] = ["sh", "-c", s["process"]["args"][2], str(i)]
        s["linux"]["cgroupsPath"] = f"{spec['linux']['cgroupsPath']}-{i}"
        write_config(bi, s)
        jobs.append((i, bi))
    bad = []
    while jobs:
        batch, jobs = jobs[:4], jobs[4:]
        procs = [(i, subprocess.Popen(conch.cmd("run", "--bundle", bi, conch.new_id()), env=env_for("front"),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)) for i, bi in batch]
        for i, p in procs:
            out, err = p.communicate(timeout=60)
            front, err = split_front(err)
            if (p.returncode, out, err) != (i % 7, f"out {i}\n", f"err {i}\n") or "run in C" not in "".join(front):
                bad.append((i, p.returncode, out, err, front))
    assert not bad, bad


# (1 and 2 found a Python runtime bug, fixed in 5c6dd09: its exit flushed a None
# sys.stdout/sys.stderr and exited 1)
@pytest.mark.parametrize("closed", [0, 1, 2])
def test_run_with_a_closed_stdio_fd(closed, conch, bundle, tmp_path):
    """The caller's fd 0, 1 or 2 closed: the container gets it closed too (no runtime
    file may land on it), and exits as under Python."""
    b = bundle(["sh", "-c", "for i in 0 1 2; do [ -e /proc/self/fd/$i ] && echo $i open >&2 || "
                            "echo $i closed >&2; done 2>/dev/null; echo out; echo err >&2; exit 5"])
    seen = {}
    for path in ("python", "front"):
        with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as err:
            proc = subprocess.run(conch.cmd("run", "--bundle", b, conch.new_id()), env=env_for(path),
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=60,
                                  preexec_fn=lambda: os.close(closed))
            out.seek(0), err.seek(0)
            seen[path] = (proc.returncode, out.read(), split_front(err.read())[1])
    assert seen["front"] == seen["python"]
    assert_nothing_left(conch, "none", b)


@pytest.mark.parametrize("flags", [
    ["--no-pivot"], ["--no-new-keyring"], ["--pid-file", "rel.pid"], ["--bundle-relative"],
    ["--no-bundle"], ["--global-debug"], ["--global-systemd-cgroup"], ["--log-format=json"],
])
def test_flags_same(flags, conch, bundle, tmp_path):
    """Flags and spellings: the same view (or the same refusal) through either path, with
    a relative bundle or pid file taken from the caller's cwd."""
    b = bundle(view("cat /proc/self/stat | cut -d' ' -f1"))
    seen = {}
    for path in ("python", "front"):
        cid = conch.new_id()
        cwd = tmp_path
        pre, extra = [], ["--bundle", str(b)]
        if flags == ["--bundle-relative"]:
            extra = ["--bundle", b.name]
        elif flags == ["--no-bundle"]:
            extra, cwd = [], b
        elif flags == ["--global-debug"]:
            pre = ["--debug"]
        elif flags == ["--global-systemd-cgroup"]:
            pre = ["--systemd-cgroup"]
        elif flags == ["--log-format=json"]:
            pre = flags
        else:
            extra += flags
        proc = subprocess.run([conch.binary, "--root", str(conch.root), *pre, "run", *extra, cid],
                              env=env_for(path), cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
        pid = (tmp_path / "rel.pid").read_text() if (tmp_path / "rel.pid").exists() else None
        (tmp_path / "rel.pid").unlink(missing_ok=True)
        o = Outcome(proc, tmp_path)
        seen[path] = (o.returncode, o.stdout, o.stderr.replace(cid, "<id>"), pid is not None)
        print(path, o.front)
        assert_nothing_left(conch, cid, b)
    assert seen["front"] == seen["python"]


def test_records_with_a_new_parent_cgroup(conch, bundle, tmp_path):
    """The record's cgroup when create makes the parent too ("created" lists what it
    made, which delete then removes): Python's, and nothing left after delete."""
    b = bundle(LOOP)
    records = {}
    for path in ("python", "front"):
        parent = f"/conch-test/fresh-{uuid.uuid4().hex[:8]}"
        spec = json.loads((b / "config.json").read_text())
        spec["linux"]["cgroupsPath"] = f"{parent}/c"
        write_config(b, spec)
        cid, front = _create(conch, b, path)
        pid = conch.state(cid)["pid"]
        records[path] = [_norm_record((conch.root / cid / f).read_text(), cid, pid).replace(parent, "<parent>")
                         for f in ("state.json", "state.front")]
        conch("delete", "--force", cid, check=True)
        left = [d for d in CG_ROOT.glob("*" + parent) if d.is_dir()]
        records[path].append(f"left after delete: {len(left)}")
        for d in left:
            d.rmdir()
        if path == "front":
            assert len(front) == 1 and "create in C" in front[0], front
    if records["front"] != records["python"]:
        pytest.fail("records differ:\n" + "\n".join(difflib.unified_diff(
            "\n".join(records["python"]).splitlines(), "\n".join(records["front"]).splitlines(),
            "python", "front", lineterm="", n=2)), pytrace=False)


def test_same_id_created_twice_at_once(conch, bundle, tmp_path):
    """Two creates of one id racing: one container, the other refused in Python's words
    (whichever path each took), and the winner intact."""
    b = bundle(LOOP)
    outcomes = {}
    for path in ("python", "front"):
        cid = conch.new_id()
        errs = [open(tmp_path / f"race-{path}-{i}", "w+") for i in range(2)]
        procs = [subprocess.Popen(conch.cmd("create", "--bundle", b, cid), env=env_for(path),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=e)
                 for e in errs]
        codes = sorted(p.wait(timeout=60) for p in procs)
        texts = []
        for e in errs:
            e.seek(0)
            texts.append(split_front(e.read())[1].replace(cid, "<id>"))
            e.close()
        st = conch.state(cid)
        outcomes[path] = (codes, sorted(texts), st["status"])
        conch("delete", "--force", cid, check=True)
        assert_nothing_left(conch, cid, b)
    assert outcomes["front"][0][0] == 0 and outcomes["front"][0][1] != 0, outcomes
    assert outcomes["front"] == outcomes["python"]


# ---------------------------------------------------------------------------------------
# combinations: three configs of the matrix at once, a fixed random sample (more with
# CONCH_FRONT_COMBOS=N; CONCH_FRONT_SEED picks another sample)

_COMBINABLE = [n for n, (e, _) in MATRIX.items()
               if e is not None and e.__code__.co_argcount == 2 and n != "docker-config"]


def _combos() -> list[tuple[str, ...]]:
    import random

    rng = random.Random(int(os.environ.get("CONCH_FRONT_SEED", "16")))
    n = int(os.environ.get("CONCH_FRONT_COMBOS", "30"))
    return [tuple(rng.sample(_COMBINABLE, 3)) for _ in range(n)]


@pytest.mark.parametrize("names", _combos(), ids="+".join)
def test_combinations_same_view(names, conch, bundle, tmp_path):
    extra = "; ".join(MATRIX[n][1] for n in names if MATRIX[n][1])
    b = bundle(view(extra), *[(lambda s, e=MATRIX[n][0]: e(s, tmp_path)) for n in names])
    want, got = run_both(conch, b, tmp_path)
    assert_same(want, got, "+".join(names))
    if want.returncode == 7:
        assert_took(got, "run in C", "+".join(names))


# ---------------------------------------------------------------------------------------
# the rootfs on what engines give: an overlay mount (conch's snapshotter), a tmpfs


@pytest.fixture
def mounted(no_leaks):
    """``mounted(args...)``: run mount(8) and unmount it before the leak check."""
    targets: list[Path] = []

    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, timeout=30)
        targets.append(Path(args[-1]))

    yield mount
    for target in reversed(targets):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@pytest.mark.parametrize("kind", ["overlay", "tmpfs"])
def test_rootfs_on_overlay_or_tmpfs(kind, conch, bundle, tmp_path, mounted):
    b = bundle(view("touch /new-file; echo rc=$?"))
    lower = b / "rootfs"
    staged = b / "rootfs-lower"
    lower.rename(staged)
    lower.mkdir()
    if kind == "overlay":
        for d in ("upper", "work"):
            (tmp_path / d).mkdir()
        mounted("-t", "overlay", "overlay", "-o",
                f"lowerdir={staged},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}", str(lower))
    else:
        mounted("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(lower))
        subprocess.run(["cp", "-a", f"{staged}/.", str(lower)], check=True, timeout=60)

    def fresh(path):
        (lower / "new-file").unlink(missing_ok=True)

    want, got = run_both(conch, b, tmp_path, before_each=fresh)
    assert want.returncode == 7, want.stderr
    assert_same(want, got, f"rootfs on {kind}")
    assert_took(got, "run in C", kind)


def test_oom_killed_init(conch, bundle, tmp_path):
    """An init the memory cgroup kills: run's exit status (137) and words as Python's.
    One process only (sh execs tail, whose buffer grows without end on /dev/zero): with
    two, which one the OOM killer takes varies, and so did the outcome."""
    b = bundle(["sh", "-c", "echo start; exec tail -c 300000000 /dev/zero"],
               lambda s: s["linux"]["resources"].update(memory={"limit": 32 << 20, "swap": 32 << 20}))
    want, got = run_both(conch, b, tmp_path)
    assert want.returncode == 137, (want.returncode, want.stdout, want.stderr)
    assert_same(want, got, "oom")
    assert_took(got, "run in C", "oom")


@pytest.mark.parametrize("pidns", [True, False])
def test_run_leaves_no_orphans(pidns, conch, bundle, tmp_path):
    """The init exits leaving a child behind (in the host pid namespace, nothing kills it
    but the runtime's delete): run returns, and no process of the container is left."""
    edits = [] if pidns else [_ns_less("pid")]
    b = bundle(["sh", "-c", "sleep 300 & echo bg=started; exit 2"], *[lambda s, e=e: e(s, tmp_path) for e in edits])
    want, got = run_both(conch, b, tmp_path, timeout=60)
    assert want.returncode == 2, want.stderr
    assert_same(want, got, f"orphans (pid ns {pidns})")
    assert_took(got, "run in C", "orphans")
