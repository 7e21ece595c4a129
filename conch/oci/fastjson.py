"""JSON straight from the ``_json`` C accelerator: no ``json`` module on hot paths.

``import json`` costs ~3-6 ms (``json.decoder``/``json.scanner`` compile regular
expressions, which loads ``re`` and ``enum``: ~10 ms more when nothing else had them).
Every ``conch`` CLI call and every ``conch-runtime`` process would pay that, so both use
the C scanner and encoder ``json`` itself wraps. It lives in ``conch.oci`` (pure codecs,
the lowest layer) because the runtime and the CLI's client may both import it.

Contract: ``loads`` = ``json.loads`` for str/bytes (same objects; ``ValueError`` on bad
input, as ``json.JSONDecodeError`` is one); ``dumps(obj)`` = ``json.dumps(obj)``,
``dumps(obj, compact=True)`` = ``json.dumps(obj, separators=(",", ":"))``,
``ascii=False`` = ``ensure_ascii=False``; ``dumps_indent(obj, n)`` =
``json.dumps(obj, indent=n)``. tests/unit/test_client_lean.py compares each with the
standard library's.
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
    except SystemError:
        # _json words its errors (a control character in a string, a bad escape) with
        # json.decoder.JSONDecodeError, found in sys.modules only: without it the scanner
        # fails without an exception. The error path may pay for json: it says what is wrong.
        import json

        return json.loads(data)  # raises JSONDecodeError (a ValueError)
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


def dumps_pretty(obj, indent: str = "  ") -> str:
    """``json.dumps(obj, indent=len(indent))``, the spelling conch-runtime's ``state``
    uses (runc prints its state this way)."""
    return dumps_indent(obj, len(indent))
