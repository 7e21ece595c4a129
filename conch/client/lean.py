"""JSON and URL quoting for the CLI's start-up path, without ``json`` or ``urllib.parse``.

``import json`` costs ~3 ms (``json.decoder``/``json.scanner`` compile regular
expressions, which loads ``re`` and ``enum``: ~10 ms more when nothing else had them), and
``urllib.parse`` ~3 ms (it imports ``ipaddress``). Every ``conch`` call pays those, so
the client uses the ``_json`` C accelerator that ``json`` itself wraps, and a 10-line
percent-encoder.

Contract: ``loads`` = ``json.loads`` (same objects; ``ValueError`` on bad input, as
``json.JSONDecodeError`` is one); ``dumps(obj)`` = ``json.dumps(obj)``,
``dumps(obj, compact=True)`` = ``json.dumps(obj, separators=(",", ":"))``,
``ascii=False`` = ``ensure_ascii=False``; ``quote``/``urlencode`` = urllib.parse's
(``urlencode`` takes a list of ``(str, str)`` pairs, as the client builds them).
tests/unit/test_client_lean.py compares each with the standard library's.
"""

import _json

_WS = " \t\n\r"


class _Context:
    # the attributes _json.make_scanner reads from its context (a JSONDecoder normally)
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context())


def loads(data):
    """``json.loads`` for str/bytes (UTF-8, an optional BOM)."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8")
    idx = len(data) - len(data.lstrip(_WS))
    try:
        obj, end = _scan(data, idx)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    finally:
        _Context.memo.clear()
    if data[end:].strip(_WS):
        raise ValueError(f"Extra data: char {end}")
    return obj


def _default(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_ENCODERS: dict = {}


def dumps(obj, *, compact: bool = False, ascii: bool = True) -> str:
    """``json.dumps(obj)`` (``compact``: no spaces after ``,``/``:``; ``ascii=False``:
    ``ensure_ascii=False``)."""
    key = (compact, ascii)
    enc = _ENCODERS.get(key)
    if enc is None:
        # markers={} is check_circular, as json.dumps does by default
        enc = _ENCODERS[key] = _json.make_encoder(
            {}, _default, _json.encode_basestring_ascii if ascii else _json.encode_basestring,
            None, ":" if compact else ": ", "," if compact else ", ", False, False, True)
    return "".join(enc(obj, 0))


def _key(k) -> str:
    # json's key coercion: str as is, bool/None as JSON literals, numbers by their repr
    if isinstance(k, str):
        return k
    return dumps(k) if isinstance(k, (bool, int, float)) or k is None else str(k)


def dumps_indent(obj, indent: int, *, ascii: bool = True, _level: int = 1) -> str:
    """``json.dumps(obj, indent=indent)`` (``ascii=False``: ``ensure_ascii=False``); the C
    encoder has no indent, and the Python one needs ``re``."""
    pad = " " * (indent * _level)
    if isinstance(obj, dict) and obj:
        items = (f"{pad}{dumps(_key(k), ascii=ascii)}: "
                 f"{dumps_indent(v, indent, ascii=ascii, _level=_level + 1)}" for k, v in obj.items())
    elif isinstance(obj, (list, tuple)) and obj:
        items = (pad + dumps_indent(v, indent, ascii=ascii, _level=_level + 1) for v in obj)
    else:
        return dumps(obj, ascii=ascii)
    end = " " * (indent * (_level - 1))
    opener, closer = ("{", "}") if isinstance(obj, dict) else ("[", "]")
    return f"{opener}\n" + ",\n".join(items) + f"\n{end}{closer}"


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
