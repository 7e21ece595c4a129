"""What the CLI's verb modules share: quoting a name into a request path, applying an
action to each name docker's way (errors reported, exit 1), argument-count checks, the
``--filter`` JSON, ``--since``/``--until`` timestamps, the y/N prompt of prune verbs and
a container's inspect record.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch import errors
from conch.cli.main import Context, UsageError, describe_error


# -- small helpers ---------------------------------------------------------------------------


def quote_path(value: str) -> str:
    from conch.client.lean import quote  # not urllib.parse: ~3 ms of start-up

    return quote(value, safe="/:@")


def each_name(ctx: Context, names: list[str], action, echo: bool = True,
          missing_ok: bool = False) -> int:
    """Apply ``action(name)`` to each name; report failures docker's way, exit 1 if any
    (``missing_ok``: a name that is not there is reported but is no failure)."""
    status = 0
    for name in names:
        try:
            result = action(name)
        except errors.ConchError as exc:
            ctx.err(describe_error(exc, ctx.host))
            if not (missing_ok and isinstance(exc, errors.NotFound)):
                status = 1
            continue
        if echo:
            ctx.out(name if result is None else str(result))
    return status


def need_args(ns_list: list, ctx: Context, what: str = "at least 1 argument") -> None:
    if not ns_list:
        raise UsageError(f'"{ctx.prog}" requires {what}.', status=1)


def filters_json(values: list[str]) -> str | None:
    """``--filter k=v`` (repeatable) -> the API's filters JSON (map-of-bool form)."""
    if not values:
        return None
    from conch.client.lean import dumps

    out: dict[str, dict[str, bool]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), {})[value] = True
    return dumps(out, compact=True)


def inspect_container(ctx: Context, name: str) -> dict[str, Any]:
    return ctx.client.get(f"/containers/{quote_path(name)}/json")


def timestamp_param(value: str, now: float | None = None) -> str:
    """docker's ``timetypes.GetTimestamp``: RFC 3339, a Unix time, or a duration ago."""
    import re
    from datetime import datetime, timezone

    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    if re.fullmatch(r"(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+", value):
        from conch.cli.flag_values import go_duration

        return f"{now - go_duration(value) / 1e9:.9f}"
    text = value.replace("Z", "+00:00")
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f",
                    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            dt = datetime.strptime(text, pattern)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.astimezone()  # docker reads a zone-less time as local time
        return f"{dt.astimezone(timezone.utc).timestamp():.9f}"
    raise UsageError(f'invalid value for "since"/"until": {value}')


def confirm(ctx: Context, warning: str) -> bool:
    ctx.out(f"{warning}\nAre you sure you want to continue? [y/N] ", end="")
    ctx.stdout.flush()
    answer = ctx.stdin.readline().strip().lower()
    return answer in ("y", "yes")
