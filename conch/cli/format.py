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
#
# A template made only of plain {{.Field}} actions (every built-in default, most --format
# strings) is rendered here without the engine; anything else, and any plain template
# that meets a value the fast path does not print as Go would, goes to conch.cli.gotemplate
# (imported then, and only then: `conch ps` never pays for it).

from conch.cli.main import CommandError  # noqa: E402  (main is loaded before any verb)


class TemplateError(CommandError):
    """A template that does not parse or execute: docker's message and exit status."""


class Row(dict):
    """A formatter context (docker's ``*formatter.ContainerContext`` and friends): a dict
    of its methods' results (strings), plus ``methods`` that take arguments, such as
    ``.Label "k"``. ``go_type_name`` is the Go type docker names in an error."""

    go_type_name = "*formatter.ContainerContext"

    def __init__(self, *args, methods: dict[str, Callable] | None = None, **kw):
        super().__init__(*args, **kw)
        self.methods = methods or {}

    def go_method(self, name: str):
        from conch.cli.gotemplate import Func

        fn = self.methods.get(name)
        if fn is not None:
            return Func(fn, ("string",) * fn.__code__.co_argcount)
        if name in self:
            value = self[name]
            return Func(lambda: value, ())
        return None

    def go_json(self):
        # docker marshals every method of the context; those without arguments are fields
        out = dict(self)
        for name, fn in self.methods.items():
            if fn.__code__.co_argcount == 0:
                out[name] = fn()
        return out


def nil_pointer(gotype: str) -> Callable:
    """A Row method giving a nil ``*T`` (printed ``<nil>``, json ``null``), without
    importing the engine until a template asks for it."""
    def method():
        from conch.cli.gotemplate.values import NilPtr

        return NilPtr(gotype)

    return method


_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")


def _simple_field(body: str) -> bool:
    """``.Name`` or ``.A.B`` (ASCII, no spaces, no empty part)."""
    return body[:1] == "." and len(body) > 1 and all(c in _FIELD_CHARS for c in body) \
        and ".." not in body and not body.endswith(".") and not body[1:2].isdigit()


def _split_simple(text: str) -> list[tuple[bool, str]] | None:
    """The text and plain-field parts of ``text``, or None when any action is more."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0 or not _simple_field(text[start + 2:end]):
            return None
        if start > pos:
            parts.append((False, text[pos:start]))
        parts.append((True, text[start + 3:end]))
        pos = end + 2
    if "}}" in text[pos:]:
        return None
    if pos < len(text):
        parts.append((False, text[pos:]))
    return parts


class Header(dict):
    """docker's ``formatter.SubHeaderContext``: a map of field name to column title, whose
    ``Label`` method titles a ``.Label "com.example.some-key"`` column "some key"."""

    def go_method(self, name: str):
        if name != "Label":
            return None
        from conch.cli.gotemplate import Func

        def label(key: str) -> str:
            return key.split(".")[-1].replace("-", " ").replace("_", " ")

        return Func(label, ("string",))


def _simple_value(dot: Any, path: str) -> str | None:
    """A plain field's text when it is a string found on the way; None to ask the engine."""
    v = dot
    for name in path.split("."):
        if type(v) is Row or type(v) is dict or type(v) is Header:
            if name not in v or (type(v) is Row and name in v.methods):
                return None
            v = v[name]
        else:
            return None
    return v if type(v) is str else None


class Template:
    """A parsed ``--format`` string (``table`` prefix already removed).

    ``name`` is the template's name in Go's messages (``version`` for docker version);
    ``parse_prefix``/``exec_prefix`` and ``parse_status`` are how the verb reports a bad
    template (docker's wording differs between verbs)."""

    def __init__(self, text: str, *, name: str = "",
                 parse_prefix: str = "template parsing error: ",
                 exec_prefix: str = "template parsing error: ", parse_status: int = 1):
        self.text = text
        self.name = name
        self.parse_prefix = parse_prefix
        self.exec_prefix = exec_prefix
        self.parse_status = parse_status
        self._go = None
        self.parts = _split_simple(text)
        if self.parts is None:
            self._compile()

    def _compile(self):
        from conch.cli import gotemplate

        try:
            self._go = gotemplate.Template(self.text, self.name)
        except gotemplate.ParseError as exc:
            raise TemplateError(f"{self.parse_prefix}{exc}", self.parse_status) from None
        except RecursionError:
            raise TemplateError(f"{self.parse_prefix}template: {self.name}: too deeply nested",
                                self.parse_status) from None

    def execute(self, dot: Any, missingkey: str = "default") -> str:
        """Render, raising :class:`conch.cli.gotemplate.ExecError` (unprefixed)."""
        if self.parts is not None and missingkey == "default":
            out = []
            for is_field, body in self.parts:
                if not is_field:
                    out.append(body)
                    continue
                v = _simple_value(dot, body)
                if v is None:
                    break
                out.append(v)
            else:
                return "".join(out)
        if self._go is None:
            self._compile()
        return self._go.execute(dot, missingkey)

    def render_header(self, headers: dict[str, str]) -> str:
        """The table header: the template on the column titles with docker's
        HeaderFunctions (json, upper, ... give the title back)."""
        if self.parts is None:
            from conch.cli import gotemplate
            from conch.cli.gotemplate.funcs import HEADER_ALL

            try:
                return gotemplate.Template(self.text, self.name, HEADER_ALL).execute(Header(headers))
            except (gotemplate.ParseError, gotemplate.ExecError) as exc:
                raise TemplateError(f"{self.exec_prefix}{exc}") from None
        return self.render(Header(headers))

    def render(self, dot: Any) -> str:
        try:
            return self.execute(dot)
        except Exception as exc:
            from conch.cli import gotemplate

            if isinstance(exc, gotemplate.ExecError):
                raise TemplateError(f"{self.exec_prefix}{exc}") from None
            if isinstance(exc, RecursionError):
                raise TemplateError(f"{self.exec_prefix}template: {self.name}: exceeded "
                                    "maximum template depth (100000)") from None
            raise


def unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def is_table(fmt: str) -> bool:
    return fmt.startswith("table")


def render(fmt: str, rows: Iterable[Any], headers: dict[str, str] | None = None,
           type_name: str | None = None, parse_prefix: str = "template parsing error: ",
           exec_prefix: str = "template parsing error: ", default: str | None = None) -> str:
    """Render ``rows`` as docker's formatter.Context does: ``table`` gets a header row and
    tabwriter columns, ``json`` is ``{{json .}}``; ``\\t``/``\\n`` typed on the command
    line are a tab and a newline. ``headers`` maps a field name (``ID``) to its column title
    (``CONTAINER ID``); ``type_name`` is the Go type named in a "can't evaluate field" error;
    ``default`` is the verb's default table, which a bare ``table`` stands for.
    """
    if fmt.strip(" ") == "table" and default:
        fmt = default  # a bare `table` is the verb's default table
    table = is_table(fmt)
    if table:
        fmt = fmt[len("table"):]
    elif fmt == "json":
        fmt = "{{json .}}"
    fmt = unescape(fmt.strip(" "))
    tmpl = Template(fmt, parse_prefix=parse_prefix, exec_prefix=exec_prefix)
    rows = list(rows)
    if type_name:
        for r in rows:
            if isinstance(r, Row):
                r.go_type_name = type_name
    out = [tmpl.render(r) for r in rows]
    if not table:
        return "".join(line + "\n" for line in out)
    header = tmpl.render_header(headers or {})
    return tabwrite_text("\n".join([header, *out]) + "\n")


def preflight(text: str, empty_row: Row) -> set[str]:
    """docker ps runs the template once on an empty context before the request, to see
    whether it uses ``.Size`` (then sizes are asked for); a bad template fails there, as
    "failed to parse template: ..." or "failed to execute template: ..." (exit 1).
    Returns the fields the template used."""
    parts = _split_simple(text)
    if parts is not None:  # plain fields (the common case) need no engine to check
        fields = [body for is_field, body in parts if is_field]
        if all("." not in f and f in empty_row and f not in empty_row.methods for f in fields):
            return set(fields)
    from conch.cli import gotemplate

    try:
        tmpl = gotemplate.Template(text)
    except gotemplate.ParseError as exc:
        raise TemplateError(f"failed to parse template: {exc}") from None
    row = _FieldRecorder(empty_row, methods=empty_row.methods)
    try:
        tmpl.execute(row)
    except gotemplate.ExecError as exc:
        raise TemplateError(f"failed to execute template: {exc}") from None
    return row.used


class _FieldRecorder(Row):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.used: set[str] = set()

    def go_method(self, name: str):
        self.used.add(name)
        return super().go_method(name)


def events_template(text: str) -> Template:
    """docker events' makeTemplate: parsed, then run once on an empty ``*events.Message``
    so a bad field fails before any event; either failure is "Error parsing format: ..."
    with exit 64."""
    from conch.cli import gotemplate

    tmpl = Template("{{json .}}" if text == "json" else text,
                    parse_prefix="Error parsing format: ", parse_status=64)
    try:
        tmpl.execute(typed_value({}, "*events.Message"))
    except gotemplate.ExecError as exc:
        raise TemplateError(f"Error parsing format: {exc}", 64) from None
    return tmpl


# -- inspect, version, info: docker's typed structs ---------------------------------------------


def typed_value(obj: Any, gotype: str) -> Any:
    """``obj`` (decoded JSON) as the Go struct the docker CLI decodes it into."""
    from conch.cli.gotemplate import typed

    return typed.typed(obj, gotype)


def marshal_typed(obj: Any, kind: str) -> str:
    """json.Marshal of the typed inspect value (maps sorted, the struct's fields)."""
    from conch.cli.gotemplate import typed

    return typed.marshal(typed.typed(obj, typed.KINDS[kind]))


def render_inspect(tmpl: Template, obj: Any, kind: str, raw: bool = True) -> str:
    """docker/cli inspect.TemplateInspector: the template on the typed object; on an
    execution error, again on the raw JSON with ``missingkey=error``, whose error is the
    one reported ("template parsing error: ...", exit 1)."""
    from conch.cli.gotemplate import ExecError, typed

    try:
        return tmpl.execute(typed.typed(obj, typed.KINDS[kind]))
    except ExecError as exc:
        if not raw:  # `volume inspect` hands no raw JSON: no second try
            raise TemplateError(f"template parsing error: {exc}") from None
    except RecursionError:
        pass
    try:
        return tmpl.execute(typed.raw(obj), missingkey="error")
    except ExecError as exc:
        raise TemplateError(f"template parsing error: {exc}") from None
    except RecursionError:
        raise TemplateError("template parsing error: template: : exceeded maximum template "
                            "depth (100000)") from None


def render_plain(ctx: Any, fmt: str, obj: Any, gotype: str, name: str = "",
                 tmpl: Template | None = None) -> None:
    """docker version/info --format: the template on the typed value, written as far as
    it got, then a newline; an execution error follows unprefixed (exit 1), a parse error
    is "template parsing error: ..." (exit 64)."""
    from conch.cli.gotemplate import ExecError

    if tmpl is None:
        tmpl = Template("{{json .}}" if fmt == "json" else fmt, name=name,
                        parse_status=64)
    # docker version writes through tabwriter.NewWriter(out, 20, 1, 1, ' ', 0); info does not
    tab = (lambda text: tabwrite_text(text + "\n", 20, 1)[:-1]) if name == "version" else str
    try:
        out = tmpl.execute(typed_value(obj, gotype))
    except ExecError as exc:
        ctx.out(tab(exc.partial))
        raise TemplateError(str(exc)) from None
    ctx.out(tab(out))
