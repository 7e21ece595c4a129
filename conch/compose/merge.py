"""Merging Compose files (``-f a.yml -f b.yml``) and ``extends`` (pure).

The Compose Specification's merge rules (merge.md), on raw (interpolated) YAML trees:
mappings merge key by key, the later file winning for scalars; ``command``,
``entrypoint`` and ``healthcheck.test`` are replaced whole; ``environment``, ``labels``,
``build.args``, ``sysctls``, ``extra_hosts`` and other list-or-mapping keys merge as
mappings; ``volumes``/``secrets``/``configs`` of a service merge by target path (the later
entry for one target wins); other sequences (``ports``, ``dns``, ``expose``…) are the union
in order.
"""

from __future__ import annotations

from conch.errors import InvalidArgument

__all__ = ["merge_models", "merge_service", "as_mapping"]

_REPLACE = {"command", "entrypoint"}
_MAPPINGS = {"environment", "labels", "args", "sysctls", "extra_hosts", "annotations",
             "driver_opts", "options"}
_BY_TARGET = {"volumes", "secrets", "configs"}


def as_mapping(value, *, sep: str = "=") -> dict:
    """A list-or-dict value (``["A=1", "B"]`` or ``{A: 1}``) as a dict (None for ``B``)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    out: dict = {}
    for item in value:
        key, found, val = str(item).partition(sep)
        out[key] = val if found else None
    return out


def _target(entry) -> str:
    if isinstance(entry, dict):
        return str(entry.get("target") or entry.get("source"))
    text = str(entry)
    parts = text.split(":")
    # "src:dst[:mode]" for volumes; a secret/config short form is its name
    return parts[1] if len(parts) >= 2 else parts[0]


def _merge_list(key: str, base: list, over: list) -> list:
    if key in _BY_TARGET:
        merged = {_target(e): e for e in base}
        for e in over:
            merged[_target(e)] = e
        return list(merged.values())
    out = list(base)
    for e in over:
        if e not in out:
            out.append(e)
    return out


def _merge(key: str, base, over, path: str):
    if over is None:
        return base
    if key in _REPLACE or path.endswith("healthcheck.test"):
        return over
    if key in _MAPPINGS and isinstance(base, (list, dict)) and isinstance(over, (list, dict)):
        sep = ":" if key == "extra_hosts" else "="
        merged = as_mapping(base, sep=sep)
        merged.update(as_mapping(over, sep=sep))
        return merged
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(k, base[k], v, f"{path}.{k}") if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list):
        return _merge_list(key, base, over)
    return over


def merge_service(base: dict, over: dict, *, path: str = "service") -> dict:
    """``over`` on top of ``base`` (both one service's mapping)."""
    if key_build := (base.get("build"), over.get("build")):
        # a string build is its context: normalise both so they merge as mappings
        b, o = (({"context": x} if isinstance(x, str) else x) for x in key_build)
        if b is not None and o is not None:
            base = {**base, "build": b}
            over = {**over, "build": o}
    return _merge("", base, over, path)


def merge_models(models: list[tuple[str, dict]]) -> dict:
    """Merge each file's top-level mapping onto the previous ones'."""
    result: dict = {}
    for source, model in models:
        if model is None:
            continue
        if not isinstance(model, dict):
            raise InvalidArgument(f"{source}: top-level object must be a mapping")
        for key, value in model.items():
            if key == "services" and isinstance(value, dict):
                services = dict(result.get("services") or {})
                for name, svc in value.items():
                    svc = svc or {}
                    if name in services and isinstance(svc, dict):
                        services[name] = merge_service(services[name], svc,
                                                       path=f"services.{name}")
                    else:
                        services[name] = svc
                result["services"] = services
            elif key in result:
                result[key] = _merge(key, result[key], value, key)
            else:
                result[key] = value
    return result
