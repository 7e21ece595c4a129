"""The Engine API calls conch compose makes, over ``conch.client`` only (like the CLI).

One thin function per call, in docker's JSON; the orchestration is in
:mod:`conch.compose.project`.
"""

from __future__ import annotations

import io
import os
import tarfile
import time

from conch import errors
from conch.client.http import quote_name

__all__ = ["Api"]


class Api:
    def __init__(self, client) -> None:
        self.c = client

    # -- containers --
    def containers(self, project: str, *, service: str | None = None, all: bool = True,
                   oneoff: bool | None = False) -> list[dict]:
        labels = [f"com.docker.compose.project={project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        if oneoff is not None:
            labels.append(f"com.docker.compose.oneoff={'True' if oneoff else 'False'}")
        items = self.c.get("/containers/json", all=all, filters={"label": labels})
        return sorted(items, key=lambda c: (c["Labels"].get("com.docker.compose.service", ""),
                                            _number(c)))

    def inspect(self, cid: str) -> dict:
        return self.c.get(f"/containers/{quote_name(cid)}/json")

    def create(self, name: str, body: dict) -> str:
        return self.c.post("/containers/create", body, name=name)["Id"]

    def start(self, cid: str) -> None:
        self.c.request("POST", f"/containers/{cid}/start").close()

    def stop(self, cid: str, timeout: int | None = None) -> None:
        self.c.request("POST", f"/containers/{cid}/stop", params={"t": timeout}).close()

    def restart(self, cid: str, timeout: int | None = None) -> None:
        self.c.request("POST", f"/containers/{cid}/restart", params={"t": timeout}).close()

    def remove(self, cid: str, *, volumes: bool = False, force: bool = True) -> None:
        try:
            self.c.request("DELETE", f"/containers/{cid}", params={"v": volumes, "force": force}).close()
        except errors.NotFound:
            pass

    def connect(self, network: str, cid: str, endpoint: dict) -> None:
        self.c.request("POST", f"/networks/{quote_name(network)}/connect",
                       json_body={"Container": cid, "EndpointConfig": endpoint}).close()

    def wait_state(self, cid: str, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self.inspect(cid)
            verdict = pred(info)
            if verdict:
                return info
            if time.monotonic() > deadline:
                raise errors.ConchError(f"container {info['Name'].lstrip('/')} {what}: timed out")
            time.sleep(0.2)

    # -- networks and volumes --
    def networks(self, project: str) -> list[dict]:
        return self.c.get("/networks", filters={"label": [f"com.docker.compose.project={project}"]})

    def network(self, name: str) -> dict | None:
        try:
            return self.c.get(f"/networks/{quote_name(name)}")
        except errors.NotFound:
            return None

    def create_network(self, body: dict) -> None:
        self.c.post("/networks/create", body)

    def remove_network(self, name: str) -> None:
        try:
            self.c.request("DELETE", f"/networks/{quote_name(name)}").close()
        except errors.NotFound:
            pass

    def volumes(self, project: str) -> list[dict]:
        out = self.c.get("/volumes", filters={"label": [f"com.docker.compose.project={project}"]})
        return out.get("Volumes") or []

    def volume(self, name: str) -> dict | None:
        try:
            return self.c.get(f"/volumes/{quote_name(name)}")
        except errors.NotFound:
            return None

    def create_volume(self, body: dict) -> None:
        self.c.post("/volumes/create", body)

    def remove_volume(self, name: str) -> None:
        try:
            self.c.request("DELETE", f"/volumes/{quote_name(name)}").close()
        except errors.NotFound:
            pass

    # -- images --
    def image(self, ref: str) -> dict | None:
        try:
            return self.c.get(f"/images/{quote_name(ref)}/json")
        except errors.NotFound:
            return None

    def remove_image(self, ref: str) -> None:
        try:
            self.c.request("DELETE", f"/images/{quote_name(ref)}").close()
        except (errors.NotFound, errors.Conflict):
            pass

    def pull(self, ref: str, out) -> None:
        name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        for item in self.c.stream_json("POST", "/images/create", params={"fromImage": name, "tag": tag}):
            if out is not None and item.get("status") and not item.get("progressDetail"):
                pass

    def push(self, ref: str) -> None:
        name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        for _ in self.c.stream_json("POST", f"/images/{quote_name(name)}/push", params={"tag": tag},
                                    ):
            pass

    def build(self, build: dict, tag: str, labels: dict, out, *, no_cache: bool = False) -> None:
        ctx = build["context"]
        dockerfile = build.get("dockerfile") or "Dockerfile"
        params = {"t": tag, "dockerfile": dockerfile, "rm": True, "nocache": no_cache,
                  "labels": labels, "buildargs": build.get("args") or {},
                  "target": build.get("target") or None}
        tar = _context_tar(ctx, dockerfile)
        resp = self.c.send_file("POST", "/build", tar, params=params,
                                headers={"Content-Type": "application/x-tar"})
        for item in self.c.stream_json("POST", "/build", response=resp):
            if out is not None and item.get("stream"):
                out.write(item["stream"])


def _number(c: dict) -> int:
    try:
        return int(c["Labels"].get("com.docker.compose.container-number", "0"))
    except ValueError:
        return 0


def _context_tar(path: str, dockerfile: str) -> io.BytesIO:
    """The build context as a tar, ``.dockerignore``'s matches left out (the pure matcher
    the CLI's build uses)."""
    ignore = None
    di = os.path.join(path, ".dockerignore")
    if os.path.isfile(di):
        from conch.build.dockerignore import DockerIgnore

        with open(di, encoding="utf-8", errors="surrogateescape") as f:
            ignore = DockerIgnore.parse(f.read())
    keep = {dockerfile, ".dockerignore"}
    buf = io.BytesIO()

    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path)
                if ignore is not None and rel not in keep and ignore.excluded(rel):
                    continue
                tar.add(full, arcname=rel, recursive=False, filter=reset)
    buf.seek(0)
    return buf
