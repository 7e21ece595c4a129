"""Go's ``time.Duration`` text (``1m30s``, ``500ms``, ``1.5h``) as Docker's inputs carry
it -- a HEALTHCHECK's ``--interval`` in a Dockerfile, ``healthcheck.interval`` in a
compose file: the builder and compose both parse it, so it lives at the lowest layer both
may import. Pure: no I/O; the callers word the error as their Docker counterpart does."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def duration_ns(text: str) -> int:
    """Nanoseconds of ``text``, a run of ``<number><unit>`` parts; ``""`` is 0.
    Raises :class:`ValueError` for anything else (a sign, a bare number, a bad unit)."""
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"invalid duration {text!r}")
    return int(total)
