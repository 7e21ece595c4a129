"""Replicas behind one published port (issue 12): the engine's side of
:meth:`conch.network.firewall.Firewall.set_backends`.

Docker refuses a second container on a host port ("port is already allocated"); here the
replicas of one service may share it. A container belongs to a *port group* when it is a
compose replica (labels ``com.docker.compose.project`` + ``.service``, not a one-off:
docker compose and docker-compose 1.29 both set them) or carries ``io.conch.port-group``.
Members of one group publishing the same fixed ``host_ip:host_port/proto`` to the same
container port share it; anyone else still gets docker's Conflict.

Life of a member's port (its entry in the sandbox state has ``"group"`` and ``"ready"``):

1. setup (start): the host port is reserved (idempotent for this daemon: the first
   member's reservation serves all), the entry recorded with ``ready: False``: not yet a
   backend, so no connection reaches a process that is not listening yet;
2. ready: with a healthcheck, when it reports healthy; without one, once the container
   listens on the port (``/proc/<pid>/net/tcp`` of its namespace; udp at once). The
   backend set of the port is rewritten from every ready member (one nft transaction);
3. unhealthy: out of the set again; healthy: back in;
4. stop (drain): out of the set *before* the stop signal, then wait (bounded) until the
   container has no open connection on the port: conntrack keeps each existing
   connection on its backend, so in-flight requests finish and new ones go elsewhere;
5. teardown: out of the set; the last member gone, the chain is removed and the host
   port released.

The socket LB (``conch.network.socklb``) is never given a shared port: it rewrites a host
connect() to one fixed container address and would bypass the balancing.

State lives in the sandbox files (``ready`` included), so a restarted conchd rebuilds
every shared port from them (:func:`resync`) and prunes chains of groups that went away.
"""

from __future__ import annotations

import logging
import time

from conch.engine.network import sandbox
from conch.errors import ConchError, Conflict

__all__ = ["group_of", "is_shared", "reserve", "set_ready", "wait_listening", "drain",
           "leave", "resync", "has_shared"]

log = logging.getLogger(__name__)

PROJECT, SERVICE, ONEOFF = ("com.docker.compose.project", "com.docker.compose.service",
                            "com.docker.compose.oneoff")
GROUP_LABEL = "io.conch.port-group"
_TCP_LISTEN, _TCP_DONE = "0A", {"06", "07", "0A"}  # LISTEN; TIME_WAIT, CLOSE, LISTEN


def group_of(c) -> str | None:
    labels = c.spec.labels or {}
    if labels.get(GROUP_LABEL):
        return labels[GROUP_LABEL]
    if labels.get(PROJECT) and labels.get(SERVICE) and labels.get(ONEOFF, "False") != "True":
        return f"{labels[PROJECT]}/{labels[SERVICE]}"
    return None


def is_shared(c, r: dict) -> bool:
    """A request for a fixed host port by a group member."""
    return group_of(c) is not None and r["host_port"] != 0 and r["host_port"] == r["host_port_end"]


def _key(p: dict) -> tuple[str, str, int]:
    return (p["proto"], p["host_ip"], int(p["host_port"]))


def _overlaps(p: dict, proto: str, host_ip: str, port: int) -> bool:
    return p["proto"] == proto and int(p["host_port"]) == port and (
        "0.0.0.0" in (p["host_ip"], host_ip) or p["host_ip"] == host_ip)


def reserve(svc, c, r: dict, ep: dict, net, state: dict) -> dict:
    """Step 1 (caller holds nothing; takes ``svc._lock``): the entry, recorded not ready."""
    group = group_of(c)
    port = r["host_port"]
    with svc._lock:
        for cid, s in svc.sandboxes.items():
            if cid == c.id:
                continue
            for p in s.get("ports", ()):
                if not _overlaps(p, r["proto"], r["host_ip"], port):
                    continue
                if p.get("group") != group or p["host_ip"] != r["host_ip"] or \
                        int(p["container_port"]) != r["container_port"]:
                    raise Conflict(f"driver failed programming external connectivity: Bind for "
                                   f"{r['host_ip']}:{port} failed: port is already allocated")
        svc.ports.reserve(proto=r["proto"], host_ip=r["host_ip"], host_port=port)
        entry = {"proto": r["proto"], "host_ip": r["host_ip"], "host_port": port,
                 "container_port": r["container_port"], "container_ip": ep["ip"],
                 "bridge": net.bridge, "group": group, "ready": False}
        state["ports"].append(entry)
        sandbox.save(svc.state_root, state)
        _sync(svc, _key(entry))
    return entry


def _backends(svc, key) -> list[tuple[str, int]]:
    return [(p["container_ip"], int(p["container_port"]))
            for s in svc.sandboxes.values() for p in s.get("ports", ())
            if p.get("group") and _key(p) == key and p.get("ready")]


def _members(svc, key) -> int:
    return sum(1 for s in svc.sandboxes.values() for p in s.get("ports", ())
               if p.get("group") and _key(p) == key)


def _sync(svc, key) -> None:
    """Callers hold ``svc._lock``: the port's backend set from the ready members."""
    svc.firewall.set_backends(proto=key[0], host_ip=key[1], host_port=key[2],
                              backends=_backends(svc, key))


def has_shared(svc, cid: str) -> bool:
    with svc._lock:
        return any(p.get("group") for p in (svc.sandboxes.get(cid) or {}).get("ports", ()))


def set_ready(svc, cid: str, ready: bool) -> bool:
    """Steps 2-4: ``cid``'s shared ports in or out of their backend sets. True when it
    has any."""
    with svc._lock:
        state = svc.sandboxes.get(cid)
        entries = [p for p in (state or {}).get("ports", ()) if p.get("group")]
        changed = [p for p in entries if bool(p.get("ready")) != ready]
        if not changed:
            return bool(entries)
        for p in changed:
            p["ready"] = ready
        sandbox.save(svc.state_root, state)
        for key in dict.fromkeys(_key(p) for p in changed):
            try:
                _sync(svc, key)
            except ConchError as exc:
                log.warning("shared port %s of %s: %s", key, cid[:12], exc)
    return True


def _open_connections(pid: int, ports: set[int]) -> int | None:
    """Sockets of ``pid``'s network namespace on one of ``ports`` that are not done
    (established, closing); None when the process is gone."""
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            return None if name == "tcp" else count
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) in ports \
                    and fields[3] not in _TCP_DONE:
                count += 1
    return count


def _listening(pid: int, port: int) -> bool | None:
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            if name == "tcp":
                return None
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN and \
                    int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_listening(svc, cid: str, pid: int, timeout: float = 60.0) -> None:
    """Step 2 without a healthcheck (blocking; run in a worker thread): ready once every
    shared tcp port is listened on inside the container."""
    with svc._lock:
        ports = {int(p["container_port"]) for p in (svc.sandboxes.get(cid) or {}).get("ports", ())
                 if p.get("group") and p["proto"] == "tcp"}
    deadline = time.monotonic() + timeout
    while ports:
        ports = {port for port in ports if _listening(pid, port) is False}
        if not ports or time.monotonic() > deadline:
            break
        if not has_shared(svc, cid):
            return  # stopped meanwhile
        time.sleep(0.05)
    set_ready(svc, cid, True)


def drain(svc, cid: str, pid: int | None, timeout: float) -> None:
    """Step 4 (blocking; run in a worker thread): out of the balancer, then wait until
    the container's open connections on its shared ports have finished (at most
    ``timeout`` seconds; at least a short grace for packets already on their way)."""
    with svc._lock:
        ports = {int(p["container_port"]) for p in (svc.sandboxes.get(cid) or {}).get("ports", ())
                 if p.get("group")}
    if not set_ready(svc, cid, False) or not pid:
        return
    time.sleep(0.05)
    deadline = time.monotonic() + max(timeout, 0.0)
    while time.monotonic() < deadline:
        n = _open_connections(pid, ports)
        if not n:
            return
        time.sleep(0.05)


def leave(svc, p: dict) -> None:
    """Step 5, for one entry of a sandbox already removed from ``svc.sandboxes``."""
    key = _key(p)
    with svc._lock:
        try:
            if _members(svc, key):
                _sync(svc, key)
                return
            svc.firewall.remove_shared(proto=key[0], host_ip=key[1], host_port=key[2])
        except ConchError as exc:
            log.warning("shared port %s: %s", key, exc)
        try:
            svc.ports.release(proto=key[0], host_ip=key[1], host_port=key[2])
        except ConchError as exc:
            log.warning("releasing %s: %s", key, exc)


def resync(svc) -> None:
    """After a conchd start (callers hold ``svc._lock``): every shared port's backend set
    from the sandbox files; chains of ports no member holds any more removed."""
    keys = {_key(p) for s in svc.sandboxes.values() for p in s.get("ports", ()) if p.get("group")}
    for key in keys:
        try:
            _sync(svc, key)
        except ConchError as exc:
            log.warning("shared port %s not restored: %s", key, exc)
    try:
        svc.firewall.prune_shared(keys)
    except ConchError as exc:
        log.warning("pruning shared ports: %s", exc)

