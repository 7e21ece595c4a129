"""A sans-IO Go ``text/template`` engine, as the docker CLI renders ``--format``.

    tmpl = gotemplate.Template("{{range .Names}}{{.}} {{end}}")   # ParseError: Go's text
    text = tmpl.execute(data)                                      # ExecError: Go's text

Modules: :mod:`lexer` and :mod:`parse` (text/template/parse), :mod:`exec` (the evaluator),
:mod:`funcs` (Go's builtins and docker's json/join/split/lower/upper/title/pad/truncate),
:mod:`gofmt` (fmt's Sprint/Sprintf), :mod:`values` (Go values over Python ones) and
:mod:`typed` (inspect JSON as docker's Go structs; Go's json.Marshal).

Only the CLI's ``--format`` paths import this package (the plain ``conch ps`` does not).
"""

from __future__ import annotations

__all__ = ["Template", "ParseError", "ExecError", "Func", "FuncError", "FUNCS"]

# The engine's modules load on first use of these names, so importing one helper module
# (conch.cli.gotemplate.typed for a time's text) costs only that module.
_LAZY = {"ExecError": "exec", "Func": "exec", "FuncError": "exec", "execute": "exec",
         "ParseError": "parse", "parse": "parse", "FUNCS": "funcs", "Template": None}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "Template":
        return _template_class()
    module = __import__(f"conch.cli.gotemplate.{_LAZY[name]}", fromlist=["_"])
    return getattr(module, "ALL" if name == "FUNCS" else name)


def _template_class():
    global Template
    from conch.cli.gotemplate.exec import execute
    from conch.cli.gotemplate.funcs import ALL
    from conch.cli.gotemplate.parse import parse

    class Template:
        """A parsed template (``name`` appears in errors: ``template: NAME:1: ...``)."""

        def __init__(self, text: str, name: str = "", funcs: dict | None = None):
            self.text = text
            self.name = name
            self.funcs = ALL if funcs is None else funcs
            self.tree = parse(text, self.funcs, name)

        def execute(self, data, missingkey: str = "default") -> str:
            return execute(self.tree, self.text, data, self.funcs, missingkey)

    Template.__module__ = __name__
    return Template
