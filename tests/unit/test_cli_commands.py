"""Verbs end to end against a fake client: requests sent, output printed, exit codes."""

import io
import json
import re
import struct
import time

import pytest

from conch import errors
from conch.cli import main as cli
from conch.cli.container_run import start_error_status

NOW = time.time()
CID = "3f4e" + "a" * 60
IMG = "sha256:" + "b1" * 32


class FakeResponse:
    def __init__(self, value, headers=None):
        self.value = value
        self.headers = headers or {}
        self.status = 200

    def json(self):
        return self.value

    def read(self):
        return b""

    def iter_chunks(self):
        return iter(self.value)

    def close(self):
        pass


class FakeHijack:
    def __init__(self, data: bytes):
        self.chunks = [data]
        self.sent = b""
        self.closed = False

    def recv(self, n=65536):
        return self.chunks.pop(0) if self.chunks else b""

    def send(self, data):
        self.sent += data

    def close_write(self):
        pass

    def close(self):
        self.closed = True


class FakePending:
    """conch.client.http.Pending: the answer (or error) of a request already sent."""

    def __init__(self, answer):
        self.answer = answer

    def wait(self, timeout):
        return True

    def response(self, check=True):
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def close(self):
        pass


class Seq(list):
    """Answers given in turn (the last one repeats)."""


class FakeClient:
    """Implements conch.client.Client's interface; ``routes`` maps (METHOD, path) to a
    value, an exception, or a ``Seq`` of them consumed in turn."""

    def __init__(self, routes):
        self.routes = dict(routes)
        self.calls = []

    def _answer(self, method, path, params, body):
        self.calls.append((method, path, dict(params or {}), body))
        value = self.routes.get((method, path))
        if isinstance(value, Seq):
            value = value.pop(0) if len(value) > 1 else value[0]
        if isinstance(value, BaseException):
            raise value
        if (method, path) not in self.routes:
            raise errors.NotFound(f"page not found: {method} {path}")
        return value

    def get(self, path, **params):
        return self._answer("GET", path, params, None)

    def post(self, path, body=None, **params):
        return self._answer("POST", path, params, body)

    def delete(self, path, **params):
        return self._answer("DELETE", path, params, None)

    def request(self, method, path, *, params=None, json_body=None, body=None, headers=None,
                check=True):
        return FakeResponse(self._answer(method, path, params, json_body))

    def send_request(self, method, path, *, params=None, json_body=None, body=None,
                     headers=None):
        try:  # the call is recorded when sent (order matters: wait before start)
            return FakePending(FakeResponse(self._answer(method, path, params, json_body)))
        except Exception as exc:  # noqa: BLE001 - delivered by response(), as the real one
            return FakePending(exc)

    def send_file(self, method, path, fileobj, *, params=None, headers=None):
        return FakeResponse(self._answer(method, path, params, fileobj.read()))

    def stream_json(self, method, path, *, params=None, json_body=None, response=None):
        if response is not None:
            return iter(response.value)
        return iter(self._answer(method, path, params, json_body))

    def stream_raw(self, method, path, *, params=None, json_body=None):
        return iter(self._answer(method, path, params, json_body))

    def hijack(self, method, path, body=None, *, params=None):
        return FakeHijack(self._answer(method, path, params, body))


def run(argv, routes, capsys=None):
    client = FakeClient(routes)
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(argv, client=client, stdout=out, stderr=err, stdin=io.StringIO("y\n"))
    return rc, out.getvalue(), err.getvalue(), client


CONTAINER = {
    "Id": CID, "Names": ["/web"], "Image": "busybox", "ImageID": IMG,
    "Command": "sh -c 'while true; do sleep 1; done'", "Created": int(NOW - 5),
    "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
              {"PrivatePort": 443, "Type": "tcp"}],
    "Labels": {"tier": "front"}, "State": "running", "Status": "Up 3 seconds",
    "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": [],
}


def test_ps_table():
    container = dict(CONTAINER, Created=int(time.time() - 5))  # not NOW: runs can be long
    rc, out, err, client = run(["ps"], {("GET", "/containers/json"): [container]})
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert lines[1].startswith(CID[:12] + "   busybox   ")
    assert '"sh -c \'while true; …"' in lines[1]
    assert re.search(r"\b[56] seconds ago", lines[1])
    assert "Up 3 seconds" in lines[1]
    assert "0.0.0.0:8080->80/tcp, 443/tcp" in lines[1]
    assert lines[1].endswith("web")
    assert client.calls == [("GET", "/containers/json", {}, None)]


def test_ps_flags_to_query():
    _, _, _, client = run(["ps", "-a", "-s", "-n", "3", "--filter", "status=exited",
                           "-f", "label=a=b"], {("GET", "/containers/json"): []})
    params = client.calls[0][2]
    assert params["all"] == 1 and params["size"] == 1 and params["limit"] == 3
    assert json.loads(params["filters"]) == {"status": {"exited": True}, "label": {"a=b": True}}


@pytest.mark.parametrize("argv", [["ps", "-q"], ["container", "ls", "-q"], ["container", "list", "-q"],
                                  ["container", "ps", "-q"]])
def test_ps_quiet_and_aliases(argv):
    rc, out, _, _ = run(argv, {("GET", "/containers/json"): [CONTAINER]})
    assert (rc, out) == (0, CID[:12] + "\n")


def test_ps_format_and_no_trunc():
    rc, out, _, _ = run(["ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Label \"tier\"}}"],
                        {("GET", "/containers/json"): [CONTAINER]})
    assert out == f"{CID} web front\n"
    rc, out, _, _ = run(["ps", "--format", "{{json .}}"], {("GET", "/containers/json"): [CONTAINER]})
    row = json.loads(out)
    assert row["Names"] == "web" and row["State"] == "running" and row["Networks"] == "bridge"
    rc, out, _, _ = run(["ps", "--format", "table {{.Names}}\t{{.Status}}"],
                        {("GET", "/containers/json"): [CONTAINER]})
    assert out.splitlines() == ["NAMES     STATUS", "web       Up 3 seconds"]


IMAGE = {"Id": IMG, "RepoTags": ["busybox:latest", "localhost:5000/tools/bb:1.36"],
         "RepoDigests": ["busybox@sha256:" + "cd" * 32], "Created": int(NOW - 3 * 86400),
         "Size": 4_261_000, "SharedSize": -1, "Containers": -1}
DANGLING = {"Id": "sha256:" + "ef" * 32, "RepoTags": None, "RepoDigests": None,
            "Created": int(NOW - 7200), "Size": 1234, "SharedSize": -1, "Containers": -1}


def test_images_table():
    rc, out, err, _ = run(["images"], {("GET", "/images/json"): [IMAGE, DANGLING]})
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split() == ["busybox", "latest", "b1b1b1b1b1b1", "3", "days", "ago", "4.26MB"]
    assert lines[2].split()[:2] == ["localhost:5000/tools/bb", "1.36"]
    assert lines[3].split()[:3] == ["<none>", "<none>", "efefefefefef"]
    assert lines[3].split()[-1] == "1.23kB"


def test_images_quiet_digests_aliases():
    routes = {("GET", "/images/json"): [IMAGE, DANGLING]}
    assert run(["images", "-q"], routes)[1] == "b1b1b1b1b1b1\nefefefefefef\n"
    assert run(["image", "ls", "-q"], routes)[1] == "b1b1b1b1b1b1\nefefefefefef\n"
    out = run(["images", "--digests"], routes)[1]
    assert "DIGEST" in out.splitlines()[0] and "sha256:" + "cd" * 32 in out
    _, _, _, client = run(["images", "busybox"], routes)
    assert json.loads(client.calls[0][2]["filters"]) == {"reference": {"busybox": True}}


def test_inspect_format_and_fallback_to_image():
    info = {"Id": CID, "State": {"Status": "exited", "ExitCode": 3}, "Mounts": [],
            "NetworkSettings": {"IPAddress": "172.17.0.9"}}
    routes = {("GET", "/containers/web/json"): info,
              ("GET", "/containers/busybox/json"): errors.NotFound("No such container: busybox"),
              ("GET", "/images/busybox/json"): {"Id": IMG, "Os": "linux"}}
    assert run(["inspect", "-f", "{{.State.Status}}", "web"], routes)[1] == "exited\n"
    assert run(["inspect", "--format", "{{json .Mounts}}", "web"], routes)[1] == "[]\n"
    assert run(["container", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"],
               routes)[1] == "172.17.0.9\n"
    assert run(["inspect", "-f", "{{.Os}}", "busybox"], routes)[1] == "linux\n"
    rc, out, _, _ = run(["inspect", "web"], routes)
    assert rc == 0 and json.loads(out) == [info] and out.startswith("[\n    {\n        \"Id\"")


def test_inspect_missing_object():
    routes = {("GET", "/containers/nope/json"): errors.NotFound("No such container: nope"),
              ("GET", "/images/nope/json"): errors.NotFound("No such image: nope:latest")}
    rc, out, err, _ = run(["inspect", "nope"], routes)
    assert (rc, out, err) == (1, "[]\n", "Error: No such object: nope\n")
    rc, out, err, _ = run(["image", "inspect", "nope"], routes)
    assert (rc, err) == (1, "Error: No such image: nope\n")


def test_daemon_error_wording_and_status():
    routes = {("DELETE", "/containers/a"): errors.Conflict("You cannot remove a running container a"),
              ("DELETE", "/containers/b"): None}
    rc, out, err, client = run(["rm", "-f", "-v", "a", "b"], routes)
    assert rc == 1
    assert out == "b\n"
    assert err == "Error response from daemon: You cannot remove a running container a\n"
    assert client.calls[0][2] == {"force": 1, "v": 1}


def test_unknown_flag_and_verb():
    rc, _, err, _ = run(["ps", "--bogus"], {})
    assert rc == 125 and err == "unknown flag: --bogus\nSee 'conch ps --help'.\n"
    rc, _, err, _ = run(["container", "ls", "--bogus"], {})
    assert rc == 125 and "See 'conch container ls --help'." in err
    rc, _, err, _ = run(["frobnicate"], {})
    assert rc == 1 and "is not a conch command" in err
    rc, _, err, _ = run(["rm"], {})
    assert rc == 1 and '"conch rm" requires at least 1 argument.' in err


@pytest.mark.parametrize("message,status", [
    ('exec: "nope": executable file not found in $PATH', 127),
    ("exec /bin/nope: no such file or directory", 127),
    ("exec /etc/passwd: permission denied", 126),
    ("exec /etc: is a directory", 126),
    ("cgroup setup failed", 125),
])
def test_start_error_status(message, status):
    assert start_error_status(message) == status


def _create_routes(**extra):
    routes = {("POST", "/containers/create"): {"Id": CID, "Warnings": []},
              ("POST", f"/containers/{CID}/start"): None,
              ("POST", f"/containers/{CID}/wait"): {"StatusCode": 3}}
    routes.update(extra)
    return routes


def test_run_detached_prints_id():
    rc, out, err, client = run(["run", "-d", "--name", "web", "busybox", "top"], _create_routes())
    assert (rc, out) == (0, CID + "\n"), err
    method, path, params, body = client.calls[0]
    assert (method, path, params) == ("POST", "/containers/create", {"name": "web"})
    assert body["Cmd"] == ["top"] and body["Image"] == "busybox"
    assert client.calls[1][:2] == ("POST", f"/containers/{CID}/start")


def test_run_pulls_a_missing_image():
    routes = _create_routes()
    routes[("POST", "/containers/create")] = Seq([errors.NotFound("No such image: busybox:latest"),
                                                  {"Id": CID, "Warnings": []}])
    routes[("POST", "/images/create")] = [{"status": "Pulling from library/busybox", "id": "latest"},
                                          {"status": "Status: Downloaded newer image for busybox:latest"}]
    rc, out, err, client = run(["run", "-d", "busybox"], routes)
    assert rc == 0, err
    assert err.startswith("Unable to find image 'busybox:latest' locally\n")
    pull = [c for c in client.calls if c[1] == "/images/create"][0]
    assert pull[2] == {"fromImage": "busybox", "tag": "latest"}


def test_run_pull_failure_is_125():
    routes = _create_routes()
    routes[("POST", "/containers/create")] = errors.NotFound("No such image: nope:latest")
    routes[("POST", "/images/create")] = errors.NotFound("pull access denied for nope")
    rc, _, err, _ = run(["run", "nope"], routes)
    assert rc == 125
    assert "Error response from daemon: pull access denied for nope" in err


def test_run_pull_never():
    routes = _create_routes()
    routes[("POST", "/containers/create")] = errors.NotFound("No such image: nope:latest")
    rc, _, err, client = run(["run", "--pull", "never", "nope"], routes)
    assert rc == 125 and not any(c[1] == "/images/create" for c in client.calls)


@pytest.mark.parametrize("message,status", [
    ('exec: "nope": executable file not found in $PATH', 127),
    ("permission denied", 126),
])
def test_run_start_failure_exit_codes(message, status):
    routes = _create_routes(**{})
    routes[("POST", f"/containers/{CID}/start")] = errors.ConchError(message)
    routes[("POST", f"/containers/{CID}/attach")] = b""
    rc, _, err, _ = run(["run", "busybox", "nope"], routes)
    assert rc == status
    assert message in err


def _frame(stream, data):
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_run_attached_demuxes_and_returns_the_exit_code(capfd):
    routes = _create_routes()
    routes[("POST", f"/containers/{CID}/attach")] = _frame(1, b"out\n") + _frame(2, b"err\n")
    rc, _, err, client = run(["run", "busybox", "sh", "-c", "exit 3"], routes)
    captured = capfd.readouterr()
    assert rc == 3, err
    assert captured.out == "out\n" and captured.err == "err\n"
    order = [c[1].rsplit("/", 1)[-1] for c in client.calls]
    assert order.index("attach") < order.index("start")
    assert order.index("wait") < order.index("start")
    wait = [c for c in client.calls if c[1].endswith("/wait")][0]
    assert wait[2] == {"condition": "next-exit"}
    attach = [c for c in client.calls if c[1].endswith("/attach")][0]
    assert attach[2] == {"stream": 1, "stdin": 0, "stdout": 1, "stderr": 1}


def test_run_rm_waits_for_removal(capfd):
    routes = _create_routes()
    routes[("POST", f"/containers/{CID}/attach")] = b""
    rc, _, _, client = run(["run", "--rm", "busybox"], routes)
    wait = [c for c in client.calls if c[1].endswith("/wait")][0]
    assert wait[2] == {"condition": "removed"} and rc == 3


def test_stop_kill_restart_params():
    routes = {("POST", "/containers/web/stop"): None, ("POST", "/containers/web/kill"): None,
              ("POST", "/containers/web/restart"): None}
    rc, out, _, client = run(["stop", "-t", "2", "web"], routes)
    assert (rc, out, client.calls[0][2]) == (0, "web\n", {"t": 2})
    _, _, _, client = run(["kill", "-s", "HUP", "web"], routes)
    assert client.calls[0][2] == {"signal": "HUP"}
    _, _, _, client = run(["container", "restart", "--time", "0", "web"], routes)
    assert client.calls[0][:3] == ("POST", "/containers/web/restart", {"t": 0})


def test_wait_prints_codes():
    rc, out, _, _ = run(["wait", "web"], {("POST", "/containers/web/wait"): {"StatusCode": 7}})
    assert (rc, out) == (0, "7\n")


def test_port_output():
    info = {"Id": CID, "NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "53/udp": None}}}
    routes = {("GET", "/containers/web/json"): info}
    assert run(["port", "web"], routes)[1] == "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    assert run(["port", "web", "80"], routes)[1] == "0.0.0.0:8080\n[::]:8080\n"
    rc, _, err, _ = run(["port", "web", "81"], routes)
    assert rc == 1 and "No public port '81/tcp' published for web" in err


def test_logs_demux(capfd):
    info = {"Id": CID, "Config": {"Tty": False}}
    routes = {("GET", "/containers/web/json"): info,
              ("GET", f"/containers/{CID}/logs"): [_frame(1, b"a\n"), _frame(2, b"b\n")]}
    client = FakeClient(routes)
    rc = cli.main(["logs", "--tail", "5", "-t", "web"], client=client)
    captured = capfd.readouterr()
    assert rc == 0 and captured.out == "a\n" and captured.err == "b\n"
    assert client.calls[1][2] == {"stdout": 1, "stderr": 1, "tail": "5", "timestamps": 1}


def test_exec_detached_body():
    routes = {("POST", "/containers/web/exec"): {"Id": "e1"}, ("POST", "/exec/e1/start"): None}
    rc, _, _, client = run(["exec", "-d", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "web",
                            "ls", "-la"], routes)
    body = client.calls[0][3]
    assert rc == 0
    assert body["Cmd"] == ["ls", "-la"] and body["Env"] == ["A=1"]
    assert body["WorkingDir"] == "/tmp" and body["User"] == "nobody"
    assert body["AttachStdout"] is False
    assert client.calls[1][3] == {"Detach": True, "Tty": False}


def test_exec_attached_exit_code(capfd):
    routes = {("POST", "/containers/web/exec"): {"Id": "e1"},
              ("POST", "/exec/e1/start"): _frame(1, b"hi\n"),
              ("GET", "/exec/e1/json"): {"ExitCode": 42}}
    rc, _, _, _ = run(["exec", "web", "sh", "-c", "exit 42"], routes)
    assert rc == 42 and capfd.readouterr().out == "hi\n"


def test_rmi_and_tag():
    routes = {("DELETE", "/images/busybox"): [{"Untagged": "busybox:latest"}, {"Deleted": IMG}],
              ("POST", "/images/busybox/tag"): None}
    rc, out, _, _ = run(["rmi", "busybox"], routes)
    assert out == f"Untagged: busybox:latest\nDeleted: {IMG}\n"
    _, _, _, client = run(["tag", "busybox", "localhost:5000/me/bb:v1"], routes)
    assert client.calls[0][2] == {"repo": "localhost:5000/me/bb", "tag": "v1"}
    _, _, _, client = run(["image", "tag", "busybox", "mine"], routes)
    assert client.calls[0][2] == {"repo": "mine", "tag": "latest"}


def test_import_from_file(tmp_path):
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(b"TAR")
    routes = {("POST", "/images/create"): [{"status": IMG}]}
    rc, out, err, client = run(["import", "-m", "hello", "-c", "CMD [\"sh\"]", str(tar), "bb:1"], routes)
    assert (rc, out) == (0, IMG + "\n"), err
    method, path, params, body = client.calls[0]
    assert params == {"fromSrc": "-", "repo": "bb", "tag": "1", "message": "hello",
                      "changes": ['CMD ["sh"]']}
    assert body == b"TAR"


def test_history_table():
    hist = [{"Id": IMG, "Created": int(NOW - 60), "CreatedBy": "/bin/sh -c #(nop)  CMD [\"sh\"] with a very long tail",
             "Size": 0, "Comment": ""},
            {"Id": "<missing>", "Created": int(NOW - 60), "CreatedBy": "ADD file", "Size": 4_261_000,
             "Comment": "imported"}]
    rc, out, _, _ = run(["history", "busybox"], {("GET", "/images/busybox/history"): hist})
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith("b1b1b1b1b1b1") and "…" in lines[1]
    assert lines[2].startswith("<missing>") and "4.26MB" in lines[2]


def test_container_prune_forced():
    routes = {("POST", "/containers/prune"): {"ContainersDeleted": [CID], "SpaceReclaimed": 1500}}
    rc, out, _, _ = run(["container", "prune", "-f"], routes)
    assert out == f"Deleted Containers:\n{CID}\n\nTotal reclaimed space: 1.5kB\n"


def test_system_df():
    df = {"LayersSize": 4_261_000, "Images": [dict(IMAGE, Containers=1, SharedSize=0)],
          "Containers": [{"Id": CID, "SizeRw": 0, "State": "running"}], "Volumes": [], "BuildCache": []}
    rc, out, _, _ = run(["system", "df"], {("GET", "/system/df"): df})
    lines = out.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert lines[1].split()[:4] == ["Images", "1", "1", "4.261MB"]


def test_events_line():
    from conch.cli.system import event_line

    ev = {"Type": "container", "Action": "start", "Actor": {"ID": CID, "Attributes": {"name": "web", "image": "busybox"}},
          "time": 1700000000, "timeNano": 1700000000123456789}
    line = event_line(ev)
    assert line.endswith(f" container start {CID} (image=busybox, name=web)")
    assert ".123456789" in line


def test_version_without_daemon():
    rc, out, err, _ = run(["version"], {("GET", "/version"): errors.Unavailable("Cannot connect to the conch daemon")})
    assert rc == 1 and out.startswith("Client:\n Version:")
    assert "Cannot connect" in err


def test_help_lists_verbs():
    rc, out, _, _ = run(["--help"], {})
    assert rc == 0 and "  run " in out and "container" in out
    rc, out, _, _ = run(["container"], {})
    assert rc == 0 and "  ls " in out


def test_ps_does_not_import_tty_or_run_options():
    import subprocess
    import sys

    code = ("import sys; from conch.cli import main; "
            "main.main(['ps', '--help']) ; "
            "bad = [m for m in ('termios', 'tty', 'conch.cli.tty', 'conch.cli.run_flags', 'conch.cli.flag_values', 'conch.cli.create_body', 'tarfile') if m in sys.modules]; "
            "print('BAD', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "BAD []" in out
