"""Per-instruction argument parsing: BuildKit's ``splitCommand`` and ``line_parsers.go``.

Each function takes the instruction's text after the name and the flags, and returns the
argument tuple BuildKit's AST would hold, plus whether the JSON (exec) form was used.
Values are kept raw: quotes and escapes in ENV/LABEL/ARG values are removed later, by the
shell lexer at build time, exactly as BuildKit does.

Dispatch (``parser.go``'s table): ADD/COPY/VOLUME -> JSON or whitespace list; CMD/RUN/
ENTRYPOINT/SHELL -> JSON or one string; ENV/LABEL -> (key, value, sep) triples, sep "=" for
``k=v`` and "" for the legacy ``KEY value`` form; ARG -> raw words; FROM/EXPOSE ->
whitespace list; MAINTAINER/STOPSIGNAL/USER/WORKDIR -> one string; HEALTHCHECK -> type word
then as CMD; unknown instructions -> one empty string (BuildKit's ``parseIgnore`` node).
ONBUILD is handled by the parser (it nests a whole instruction).
"""

from __future__ import annotations

import json
import re

from conch.build.shell import GO_SPACE

# parser.go: reWhitespace / tokenWhitespace. Deliberately not \s: no \n, no Unicode spaces.
WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class ArgumentError(ValueError):
    """An instruction's arguments are malformed; the parser adds the line number."""


def go_trim_space(s: str) -> str:
    """Go's strings.TrimSpace (unicode.IsSpace, not str.isspace)."""
    start, end = 0, len(s)
    while start < end and s[start] in GO_SPACE:
        start += 1
    while end > start and s[end - 1] in GO_SPACE:
        end -= 1
    return s[start:end]


def split_command(line: str) -> tuple[str, tuple[str, ...], str]:
    """``splitCommand``: (lower-cased name, ``--flags``, rest of the line trimmed)."""
    parts = WHITESPACE.split(go_trim_space(line), maxsplit=1)
    name = parts[0].lower()
    if len(parts) < 2:
        return name, (), ""
    rest, flags = extract_flags(parts[1])
    return name, flags, go_trim_space(rest)


def extract_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """``extractBuilderFlags``: leading ``--words`` (quotes and backslashes processed, as
    BuildKit does) up to the first word not starting with ``--``; a bare ``--`` ends them."""
    flags: list[str] = []
    pos, n = 0, len(line)
    while True:
        while pos < n and line[pos] in GO_SPACE:
            pos += 1
        if pos == n:
            return "", tuple(flags)
        if not line.startswith("--", pos):
            return line[pos:], tuple(flags)
        word, quoted, pos = _flag_word(line, pos)
        if word == "--":  # end of flags (never itself a flag)
            return line[pos:], tuple(flags)
        if word or quoted:
            flags.append(word)


def _flag_word(line: str, pos: int) -> tuple[str, bool, int]:
    """One flag word from ``pos``: returns (word, had quotes, position after it)."""
    out: list[str] = []
    quote = ""
    quoted = False
    n = len(line)
    while pos < n:
        ch = line[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and pos + 1 < n:
                pos += 1
                out.append(line[pos])
            elif ch != "\\":
                out.append(ch)
            else:  # a backslash as the very last character ends the quote
                quote = ""
        elif ch in GO_SPACE:
            break
        elif ch in "'\"":
            quote, quoted = ch, True
        elif ch == "\\":
            if pos + 1 < n:
                pos += 1
                out.append(line[pos])
        else:
            out.append(ch)
        pos += 1
    return "".join(out), quoted, pos


def parse_words(rest: str, escape: str) -> list[str]:
    """``parseWords``: split on unquoted whitespace, keeping quotes and escapes in the words
    (they are removed later by the shell lexer). Inside '...' the escape token is literal."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank_ok = False
    in_word = False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch in GO_SPACE:
                i += 1
                continue
            in_word = True
        if not quote:
            if ch in GO_SPACE:
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok, in_word = [], False, False
                i += 1
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == n:  # an escape token at the end of the line is dropped
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
        else:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    quote = ""
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def parse_name_val(rest: str, key: str, escape: str) -> tuple[str, ...]:
    """ENV/LABEL: ``(key, value, sep)`` triples; legacy ``KEY value`` when the first word
    has no "=" (the value is then the raw rest of the line)."""
    words = parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ArgumentError(f"{key} must have two arguments")
        return (parts[0], parts[1], "")
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise ArgumentError(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        name, _, value = word.partition("=")
        out += (name, value, "=")
    return tuple(out)


def parse_whitespace_list(rest: str) -> tuple[str, ...]:
    return tuple(WHITESPACE.split(rest)) if rest else ()


def parse_json(rest: str) -> tuple[str, ...] | None:
    """A JSON array of strings, or None when ``rest`` is not valid JSON (shell form then).

    As BuildKit (encoding/json ``Decoder.Decode``): text after the array is ignored; a valid
    array with a non-string element is an error, not shell form. Lone surrogate escapes
    become U+FFFD as Go decodes them."""
    rest = rest.lstrip("".join(GO_SPACE))
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder(parse_constant=_reject).raw_decode(rest)
    except ValueError:
        return None
    if not all(isinstance(v, str) for v in value):
        raise ArgumentError(
            "when using JSON array syntax, arrays must be comprised of strings only")
    return tuple(_SURROGATE.sub("\ufffd", v) for v in value)


def _reject(constant: str):
    raise ValueError(f"{constant} is not JSON")  # Go rejects NaN/Infinity


def parse_maybe_json(rest: str) -> tuple[tuple[str, ...], bool]:
    if not rest:
        return (), False
    args = parse_json(rest)
    return (args, True) if args is not None else ((rest,), False)


def parse_maybe_json_to_list(rest: str) -> tuple[tuple[str, ...], bool]:
    args = parse_json(rest)
    return (args, True) if args is not None else (parse_whitespace_list(rest), False)


def parse_healthcheck(rest: str) -> tuple[tuple[str, ...], bool]:
    """``parseHealthConfig``: the type word (CMD, NONE, ...) then the command as CMD's."""
    sep = 0
    while sep < len(rest) and rest[sep] not in GO_SPACE:
        sep += 1
    if sep == 0:
        return (), False
    nxt = sep
    while nxt < len(rest) and rest[nxt] in GO_SPACE:
        nxt += 1
    cmd, json_form = parse_maybe_json(rest[nxt:])
    return (rest[:sep], *cmd), json_form


def parse_arguments(name: str, rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """Dispatch on the (lower-case) instruction name; ONBUILD is the parser's job."""
    if name in ("add", "copy", "volume"):
        return parse_maybe_json_to_list(rest)
    if name in ("cmd", "entrypoint", "run", "shell"):
        return parse_maybe_json(rest)
    if name in ("env", "label"):
        return parse_name_val(rest, name.upper(), escape), False
    if name == "arg":
        return tuple(parse_words(rest, escape)), False
    if name in ("from", "expose"):
        return parse_whitespace_list(rest), False
    if name in ("maintainer", "stopsignal", "user", "workdir"):
        return ((rest,) if rest else ()), False
    if name == "healthcheck":
        return parse_healthcheck(rest)
    return ("",), False  # parseIgnore: unknown instructions keep one empty argument
