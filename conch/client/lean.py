"""JSON and URL quoting for the CLI's start-up path, without ``json`` or ``urllib.parse``.

``import json`` costs ~3 ms (``json.decoder``/``json.scanner`` compile regular
expressions, which loads ``re`` and ``enum``: ~10 ms more when nothing else had them), and
``urllib.parse`` ~3 ms (it imports ``ipaddress``). Every ``conch`` call pays those, so
the client uses :mod:`conch.oci.fastjson` (the ``_json`` C accelerator that ``json``
itself wraps), re-exported here, and a 10-line percent-encoder.

Contract: ``loads`` = ``json.loads`` (same objects; ``ValueError`` on bad input, as
``json.JSONDecodeError`` is one); ``dumps(obj)`` = ``json.dumps(obj)``,
``dumps(obj, compact=True)`` = ``json.dumps(obj, separators=(",", ":"))``,
``ascii=False`` = ``ensure_ascii=False``; ``quote``/``urlencode`` = urllib.parse's
(``urlencode`` takes a list of ``(str, str)`` pairs, as the client builds them).
tests/unit/test_client_lean.py compares each with the standard library's.
"""

from conch.oci.fastjson import dumps, dumps_indent, loads  # noqa: F401  (the client's JSON)

_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """``urllib.parse.quote``: UTF-8, percent-encoding all but unreserved and ``safe``."""
    ok = _ALWAYS_SAFE.union(safe.encode("ascii"))
    data = text.encode("utf-8")
    if all(b in ok for b in data):
        return text
    return "".join(chr(b) if b in ok else "%%%02X" % b for b in data)


def quote_plus(text: str) -> str:
    """``urllib.parse.quote_plus`` (``safe=''``): spaces become ``+``."""
    if " " not in text:
        return quote(text, "")
    return quote(text, " ").replace(" ", "+")


def urlencode(pairs) -> str:
    """``urllib.parse.urlencode`` for a list of ``(str, str)`` pairs."""
    return "&".join(quote_plus(str(k)) + "=" + quote_plus(str(v)) for k, v in pairs)
