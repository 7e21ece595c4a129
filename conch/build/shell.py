"""Shell-style word expansion for Dockerfile instructions, as BuildKit's ``shell.Lex``.

Contract (mirrors ``frontend/dockerfile/shell/lex.go``; checked against BuildKit's own
``envVarTest`` and ``wordsTest`` tables in tests/unit/test_build_shell.py):

- ``Lexer(escape="\\\\").process_word(word, env) -> str``: quotes removed, escapes applied,
  variables expanded; whitespace inside the word is kept (``ProcessWord``).
- ``process_words(word, env) -> list[str]``: the same, then split on unquoted whitespace
  *after* expansion, so ``$X`` holding ``"a b"`` gives two words but ``"$X"`` one
  (``ProcessWords``).
- ``expand(word, env) -> Expansion``: both results plus the variable names found / not found
  in ``env`` (BuildKit uses these for its unused-ARG lint).

Rules: ``'...'`` is literal; in ``"..."`` only ``$`` expands and the escape token escapes
only ``"``, ``$`` and itself; outside quotes the escape token escapes any character and a
trailing one is dropped. ``$NAME`` / ``${NAME}``, positional (``$1``) and special
(``$@ $* $# $? $- $$ $! $0``) parameters are never set, so they expand to "". Modifiers:
``${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?msg} ${V?msg}``, ``${V#pat} ${V##pat} ${V%pat}
${V%%pat}`` (``*`` and ``?`` wildcards, no brackets) and ``${V/pat/repl} ${V//pat/repl}``.
Anything else (``${}``, ``${V:=w}``, unterminated quotes or braces) raises
:class:`ShellExpansionError` (an ``InvalidArgument``).

Options as BuildKit's fields: ``raw_quotes`` keeps the quote characters, ``raw_escapes``
keeps escape tokens, ``skip_unset_env`` leaves unset references as written (used to detect
heredoc names), ``skip_process_quotes`` treats quotes as ordinary characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from conch.errors import InvalidArgument

# Go's unicode.IsSpace (the Unicode White_Space property). str.isspace() differs: it also
# accepts U+001C..U+001F, which Go (and so BuildKit) keeps inside words.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ShellExpansionError(InvalidArgument):
    """A word could not be expanded (bad substitution, unterminated quote, ``${V:?}``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Expansion:
    result: str
    words: list[str]
    matched: frozenset[str]
    unmatched: frozenset[str]


class Lexer:
    """BuildKit's ``shell.Lex``; stateless between calls, so safe to reuse (not to share
    across threads mid-call)."""

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset_env: bool = False,
                 skip_process_quotes: bool = False):
        if len(escape) != 1:
            raise InvalidArgument(f"escape token must be one character, got {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.skip_process_quotes = skip_process_quotes

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self.expand(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return self.expand(word, env).words

    def expand(self, word: str, env: Mapping[str, str]) -> Expansion:
        state = _Scan(self, word, env)
        try:
            result, words = state.stop_on("", self.raw_escapes)
        except ShellExpansionError as exc:
            raise ShellExpansionError(f"failed to process {word!r}: {exc}") from None
        return Expansion(result=result, words=words, matched=frozenset(state.matched),
                         unmatched=frozenset(state.unmatched))


class _Words:
    """Word splitting as BuildKit's ``wordsStruct``: expanded text splits on whitespace,
    quoted and escaped text never does."""

    def __init__(self):
        self.word: list[str] = []
        self.size = 0  # characters in self.word ("" pieces count as nothing, as in Go)
        self.words: list[str] = []
        self.in_word = False

    def _flush(self) -> None:
        self.words.append("".join(self.word))
        self.word = []
        self.size = 0
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in GO_SPACE:
            if self.in_word and self.size:
                self._flush()
        else:
            self.add_raw(ch)

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw(self, s: str) -> None:
        self.word.append(s)
        self.size += len(s)
        self.in_word = True

    def result(self) -> list[str]:
        if self.size:
            self._flush()
        return self.words


class _Scan:
    """One pass over one word (``shellWord``); "" stands for Go's ``scanner.EOF``."""

    def __init__(self, lex: Lexer, src: str, env: Mapping[str, str]):
        self.lex = lex
        self.src = src
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def getenv(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` (consumed) or the end when ``stop`` is ""."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        quotes = not self.lex.skip_process_quotes
        escape = self.lex.escape
        while (ch := self.peek()) != "":
            if stop and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch == "$":
                tmp = self.dollar()
                result.append(tmp)
                words.add_string(tmp)
            elif quotes and ch in "'\"":
                tmp = self.single_quote() if ch == "'" else self.double_quote()
                result.append(tmp)
                words.add_raw(tmp)
            else:
                ch = self.next()
                if ch == escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == "":  # a trailing escape token is dropped
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise ShellExpansionError(
                f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lex.raw_quotes else []
        while True:
            ch = self.next()
            if ch == "":
                raise ShellExpansionError(
                    "unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lex.raw_quotes else []
        escape = self.lex.escape
        while True:
            ch = self.peek()
            if ch == "":
                raise ShellExpansionError(
                    "unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == "":
                    continue  # escape at the very end: dropped, then "unterminated"
                if nxt in ('"', "$", escape):  # only these are escapable inside "..."
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """A variable name: letters/digits/_ , or all leading digits, or one special."""
        start = self.pos
        ch = self.peek()
        if ch.isdecimal():
            while self.peek().isdecimal():
                self.next()
            return self.src[start:self.pos]
        if ch in _SPECIAL_PARAMS:
            return self.next()
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.next()
        return self.src[start:self.pos]

    def dollar(self) -> str:
        self.next()  # the "$"
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.getenv(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value
        self.next()  # the "{"
        if self.peek() == "":
            raise ShellExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ShellExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            value, found = self.getenv(name)
            if not found and self.lex.skip_unset_env:
                return "${%s}" % name
            return value
        if ch == "/":
            return self._replace(name)
        if ch in (":", "+", "-", "?", "#", "%"):
            return self._modifier(name, ch)
        raise ShellExpansionError(f"unsupported modifier ({ch or chr(0xFFFD)}) in substitution")

    def _modifier(self, name: str, ch: str) -> str:
        chs = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
        word = self._until("}", ch in ("#", "%"), "syntax error: missing '}'")
        value, found = self.getenv(name)
        if self.lex.skip_unset_env and not found:
            return "${%s%s%s}" % (name, chs, word)
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise ShellExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ShellExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        raise ShellExpansionError(f"unsupported modifier ({chs}) in substitution")

    def _until(self, stop: str, raw: bool, missing: str) -> str:
        """:meth:`stop_on`, with ``missing`` as the error when the input ends first."""
        try:
            word, _ = self.stop_on(stop, raw)
        except ShellExpansionError:
            if self.peek() == "":
                raise ShellExpansionError(missing) from None
            raise
        return word

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self._until("/", True, "syntax error: missing '/' in ${}")
        replacement = self._until("}", True, "syntax error: missing '}'")
        value, found = self.getenv(name)
        if self.lex.skip_unset_env and not found:
            return "${%s/%s/%s}" % (name, pattern, replacement)
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        # The replacement is literal text (BuildKit passes it to Go's ReplaceAllString,
        # which would also expand "$1"-style group references; the pattern has no groups).
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        m = regex.search(value)
        return value if m is None else value[:m.start()] + replacement + value[m.end():]


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern:
    """``convertShellPatternToRegex``: ``*`` any run (greedy or not), ``?`` one char,
    backslash escapes ``* ? \\`` only; no bracket expressions."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):  # escaped only for the ${} syntax, not part of the pattern
                continue
            if nxt not in ("*", "?", "\\"):
                raise ShellExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append("\\" + nxt)
            i += 1
        elif tok in "[]{}.+()|^$":
            out.append("\\" + tok)
        else:
            out.append(tok)  # nothing else is special to Python's re outside a class
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value if m is None else value[m.end():]


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each ``\\x`` escape pair in order (``a\\*c`` -> ``c\\*a``)."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            parts.append(pattern[i:i + 2])
            i += 2
        else:
            parts.append(pattern[i])
            i += 1
    return "".join(reversed(parts))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex cannot find the shortest rightmost match, so (as BuildKit) reverse both
    # and trim a prefix instead.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
