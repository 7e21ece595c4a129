"""What a review of the runtime (both paths: the Python runtime and the C front) found
missing against runc 1.1.5, checked through both paths and, where runc runs here, against
runc itself:

* umask: ``process.user.umask`` is applied, and without it the container gets 0022, not
  the umask of whoever ran the runtime (runc's rule; a runtime-spec field conch ignored);
* the init is not dumpable until its execve (runc's CVE-2016-9962 fix): seen from the host
  as /proc/PID files owned by root while a non-root container waits for ``start``;
* sysctls: only namespaced ones, and only with that namespace (runc's validator, same
  words), never one that would change the host;
* the pid file's temporary is a new file of ours, never a link planted in its place.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conch.testing.runtime_front import env_for

pytestmark = pytest.mark.root

PATHS = ("python", "front")


def env(path: str) -> dict[str, str]:
    return env_for(path)


@pytest.fixture
def conch(runtime_by_name):
    return runtime_by_name("conch")


def _umask_runs(rt, bundle, path: str | None, **user):
    b = bundle(["sh", "-c", "umask"], **{f"process__user__{k}": v for k, v in user.items()})
    kw = {"env": env(path)} if path else {}
    return rt.run(b, preexec_fn=lambda: os.umask(0o077), **kw)


@pytest.mark.parametrize("path", PATHS)
def test_umask_default_and_configured(path, conch, bundle):
    default = _umask_runs(conch, bundle, path)
    assert (default.returncode, default.stdout.strip()) == (0, "0022"), default.stderr
    set_ = _umask_runs(conch, bundle, path, umask=0o027)
    assert (set_.returncode, set_.stdout.strip()) == (0, "0027"), set_.stderr


def test_umask_as_runc(conch, runtime_by_name, bundle):
    runc = runtime_by_name("runc")
    for user in ({}, {"umask": 0o027}, {"umask": 0}):
        want = _umask_runs(runc, bundle, None, **user)
        got = _umask_runs(conch, bundle, None, **user)
        assert (got.returncode, got.stdout) == (want.returncode, want.stdout), user


@pytest.mark.parametrize("bad", [-1, 0o10000, "0022", 1.5, True])
def test_umask_that_is_no_mode_is_refused(bad, conch, bundle):
    for path in PATHS:
        b = bundle(["true"], process__user__umask=bad)
        proc = conch.run(b, env=env(path))
        assert proc.returncode != 0 and "process.user.umask" in proc.stderr, (path, proc.stderr)


@pytest.mark.parametrize("path", PATHS)
def test_the_init_is_not_dumpable_before_its_exec(path, conch, bundle):
    """A container of uid 1000 waiting for start: its init has already switched user, and
    a dumpable process's /proc files would be 1000's (open to that uid's processes);
    they are root's until the execve, which makes the user's program dumpable."""
    b = bundle(["sleep", "1000"], process__user={"uid": 1000, "gid": 1000})
    cid = conch.new_id()
    proc = conch("create", "--bundle", b, cid, env=env(path))
    assert proc.returncode == 0, proc.stderr
    pid = conch.state(cid)["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Uid:\t1000\t1000\t1000\t1000" in status, status
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0
    conch("start", cid, check=True)
    deadline = __import__("time").monotonic() + 10
    while os.stat(f"/proc/{pid}/environ").st_uid != 1000:
        assert __import__("time").monotonic() < deadline, "the user's program is not dumpable"
    conch("delete", "--force", cid, check=True)


SYSCTLS = [
    ({"vm.swappiness": "10"}, None, 'sysctl "vm.swappiness" is not in a separate kernel namespace'),
    ({"kernel.hostname": "x"}, None, 'sysctl "kernel.hostname" is not allowed as it conflicts'),
    ({"fs.mqueue.msg_max": "20"}, "ipc", 'sysctl "fs.mqueue.msg_max" is not allowed in the hosts ipc namespace'),
    ({"kernel.shmmax": "1"}, "ipc", 'is not allowed in the hosts ipc namespace'),
    ({"net.ipv4.ip_forward": "1"}, "network", 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    ({"kernel.domainname": "x"}, "uts", 'sysctl "kernel.domainname" is not in a separate kernel namespace'),
]


@pytest.mark.parametrize("sysctl,drop,words", SYSCTLS)
def test_sysctls_runc_refuses_are_refused(sysctl, drop, words, conch, runtime_by_name, bundle):
    def edit(spec):
        spec["linux"]["sysctl"] = sysctl
        if drop:
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != drop]
        if drop == "uts":
            spec.pop("hostname", None)

    runc = runtime_by_name("runc")
    b = bundle(["true"], edit)
    want = runc.run(b)  # logrus quotes its msg: \" inside
    assert want.returncode != 0 and words in want.stderr.replace('\\"', '"'), want.stderr
    for path in PATHS:
        got = conch.run(b, env=env(path))
        assert got.returncode != 0 and words in got.stderr, (path, got.stderr)


@pytest.mark.parametrize("path", PATHS)
def test_namespaced_sysctls_still_apply(path, conch, bundle):
    b = bundle(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced "
                            "/proc/sys/fs/mqueue/msg_max /proc/sys/kernel/domainname"],
               lambda s: s["linux"].__setitem__("sysctl", {
                   "net/ipv4/ip_forward": "1", "kernel.shm_rmid_forced": "1",
                   "fs.mqueue.msg_max": "20", "kernel.domainname": "dom"}))
    proc = conch.run(b, env=env(path))
    assert (proc.returncode, proc.stdout.split()) == (0, ["1", "1", "20", "dom"]), proc.stderr


def test_the_pid_file_temporary_is_never_a_planted_link(tmp_path, monkeypatch):
    from conch.runtime import create

    target = tmp_path / "victim"
    target.write_text("precious")
    pid_file = tmp_path / "pid"
    monkeypatch.setattr(create.os, "getpid", lambda: 4242)
    (tmp_path / "pid.4242.tmp").symlink_to(target)
    with pytest.raises(FileExistsError):
        create._write_pid_file(str(pid_file), 99)
    assert target.read_text() == "precious" and not pid_file.exists()
    (tmp_path / "pid.4242.tmp").unlink()
    create._write_pid_file(str(pid_file), 99)
    assert pid_file.read_text() == "99"


@pytest.mark.parametrize("path", PATHS)
def test_a_sysctl_is_written_only_to_procfs(path, conch, bundle):
    """No proc mounted and the image carrying its own /proc/sys/... file: the sysctl is
    refused (runc checks procfs's magic too), and neither a file is made nor the image's
    written (the writes are O_NOFOLLOW, without O_CREAT)."""
    def edit(spec):
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "proc"]
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "77"}
        spec["linux"]["maskedPaths"] = spec["linux"]["readonlyPaths"] = []

    b = bundle(["true"], edit)
    planted = b / "rootfs" / "proc" / "sys" / "net" / "ipv4" / "ip_forward"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text("planted\n")
    proc = conch.run(b, env=env(path))
    assert proc.returncode != 0 and "not on procfs" in proc.stderr, proc.stderr
    assert planted.read_text() == "planted\n"
    assert not (b / "rootfs" / "proc" / "sys" / "net" / "core" / "somaxconn").exists()
