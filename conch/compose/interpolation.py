"""Variable interpolation in Compose files and ``.env`` parsing (pure).

The Compose Specification's rules (spec.md "Interpolation"): ``$VAR`` and ``${VAR}``,
``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset), ``${VAR:?err}`` /
``${VAR?err}`` (required, with an error), ``${VAR:+alt}`` / ``${VAR+alt}`` (set: alt), and
``$$`` for a literal ``$``. Defaults may themselves hold ``${...}`` (nested, as docker
compose v2 allows). Interpolation applies to values only, never to keys, and happens
before validation, as docker compose does it.
"""

from __future__ import annotations

import re

from conch.errors import InvalidArgument

__all__ = ["interpolate", "substitute", "parse_env_file"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute(text: str, env: dict[str, str], *, where: str = "") -> str:
    """``text`` with its variables replaced from ``env``; an unset variable without a
    default is the empty string (docker compose warns; we stay quiet)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if i + 1 < n and text[i + 1] == "{":
            end = _closing(text, i + 2)
            if end < 0:
                raise InvalidArgument(f"{where}: invalid interpolation format for {text!r}: "
                                      "missing '}'")
            out.append(_braced(text[i + 2:end], env, where, text))
            i = end + 1
            continue
        m = _NAME.match(text, i + 1)
        if m is None:
            out.append("$")  # a lone '$' stays (compose v2 does the same)
            i += 1
            continue
        out.append(env.get(m.group(), ""))
        i = m.end()
    return "".join(out)


def _closing(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(body: str, env: dict[str, str], where: str, whole: str) -> str:
    m = _NAME.match(body)
    if m is None:
        raise InvalidArgument(f"{where}: invalid interpolation format for {whole!r}: "
                              f"'${{{body}}}' is not a variable")
    name, rest = m.group(), body[m.end():]
    value = env.get(name)
    if not rest:
        return value or ""
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op):]
            break
    else:
        raise InvalidArgument(f"{where}: invalid interpolation format for {whole!r}: "
                              f"unknown operator in '${{{body}}}'")
    empty_counts = op.startswith(":")
    missing = value is None or (empty_counts and value == "")
    kind = op[-1]
    if kind == "-":
        return substitute(arg, env, where=where) if missing else value
    if kind == "+":
        return "" if missing else substitute(arg, env, where=where)
    if missing:  # '?'
        msg = substitute(arg, env, where=where) or f"variable {name} is not set"
        raise InvalidArgument(f"required variable {name} is missing a value: {msg}")
    return value


def interpolate(node, env: dict[str, str], path: tuple = ()):
    """Every string value of a loaded YAML tree, substituted (keys are left alone)."""
    if isinstance(node, str):
        return substitute(node, env, where=".".join(map(str, path)) or "(root)")
    if isinstance(node, dict):
        return {k: interpolate(v, env, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, path + (i,)) for i, v in enumerate(node)]
    return node


def parse_env_file(text: str, *, where: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """A ``.env``/``env_file``: ``KEY=VALUE`` lines, ``#`` comments, optional ``export``,
    single quotes literal, double quotes with ``\\n`` escapes, unquoted values with an
    inline `` #`` comment cut; a bare ``KEY`` takes its value from ``env`` when present
    (docker compose's format, a subset of dotenv)."""
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key):
            raise InvalidArgument(f"{where}:{lineno}: unexpected character in variable name "
                                  f"{key!r}")
        if not sep:
            if env is not None and key in env:
                out[key] = env[key]
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n").replace('\\"', '"')
        else:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out
