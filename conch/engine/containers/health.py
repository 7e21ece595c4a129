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
import tempfile

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


async def probe(runtime: str, runtime_root: str, bundle: str, cid: str, args: list[str],
                timeout: float) -> tuple[int, str]:
    """Run one probe through ``conch-runtime exec``; (exit code, output)."""
    with open(os.path.join(bundle, "config.json")) as f:
        process = dict(json.load(f)["process"])
    process["args"] = args
    process["terminal"] = False
    fd, path = tempfile.mkstemp(prefix="health-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(process, f)
    try:
        proc = await asyncio.create_subprocess_exec(
            runtime, "--root", runtime_root, "exec", "--process", path, cid,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        return proc.returncode, out[:MAX_OUTPUT].decode(errors="replace")
    finally:
        os.unlink(path)


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
