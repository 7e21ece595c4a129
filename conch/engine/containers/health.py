"""Health checks (``--health-cmd`` and friends, or the image's HEALTHCHECK).

Docker's semantics (daemon/health.go): the first probe runs ``interval`` after start;
each probe runs the test inside the container (``CMD`` args, or ``CMD-SHELL`` through
``/bin/sh -c``) with a ``timeout``; exit 0 is healthy and resets the failing streak,
anything else (or a timeout) adds to it, and ``retries`` consecutive failures make the
container unhealthy — except failures during ``start_period``, which do not count. The
last five results are kept. Defaults: 30 s interval, 30 s timeout, 3 retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets

from conch.engine.model import Container, Health, HealthConfig, now_rfc3339

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096


def effective(c: Container, image_config) -> HealthConfig | None:
    """The container's health config merged over the image's; None when disabled."""
    image_hc = None
    cfg = image_config.config if image_config is not None else None
    if cfg is not None and cfg.healthcheck is not None:
        h = cfg.healthcheck
        image_hc = HealthConfig(test=tuple(h.test or ()), interval_ns=h.interval,
                                timeout_ns=h.timeout, start_period_ns=h.start_period,
                                retries=h.retries)
    hc = c.spec.healthcheck
    if hc is None:
        hc = image_hc
    elif image_hc is not None and not hc.test:
        hc = dataclasses.replace(image_hc, **{k: v for k, v in dataclasses.asdict(hc).items() if v})
    if hc is None or not hc.test or hc.test[0] == "NONE":
        return None
    return hc


def command(hc: HealthConfig) -> list[str]:
    kind, *rest = hc.test
    if kind == "CMD":
        return list(rest)
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    return list(hc.test)  # a bare command list: docker treats it as CMD


async def probe(socket_path: str, exec_dir: str, bundle: str, args: list[str],
                timeout: float) -> tuple[int, str]:
    """Run one probe through the container's shim, as ``docker exec`` runs
    (:mod:`conch.engine.containers.execs`): the probe is the shim's child, not a
    ``conch-runtime exec`` of ours, and a probe past its timeout is killed itself (by
    pidfd), not just the runtime that ran it. (exit code, output: stdout and stderr
    together, the first MAX_OUTPUT bytes)."""
    from conch.errors import ConchError
    from conch.shim import client as shim

    with open(os.path.join(bundle, "config.json")) as f:
        process = dict(json.load(f)["process"])
    process["args"] = args
    process["terminal"] = False
    os.makedirs(exec_dir, exist_ok=True)
    base = os.path.join(exec_dir, f"health-{secrets.token_hex(8)}")
    files = {"process": f"{base}.json", "pid_file": f"{base}.pid", "exit_file": f"{base}.exit.json"}
    with open(files["process"], "w") as f:
        json.dump(process, f)
    r, w = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    conn = transport = None
    pidfd: list[int] = []

    async def run(reader, out: asyncio.StreamReader) -> tuple[int, bytes]:
        first = shim.parse_exec_reply(await reader.readline() or b'{"exit_code": -1}')
        if "exit_code" not in first:
            try:
                pidfd.append(os.pidfd_open(int(first["pid"])))
            except OSError:
                pass  # gone already: its exit line follows
        data = b""
        while chunk := await out.read(65536):  # to EOF, as communicate() did; keep the head
            data += chunk[:MAX_OUTPUT - len(data)]
        if "exit_code" not in first:
            line = await reader.readline()
            first = (shim.parse_exec_reply(line) if line else None) \
                or shim.read_exit(files["exit_file"]) or {"exit_code": -1}
        return int(first["exit_code"]), data

    try:
        try:
            sock = await asyncio.to_thread(shim.exec_request, socket_path, stdio=(null, w, w),
                                           timeout=10, **files)
        finally:
            os.close(null)
            os.close(w)
        reader, conn = await asyncio.open_unix_connection(sock=sock)
        out = asyncio.StreamReader()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(out), os.fdopen(r, "rb", buffering=0))
        r = -1
        try:
            code, data = await asyncio.wait_for(run(reader, out), timeout)
        except asyncio.TimeoutError:
            if pidfd:
                import signal

                try:
                    signal.pidfd_send_signal(pidfd[0], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        return code, data.decode(errors="replace")
    except (ConchError, OSError) as exc:  # the shim is gone (the container is exiting)
        return -1, f"health check: {exc}"
    finally:
        if r >= 0:
            os.close(r)
        if transport is not None:
            transport.close()
        if conn is not None:
            conn.close()
        for fd in pidfd:
            os.close(fd)
        for path in files.values():
            try:
                os.unlink(path)
            except OSError:
                pass


def record(health: Health, hc: HealthConfig, code: int, output: str, start: str,
           in_start_period: bool) -> Health:
    entry = {"start": start, "end": now_rfc3339(), "exit_code": code, "output": output}
    log_entries = (tuple(health.log) + (entry,))[-5:]
    if code == 0:
        return Health(status="healthy", failing_streak=0, log=log_entries)
    if in_start_period:
        return dataclasses.replace(health, log=log_entries)
    streak = health.failing_streak + 1
    retries = hc.retries or DEFAULT_RETRIES
    status = "unhealthy" if streak >= retries else health.status
    return Health(status=status, failing_streak=streak, log=log_entries)
