"""Output formatting shared by the verbs: docker's tables, ``--format`` templates, units.

Everything here is pure (no I/O besides writing to the stream it is given) so it is unit
tested on its own. The behaviours copy docker/cli and go-units:

* tables are Go's ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``: each column but the
  last is as wide as its widest cell plus 3 spaces, and at least 10;
* sizes are ``units.HumanSizeWithPrecision(n, 3)`` (base 1000: "4.26MB") and memory in
  ``docker stats`` is ``units.BytesSize`` (base 1024: "1.5MiB");
* durations are ``units.HumanDuration`` ("5 seconds", "About a minute");
* templates are a subset of Go's text/template: ``{{.A.B}}``, ``{{json .X}}``, ``{{upper}}``,
  ``{{lower}}``, ``{{title}}``, ``{{join .X ","}}``, ``{{index .X "k"}}``, pipes, and the
  ``table`` prefix. ``\\t`` and ``\\n`` typed on a shell line become tab and newline, as
  docker's formatter does.
"""

from __future__ import annotations

# No `json`/`re` at import time (~7 ms of every `conch ps`): JSON comes from
# conch.client.lean and the template regexes are compiled only for templates that are
# more than plain {{.Field}} actions (see _split_simple).
from conch.client import lean

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _go_g(value: float, precision: int) -> str:
    # Go's %.Ng and Python's agree for the magnitudes seen here (< 1000 after scaling).
    return f"{value:.{precision}g}"


def _custom_size(size: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{_go_g(size, precision)}{units[i]}"


def human_size(size: float, precision: int = 3) -> str:
    """``units.HumanSizeWithPrecision``: 4260000 -> '4.26MB'."""
    return _custom_size(float(size), 1000.0, _DECIMAL_UNITS, precision)


def bytes_size(size: float) -> str:
    """``units.BytesSize``: binary units, 4 significant digits: '1.5MiB'."""
    return _custom_size(float(size), 1024.0, _BINARY_UNITS, 4)


def human_duration(seconds: float) -> str:
    """``units.HumanDuration``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ellipsis(s: str, width: int) -> str:
    """docker/cli ``formatter.Ellipsis``: cut to ``width`` characters, the last one '…'."""
    if len(s) <= width:
        return s
    if width <= 0:
        return ""
    return s[: width - 1] + "…"


def trunc_id(image_or_id: str) -> str:
    """``stringid.TruncateID``: drop an ``algo:`` prefix and keep 12 characters."""
    if ":" in image_or_id:
        image_or_id = image_or_id.split(":", 1)[1]
    return image_or_id[:12]


# -- tables --------------------------------------------------------------------------


def tabwrite(rows: Iterable[Sequence[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells like Go's tabwriter (flags 0, pad char ' ').

    The last cell of a line is not a column (tabwriter only aligns tab-terminated cells),
    so it is printed as is.
    """
    rows = [list(r) for r in rows]
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], max(minwidth, len(cell) + padding))
    out = []
    for r in rows:
        line = "".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:-1]))
        out.append(line + (r[-1] if r else ""))
    return "\n".join(out) + "\n"


def tabwrite_text(text: str, minwidth: int = 10, padding: int = 3) -> str:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tabwrite([ln.split("\t") for ln in lines], minwidth, padding)


# -- Go values -------------------------------------------------------------------------


def go_json(value: Any, indent: int | None = None) -> str:
    """Go ``json.Marshal``: compact, UTF-8, and '<', '>', '&' escaped as Go does."""
    if indent is None:
        text = lean.dumps(value, compact=True, ascii=False)
    else:
        text = lean.dumps_indent(value, indent, ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_print(value: Any) -> str:
    """How text/template prints a value decoded from JSON (``fmt.Sprint``)."""
    if value is None:
        return "<no value>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{_go_inner(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_inner(v) for v in value) + "]"
    return str(value)


def _go_inner(value: Any) -> str:
    return "<nil>" if value is None else go_print(value)


# -- templates --------------------------------------------------------------------------


class TemplateError(ValueError):
    pass


class Row(dict):
    """A dict whose missing keys can be computed: a formatter context (ps, images, ...).

    ``methods`` holds template functions called with arguments, such as ``.Label "k"``.
    """

    def __init__(self, *args, methods: dict[str, Callable] | None = None, **kw):
        super().__init__(*args, **kw)
        self.methods = methods or {}


def _upper(v):
    return go_print(v).upper()


def _lower(v):
    return go_print(v).lower()


def _title(v):
    return go_print(v).title()


def _join(v, sep):
    return sep.join(go_print(x) for x in (v or []))


def _index(v, *keys):
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k)
        elif isinstance(v, list):
            v = v[int(k)]
        else:
            return None
    return v


def _split(v, sep):
    return go_print(v).split(sep)


def _truncate(v, n):
    s = go_print(v)
    return s[: int(n)]


FUNCS: dict[str, Callable] = {
    "json": lambda v: go_json(v),
    "upper": _upper,
    "lower": _lower,
    "title": _title,
    "join": _join,
    "index": _index,
    "split": _split,
    "truncate": _truncate,
    "pad": lambda v, a, b: " " * int(a) + go_print(v) + " " * int(b),
    "println": lambda *a: " ".join(go_print(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_print(x) for x in a),
    "len": lambda v: len(v or []),
}

_TOKEN = r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\|)|(-?\d+)|(\.[\w.]*)|([A-Za-z_]\w*))'
_ACTION = r"{{-?\s*(.*?)\s*-?}}"
_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")


def _simple_field(body: str) -> bool:
    """``.Name`` or ``.A.B`` (ASCII, no spaces): what _TOKEN reads as one field token."""
    return body[:1] == "." and all(c in _FIELD_CHARS for c in body)


def _split_simple(text: str) -> list[tuple[bool, str]] | None:
    """The parts _ACTION would cut ``text`` into, when every action is a plain field;
    None when any is not (then the regexes decide)."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0 or not _simple_field(text[start + 2:end]):
            return None
        if start > pos:
            parts.append((False, text[pos:start]))
        parts.append((True, text[start + 2:end]))
        pos = end + 2
    if pos < len(text):
        parts.append((False, text[pos:]))
    return parts


def _tokenize(expr: str) -> list[tuple[str, str]]:
    if _simple_field(expr):
        return [("field", expr)]
    import re

    token = re.compile(_TOKEN)
    toks = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = token.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: unexpected {expr[pos:]!r} in command")
        pos = m.end()
        if m.group(1):
            toks.append(("str", lean.loads(m.group(1))))
        elif m.group(2):
            toks.append(("str", m.group(2)[1:-1]))
        elif m.group(3):
            toks.append(("pipe", "|"))
        elif m.group(4):
            toks.append(("num", m.group(4)))
        elif m.group(5):
            toks.append(("field", m.group(5)))
        else:
            toks.append(("ident", m.group(6)))
    return toks


def _lookup(dot: Any, path: str, args: list | None = None) -> Any:
    if isinstance(dot, _HeaderDot):
        return dot.title_for(path)
    value = dot
    parts = [p for p in path.split(".") if p]
    for i, name in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(value, Row) and name in value.methods:
            fn = value.methods[name]
            value = fn(*(args or [])) if last else fn()
            if last:
                return value
            continue
        if isinstance(value, dict):
            if name not in value:
                if isinstance(value, Row):
                    raise TemplateError(
                        f'template: :1: executing "" at <.{name}>: can\'t evaluate field {name}'
                    )
                return None
            value = value[name]
        elif value is None:
            return None
        else:
            raise TemplateError(f"template: can't evaluate field {name} in type {type(value).__name__}")
    return value


def _eval_command(toks: list[tuple[str, str]], dot: Any, piped: list) -> Any:
    if not toks:
        raise TemplateError("template: missing value for command")
    kind, val = toks[0]
    rest = [_eval_arg(t, dot) for t in toks[1:]]
    if kind == "ident":
        if val not in FUNCS:
            raise TemplateError(f'template: :1: function "{val}" not defined')
        if isinstance(dot, _HeaderDot):  # a header cell is the column title, unformatted
            return next((a for a in [*rest, *piped] if isinstance(a, str)), "")
        return FUNCS[val](*rest, *piped)
    if kind == "field":
        return _lookup(dot, val, rest + piped) if val != "." else dot
    if rest or piped:
        raise TemplateError(f"template: can't give argument to non-function {val}")
    return _eval_arg(toks[0], dot)


def _eval_arg(tok: tuple[str, str], dot: Any) -> Any:
    kind, val = tok
    if kind == "str":
        return val
    if kind == "num":
        return int(val)
    if kind == "field":
        return dot if val == "." else _lookup(dot, val)
    if kind == "ident" and val in FUNCS:
        return FUNCS[val]()
    raise TemplateError(f"template: unexpected {val!r}")


def _eval_action(expr: str, dot: Any) -> str:
    toks = _tokenize(expr)
    commands: list[list] = [[]]
    for t in toks:
        if t[0] == "pipe":
            commands.append([])
        else:
            commands[-1].append(t)
    piped: list = []
    value = None
    for cmd in commands:
        value = _eval_command(cmd, dot, piped)
        piped = [value]
    return value if isinstance(value, str) else go_print(value)


class Template:
    """A parsed ``--format`` string (``table`` prefix already removed)."""

    def __init__(self, text: str):
        self.text = text
        simple = _split_simple(text)
        if simple is not None:
            self.parts = simple
            return
        import re

        self.parts = []
        pos = 0
        for m in re.finditer(_ACTION, text, re.S):
            if m.start() > pos:
                self.parts.append((False, text[pos : m.start()]))
            self.parts.append((True, m.group(1)))
            pos = m.end()
        if pos < len(text):
            self.parts.append((False, text[pos:]))
        for is_action, body in self.parts:
            if is_action:
                _tokenize(body)  # syntax errors now, not halfway through the output

    def render(self, dot: Any) -> str:
        out = []
        for is_action, body in self.parts:
            out.append(_eval_action(body, dot) if is_action else body)
        return "".join(out)


def unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def is_table(fmt: str) -> bool:
    return fmt.startswith("table")


def render(fmt: str, rows: Iterable[Any], headers: dict[str, str] | None = None) -> str:
    """Render ``rows`` with a docker ``--format`` string; ``table`` gets headers and tabs.

    ``headers`` maps a field name (``ID``) to its column title (``CONTAINER ID``).
    """
    fmt = unescape(fmt)
    table = is_table(fmt)
    if table:
        fmt = fmt[len("table") :].strip()
    if fmt == "json" or fmt == "{{json .}}":
        fmt = "{{json .}}"
    tmpl = Template(fmt)
    lines = [tmpl.render(r) for r in rows]
    if not table:
        return "".join(line + "\n" for line in lines)
    header = Template(fmt).render(_HeaderDot(headers or {}))
    return tabwrite_text("\n".join([header, *lines]) + "\n")


class _HeaderDot(Row):
    """Renders each ``{{.Field}}`` as its column title, as docker's header context does."""

    def __init__(self, headers: dict[str, str]):
        super().__init__()
        self.headers = headers

    def title_for(self, path: str) -> str:
        first = ([p for p in path.split(".") if p] or [""])[0]
        return self.headers.get(first, first.upper())
