"""Kubernetes resource quantities (``128Mi``, ``1G``, ``500m``, ``0.5``) to and from
the Engine API's numbers (``Memory`` bytes, ``NanoCpus``).

The grammar is apimachinery's ``resource.Quantity``: a decimal number and an optional
suffix, binary (Ki Mi Gi Ti Pi Ei), decimal (n u m k M G T P E) or an exponent (e3, E6).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from conch.errors import InvalidArgument

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}


def parse(text: str | int | float) -> Decimal:
    """The quantity's value in base units (bytes, cores)."""
    if isinstance(text, (int, float)):
        return Decimal(str(text))
    s = str(text).strip()
    for suffix, factor in _BINARY.items():
        if s.endswith(suffix):
            return _number(s[: -len(suffix)], text) * factor
    if len(s) > 1 and s[-1] in _DECIMAL and s[-1] not in "eE":
        return _number(s[:-1], text) * _DECIMAL[s[-1]]
    if "e" in s.lower() and not s.lower().startswith("e"):
        return _number(s, text)  # 1e3, 5E6
    if s.endswith("E"):
        return _number(s[:-1], text) * _DECIMAL["E"]
    return _number(s, text)


def _number(s: str, original) -> Decimal:
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise InvalidArgument(f"invalid quantity {original!r}") from None
    if value < 0 or not value.is_finite():
        raise InvalidArgument(f"invalid quantity {original!r}")
    return value


def memory_bytes(text) -> int:
    return int(parse(text).to_integral_value(rounding="ROUND_CEILING"))


def nano_cpus(text) -> int:
    return int((parse(text) * 10**9).to_integral_value(rounding="ROUND_CEILING"))


def format_memory(n: int) -> str:
    """Bytes as the largest exact binary suffix (``268435456`` -> ``256Mi``)."""
    for suffix, factor in reversed(list(_BINARY.items())):
        if n and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def format_cpu(nanos: int) -> str:
    """NanoCpus as cores or millicores (``1500000000`` -> ``1500m``; ``2e9`` -> ``2``)."""
    if nanos % 10**9 == 0:
        return str(nanos // 10**9)
    millis = -(-nanos // 10**6)  # Kubernetes' cpu precision is 1m: round up
    return f"{millis}m"
