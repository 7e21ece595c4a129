"""Dockerfile parser (sans-IO): text in, instruction list out, as BuildKit's
``frontend/dockerfile/parser`` builds its AST.

Contract:

- ``parse(text) -> Dockerfile``. ``Dockerfile.instructions`` holds one :class:`Instruction`
  per instruction, in order; ``escape`` is the ``# escape=`` directive (default backslash),
  ``syntax`` the ``# syntax=`` one (None when absent), ``directives`` every parser
  directive seen (escape, syntax, check), ``warnings`` BuildKit's non-fatal remarks (empty
  continuation lines).
- ``Instruction.args`` is exactly BuildKit's list of AST argument nodes (see
  :mod:`conch.build.line_parsers` for the per-instruction shapes), ``json_form`` says the
  exec (JSON array) form was used, ``original`` is the instruction text with continuation
  lines joined and comment lines dropped, ``start_line``/``end_line`` are 1-based and
  include continuation and heredoc lines. ONBUILD nests its instruction in ``next``.
  ``heredocs`` holds ``<<EOF`` bodies of RUN/COPY/ADD (content raw, as BuildKit: the
  ``<<-`` tab stripping and variable expansion happen at build time).
- ``dump(dockerfile)`` is BuildKit's ``Node.Dump()`` of the root, byte for byte; the
  conformance tests compare it with BuildKit's ``result`` files.
- Errors raise :class:`DockerfileParseError` (an ``InvalidArgument``) naming the line:
  ``dockerfile parse error on line 3: ENV must have two arguments``. An input with no
  instruction is an error ("file with no instructions").

Line handling (``Parse`` in parser.go): lines split on "\\n" with "\\r" trimmed; the
first line loses a UTF-8 BOM; leading whitespace of an instruction's first line is dropped;
``#`` lines are comments (also between continuation lines, where they are skipped). The
escape token at the end of a line (not itself escaped) continues it; the next line is
appended as is, leading whitespace kept. Parser directives are only recognised in the
``#``-comment lines before anything else, including blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from conch.build.line_parsers import ArgumentError, parse_arguments, split_command
from conch.build.shell import GO_SPACE, Lexer, ShellExpansionError
from conch.errors import InvalidArgument

_SPACES = "".join(GO_SPACE)
# directives.go: "#", optional space, name=value. Go's \s is ASCII [\t\n\f\r ].
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)")
_HEREDOC_INSTRUCTIONS = ("add", "copy", "run")


class DockerfileParseError(InvalidArgument):
    """The Dockerfile is malformed; ``line``/``end_line`` locate it (1-based)."""

    def __init__(self, message: str, line: int, end_line: int | None = None):
        self.line = line
        self.end_line = end_line if end_line is not None else line
        super().__init__(f"dockerfile parse error on line {line}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Heredoc:
    name: str
    file_descriptor: int = 0
    expand: bool = True   # False when any part of the name was quoted (<<'EOF')
    chomp: bool = False   # <<-EOF: leading tabs are stripped (at build time)
    content: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    name: str
    flags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    json_form: bool = False
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    next: Instruction | None = None
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    syntax: str | None = None
    directives: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class _Directives:
    """Directive state while reading the top of the file (``DirectiveParser``)."""

    def __init__(self):
        self.values: dict[str, str] = {}
        self.done = False
        self.set_escape("\\")

    def set_escape(self, token: str) -> None:
        if token not in ("`", "\\"):
            raise ArgumentError(f"invalid escape token '{token}' does not match ` or \\")
        self.escape = token
        e = re.escape(token)
        # The token ends a line unless it is itself escaped; alone on a line it also
        # continues (BuildKit's two-branch regex, same limitation for "\\\\\\").
        self.continuation = re.compile(rf"([^{e}]){e}[ \t]*\Z|\A{e}[ \t]*\Z")

    def offer(self, line: str) -> None:
        """Look at one more line; directives stop at the first line that is not one."""
        if self.done:
            return
        match = _DIRECTIVE.match(line[1:].lstrip(_SPACES)) if line.startswith("#") else None
        key = match[1].lower() if match else ""
        if key not in _KNOWN_DIRECTIVES:
            self.done = True
            return
        if key in self.values:
            raise ArgumentError(f"only one {key} parser directive can be used")
        self.values[key] = match[2]
        if key == "escape":
            self.set_escape(match[2])

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """(line without its continuation token, whether the instruction ends here)."""
        if self.continuation.search(line):
            return self.continuation.sub(r"\1", line, count=1), False
        return line, True


def _split_lines(text: str) -> list[str]:
    """Lines with their "\\n" kept (heredoc bodies need them), as BuildKit's scanLines."""
    pieces = text.split("\n")
    lines = [p + "\n" for p in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _is_comment(raw: str) -> bool:
    return raw.rstrip("\r\n").lstrip(_SPACES).startswith("#")


def _process_line(d: _Directives, raw: str, strip_left: bool, lineno: int) -> str:
    token = raw.rstrip("\r\n")
    if strip_left:
        token = token.lstrip(_SPACES)
    try:
        d.offer(token)
    except ArgumentError as exc:
        raise DockerfileParseError(str(exc), lineno) from None
    return "" if token.startswith("#") else token


def parse(text: str) -> Dockerfile:
    lines = _split_lines(text)
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    d = _Directives()
    instructions: list[Instruction] = []
    warnings: list[str] = []
    i = 0  # lines consumed so far == 1-based number of the last line read
    while i < len(lines):
        i += 1
        start = i
        line, done = d.trim_continuation(_process_line(d, lines[i - 1], True, i))
        if done and line == "":
            continue
        empty_continuation = False
        while not done and i < len(lines):
            i += 1
            token = _process_line(d, lines[i - 1], False, i)
            if _is_comment(lines[i - 1]):
                continue
            if not token.lstrip(_SPACES):
                empty_continuation = True
                continue
            token, done = d.trim_continuation(token)
            line += token
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + line)
        instruction = _instruction(line, d.escape, start, i)
        if _can_contain_heredoc(instruction):
            heredocs, i = _read_heredocs(line, lines, i, start)
            if heredocs:
                instruction = replace(instruction, heredocs=heredocs, end_line=i)
        instructions.append(instruction)
    if warnings:
        warnings.append(
            "[WARNING]: Empty continuation lines will become errors in a future release.")
    if not instructions:
        raise DockerfileParseError("file with no instructions", i)
    return Dockerfile(instructions=instructions, escape=d.escape, syntax=d.values.get("syntax"),
                      directives=dict(d.values), warnings=tuple(warnings))


def _instruction(line: str, escape: str, start: int, end: int) -> Instruction:
    """``newNodeFromLine``: name, flags, then the per-instruction argument parser."""
    try:
        name, flags, rest = split_command(line)
        if name == "onbuild":
            nested = _instruction(rest, escape, start, end) if rest else None
            return Instruction(name=name, flags=flags, original=line, start_line=start,
                               end_line=end, next=nested)
        args, json_form = parse_arguments(name, rest, escape)
    except ArgumentError as exc:
        raise DockerfileParseError(str(exc), start, end) from None
    return Instruction(name=name, flags=flags, args=args, json_form=json_form, original=line,
                       start_line=start, end_line=end)


def _can_contain_heredoc(instruction: Instruction) -> bool:
    if instruction.name == "onbuild" and instruction.next is not None:
        instruction = instruction.next
    return instruction.name in _HEREDOC_INSTRUCTIONS and not instruction.json_form


def _read_heredocs(line: str, lines: list[str], i: int,
                   start: int) -> tuple[tuple[Heredoc, ...], int]:
    """Read the bodies of the heredocs ``line`` opens, one after the other."""
    out = []
    for heredoc in _heredocs_from_line(line, start):
        body: list[str] = []
        while i < len(lines):
            raw = lines[i]
            i += 1
            candidate = raw.rstrip("\r\n")
            if heredoc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == heredoc.name:
                break
            body.append(raw)
        else:
            raise DockerfileParseError("unterminated heredoc", start, i)
        out.append(replace(heredoc, content="".join(body)))
    return tuple(out), i


def _heredocs_from_line(line: str, start: int) -> list[Heredoc]:
    try:
        lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
        words = lexer.process_words(line, {})
    except ShellExpansionError:
        return []  # BuildKit ignores lexing errors here: the line simply has no heredocs
    docs = []
    for word in words:
        try:
            heredoc = parse_heredoc(word)
        except ShellExpansionError as exc:
            raise DockerfileParseError(str(exc), start) from None
        if heredoc is not None:
            docs.append(heredoc)
    return docs


def parse_heredoc(word: str) -> Heredoc | None:
    """``ParseHeredoc``: ``[n]<<[-]NAME`` -> Heredoc (without content), else None."""
    match = _HEREDOC.fullmatch(word)
    if not match or not match[3]:
        return None
    plain = Lexer(skip_unset_env=True).process_words(match[3], {})
    if len(plain) != 1:
        return None
    raw = Lexer(raw_quotes=True, skip_unset_env=True).process_words(match[3], {})
    if len(raw) != 1:
        raise ShellExpansionError(
            f"internal lexing of heredoc produced inconsistent results: {match[3]}")
    quotes = [w.count("'") + w.count('"') for w in (plain[0], raw[0])]
    return Heredoc(name=plain[0], file_descriptor=int(match[1] or 0), chomp=match[2] == "-",
                   expand=quotes[0] == quotes[1])


def dump(dockerfile: Dockerfile) -> str:
    """BuildKit's ``Node.Dump()`` of the root: one ``(instruction ...)`` per line."""
    return "\n".join(f"({_dump(i)})" for i in dockerfile.instructions)


def _dump(instruction: Instruction) -> str:
    out = instruction.name
    if instruction.flags:
        out += " [" + " ".join(go_quote(f) for f in instruction.flags) + "]"
    for arg in instruction.args:
        out += " " + go_quote(arg)
    if instruction.next is not None:
        out += f" ({_dump(instruction.next)})"
    return out


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote``: printable runes kept (str.isprintable matches Go's IsPrint:
    letters, marks, numbers, punctuation, symbols and ASCII space), others escaped."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\ufffd")  # Go strings cannot hold one; its decoders substitute this
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
