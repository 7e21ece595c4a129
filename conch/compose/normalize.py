"""One normalised shape for each service (pure): every short syntax of the Compose
Specification turned into its long form, so the rest of conch compose reads one shape.

    ports     [{"target": 80, "published": "8080", "host_ip": "", "protocol": "tcp"}]
    volumes   [{"type": "volume"|"bind"|"tmpfs", "source", "target", "read_only"}]
    networks  {"name": {"aliases": [...], "ipv4_address": ...}}   ("default" when none)
    depends_on {"svc": {"condition": "service_started", "required": True, "restart": False}}
    environment {K: V} (env_file first, then environment; ``K`` alone: from the shell)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from conch.errors import InvalidArgument
from conch.oci.duration import duration_ns as go_duration_ns
from conch.compose.interpolation import parse_env_file
from conch.compose.merge import as_mapping

__all__ = ["normalize_service", "normalize_resources", "duration_ns", "size_bytes",
           "parse_port"]

def duration_ns(value, *, where: str = "") -> int:
    """Go's duration syntax (``1m30s``, ``500ms``); a bare number is seconds."""
    if isinstance(value, (int, float)):
        return int(value * 1_000_000_000)
    text = str(value).strip()
    try:
        return go_duration_ns(text)
    except ValueError:
        raise InvalidArgument(f"{where}: invalid duration {text!r}") from None


def size_bytes(value, *, where: str = "") -> int:
    """``64m``, ``1g``, ``512k``, ``100b`` or a plain number of bytes (docker's units)."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value).lower())
    if not m:
        raise InvalidArgument(f"{where}: invalid size {value!r}")
    mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def _range(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def parse_port(entry, *, where: str) -> list[dict]:
    """A ``ports`` entry (short or long syntax) as one dict per container port."""
    if isinstance(entry, dict):
        return [{"target": int(entry["target"]), "published": str(entry.get("published") or ""),
                 "host_ip": entry.get("host_ip") or "", "protocol": entry.get("protocol") or "tcp"}]
    text = str(entry)
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
    host_ip = ""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(.*)", text)
    if m:
        host_ip, text = m.group(1), m.group(2)
    parts = text.split(":")
    try:
        if len(parts) == 1:
            published, target = "", parts[0]
        elif len(parts) == 2:
            published, target = parts
        elif len(parts) == 3 and not host_ip:
            host_ip, published, target = parts
        else:
            raise ValueError(text)
        targets = _range(target)
        hosts = _range(published) if published else []
    except ValueError as exc:
        raise InvalidArgument(f"{where}: invalid port {entry!r}") from exc
    if hosts and len(hosts) not in (1, len(targets)):
        raise InvalidArgument(f"{where}: port ranges {published} and {target} differ in size")
    out = []
    for i, t in enumerate(targets):
        pub = "" if not hosts else str(hosts[i] if len(hosts) > 1 else hosts[0])
        if hosts and len(hosts) == 1 and len(targets) > 1:
            pub = published  # "8000:80-81" is docker's "a free port of 8000" per target
        out.append({"target": t, "published": pub, "host_ip": host_ip, "protocol": proto})
    return out


def _volume(entry, workdir: Path, where: str) -> dict:
    if isinstance(entry, dict):
        v = {"type": entry.get("type", "volume"), "source": entry.get("source") or "",
             "target": entry["target"], "read_only": bool(entry.get("read_only"))}
    else:
        parts = str(entry).split(":")
        if len(parts) == 1:
            v = {"type": "volume", "source": "", "target": parts[0], "read_only": False}
        else:
            mode = parts[2] if len(parts) > 2 else ""
            src = parts[0]
            kind = "bind" if src.startswith((".", "/", "~")) else "volume"
            v = {"type": kind, "source": src, "target": parts[1],
                 "read_only": "ro" in mode.split(",")}
    if v["type"] == "bind":
        src = v["source"]
        src = str(Path(src).expanduser()) if src.startswith("~") else src
        v["source"] = str((workdir / src).resolve()) if not src.startswith("/") else src
    elif v["type"] not in ("volume", "tmpfs"):
        raise InvalidArgument(f"{where}: unsupported volume type {v['type']!r}")
    return v


def _command(value):
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(x) for x in value]


def _healthcheck(hc: dict | None, where: str) -> dict | None:
    if not hc:
        return None
    if hc.get("disable"):
        return {"test": ["NONE"]}
    test = hc.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    out = {"test": list(test) if test else None}
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if hc.get(key) is not None:
            out[key] = duration_ns(hc[key], where=f"{where}.healthcheck.{key}")
    if hc.get("retries") is not None:
        out["retries"] = int(hc["retries"])
    return out


def _environment(svc: dict, workdir: Path, env: dict, where: str) -> dict:
    merged: dict[str, str] = {}
    files = svc.get("env_file") or []
    for item in [files] if isinstance(files, (str, dict)) else files:
        path, required = (item, True) if isinstance(item, str) else (item["path"], item.get("required", True))
        p = (workdir / path).resolve()
        if not p.is_file():
            if required:
                raise InvalidArgument(f"{where}.env_file: {p}: no such file")
            continue
        merged.update(parse_env_file(p.read_text(), where=str(p), env=env))
    for key, value in as_mapping(svc.get("environment")).items():
        if value is None:
            if key in env:
                merged[key] = env[key]
            continue
        merged[key] = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
    return merged


def _refs(items, kind: str) -> list[dict]:
    out = []
    for item in items or ():
        if isinstance(item, str):
            out.append({"source": item, "target": None})
        else:
            out.append({"source": item["source"], "target": item.get("target"),
                        "mode": item.get("mode")})
    return out


def normalize_service(name: str, svc: dict, workdir: Path, env: dict) -> dict:
    where = f"services.{name}"
    out = dict(svc)
    if "image" not in svc and "build" not in svc:
        raise InvalidArgument(f"service {name!r} has neither an image nor a build context "
                              "specified: invalid compose project")
    build = svc.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else dict(build)
        ctx = build.get("context", ".")
        build["context"] = str((workdir / ctx).resolve()) if "://" not in ctx else ctx
        build["args"] = {k: ("" if v is None else str(v))
                         for k, v in as_mapping(build.get("args")).items()}
    out["build"] = build
    out["command"] = _command(svc.get("command"))
    out["entrypoint"] = _command(svc.get("entrypoint"))
    out["environment"] = _environment(svc, workdir, env, where)
    out["labels"] = {k: "" if v is None else str(v) for k, v in as_mapping(svc.get("labels")).items()}
    out["ports"] = [p for i, e in enumerate(svc.get("ports") or ())
                    for p in parse_port(e, where=f"{where}.ports.{i}")]
    out["expose"] = [str(e) for e in svc.get("expose") or ()]
    out["volumes"] = [_volume(e, workdir, f"{where}.volumes.{i}")
                      for i, e in enumerate(svc.get("volumes") or ())]
    nets = svc.get("networks")
    if isinstance(nets, list):
        nets = {n: {} for n in nets}
    nets = {k: dict(v or {}) for k, v in (nets or {}).items()}
    if not nets and not svc.get("network_mode"):
        nets = {"default": {}}
    out["networks"] = nets
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        deps = {d: {} for d in deps}
    out["depends_on"] = {d: {"condition": (v or {}).get("condition", "service_started"),
                             "required": (v or {}).get("required", True),
                             "restart": bool((v or {}).get("restart"))}
                         for d, v in deps.items()}
    out["healthcheck"] = _healthcheck(svc.get("healthcheck"), where)
    deploy = dict(svc.get("deploy") or {})
    replicas = deploy.get("replicas", svc.get("scale", 1))
    out["replicas"] = int(1 if replicas is None else replicas)
    out["deploy"] = deploy
    out["secrets"] = _refs(svc.get("secrets"), "secrets")
    out["configs"] = _refs(svc.get("configs"), "configs")
    out["profiles"] = list(svc.get("profiles") or ())
    if "stop_grace_period" in svc:
        out["stop_grace_period"] = duration_ns(svc["stop_grace_period"], where=f"{where}.stop_grace_period")
    return out


def normalize_resources(section, workdir: Path | None = None) -> dict[str, dict]:
    """Top-level networks/volumes/secrets/configs: ``{name: {...}}`` (``name:`` null is
    ``{}``); a secret's or config's ``file`` made absolute."""
    out = {}
    for key, value in (section or {}).items():
        value = dict(value or {})
        if workdir is not None and value.get("file"):
            value["file"] = str((workdir / value["file"]).resolve())
        out[key] = value
    return out
