"""JSON for the runtime's hot path, straight from the ``_json`` C accelerator.

``import json`` costs ~6 ms because ``json.decoder`` and ``json.encoder`` compile regular
expressions at import time (pulling in ``re``); the C scanner and encoder they wrap need
none of that. ``loads``/``dumps`` here give the same results as ``json.loads`` and
compact ``json.dumps`` for the plain data the runtime reads and writes (config.json,
state.json, sync messages). Pretty-printing (indent) is left to the ``json`` module.
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


def loads(data) -> object:
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8")
    idx = len(data) - len(data.lstrip(_WS))
    try:
        obj, end = _scan(data, idx)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    finally:
        _Context.memo.clear()
    rest = data[end:].strip(_WS)
    if rest:
        raise ValueError(f"Extra data: char {end}")
    return obj


def _default(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    {}, _default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True)


def dumps(obj) -> str:
    return "".join(_encode(obj, 0))


def dumps_pretty(obj, indent: str = "  ", _level: int = 0) -> str:
    """Like ``json.dumps(obj, indent=2)`` (what ``state`` prints, as runc does)."""
    pad = indent * (_level + 1)
    end = indent * _level
    if isinstance(obj, dict) and obj:
        items = (f"{pad}{dumps(str(k))}: {dumps_pretty(v, indent, _level + 1)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{end}}}"
    if isinstance(obj, list) and obj:
        items = (f"{pad}{dumps_pretty(v, indent, _level + 1)}" for v in obj)
        return "[\n" + ",\n".join(items) + f"\n{end}]"
    return dumps(obj)
