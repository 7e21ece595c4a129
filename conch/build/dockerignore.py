""".dockerignore matching with docker's rules (moby/patternmatcher + its ignorefile reader).

Contract:

- ``DockerIgnore.parse(text)`` reads a .dockerignore file as ``ignorefile.ReadAll``: one
  pattern a line; lines whose first character is ``#`` are comments; surrounding whitespace
  is trimmed and blank lines skipped; ``!`` marks an exception; each pattern is cleaned as
  Go's ``filepath.Clean`` (so ``./a``, ``a/``, ``a//b/../c`` become ``a``, ``a``, ``a/c``) and
  a leading ``/`` dropped, the context root being both ``/`` and the working directory.
- ``DockerIgnore(patterns)`` takes already-read patterns (``New``); a bad pattern (``!``
  alone, an unclosed ``[``, a trailing backslash) raises ``InvalidArgument``.
- ``excluded(path)`` answers for one slash-separated path relative to the context
  (``MatchesOrParentMatches``): patterns are Go ``filepath.Match`` globs (``*`` and ``?`` stop
  at ``/``, ``[...]`` classes, backslash escapes) plus ``**`` for any number of directories;
  a pattern also matches everything under a directory it matches; the last matching line
  wins, so ``!`` lines re-include what earlier lines excluded. The context root itself is
  never excluded.

docker's fast paths are kept as they are, quirks included (``**foo`` is a plain suffix
test, so it also matches ``barfoo``), because a build context must contain exactly what
docker would send.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from conch.errors import InvalidArgument

_GO_SPACE = "\t\n\v\f\r \x85\xa0"  # Go's TrimSpace set, as far as file names go
_REGEX_META = frozenset(".+()|{}$")  # regexp-special but literal in filepath.Match


def go_clean(path: str) -> str:
    """Go's ``path.Clean`` (posixpath.normpath keeps a leading "//"; Go does not)."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str          # cleaned, without the "!"
    exclusion: bool    # a "!" exception line
    kind: str          # exact | prefix | suffix | regexp (patternmatcher's matchType)
    regex: re.Pattern | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":  # "dir/**": everything under dir/
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":  # "**/name" (or "**name"): a suffix test
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """``Pattern.compile``: translate the glob to a regexp, noting when a cheaper exact,
    prefix or suffix test gives the same answer (docker's own classification)."""
    out = ["^"]
    kind = "exact"
    i = pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        pos += 1
        if ch == "*" and pos < n and text[pos] == "*":
            pos += 1
            if pos < n and text[pos] == "/":  # "**/" is "**"
                pos += 1
            if pos == n:  # trailing "**" matches everything below
                if kind == "exact":
                    kind = "prefix"
                else:
                    out.append(".*")
                    kind = "regexp"
            else:
                out.append("(.*/)?")
                kind = "regexp"
            if i == 0:
                kind = "suffix"
        elif ch == "*":
            out.append("[^/]*")
            kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in _REGEX_META:
            out.append("\\" + ch)
        elif ch == "\\":
            if pos < n:
                out.append("\\" + text[pos])
                pos += 1
                kind = "regexp"
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)  # "^" included: an anchor in both Go's regexp and Python's re
        i += 1
    regex = None
    if kind == "regexp":
        try:
            regex = re.compile("".join(out) + r"\Z")
        except re.error as exc:
            raise InvalidArgument(f"bad .dockerignore pattern {text!r}: {exc}") from None
    return _Pattern(text, exclusion, kind, regex)


def _check_glob(pattern: str) -> None:
    """Reject what Go's ``filepath.Match`` calls ``ErrBadPattern``: a trailing backslash,
    an unclosed or empty ``[...]``, a bad range or a bare ``-``/``]`` in a class."""
    i, n = 0, len(pattern)
    bad = InvalidArgument(f"syntax error in .dockerignore pattern {pattern!r}")

    def esc_char(j: int) -> tuple[str, int]:
        if j >= n or pattern[j] in "-]":
            raise bad
        if pattern[j] == "\\":
            j += 1
            if j >= n:
                raise bad
        return pattern[j], j + 1

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise bad
            i += 2
        elif ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < n and pattern[i] == "]" and ranges > 0:
                    i += 1
                    break
                lo, i = esc_char(i)
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = esc_char(i + 1)
                if hi < lo:
                    raise bad
                ranges += 1
        else:
            i += 1


class DockerIgnore:
    """Ordered .dockerignore patterns; ``excluded(path)`` says whether docker leaves the
    path out of the build context."""

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()):
        self._patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip(_GO_SPACE)
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if text == "!":
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                text = text[1:]
            _check_glob(text)
            self._patterns.append(_compile(text, exclusion))

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        """Read .dockerignore file content (``ignorefile.ReadAll``) and compile it."""
        patterns = []
        for n, line in enumerate(text.split("\n")):
            line = line.removesuffix("\r")
            if n == 0:
                line = line.removeprefix("\ufeff")
            if line.startswith("#"):
                continue
            line = line.strip(_GO_SPACE)
            if not line:
                continue
            invert = line.startswith("!")
            if invert:
                line = line[1:].strip(_GO_SPACE)
            if line:
                line = go_clean(line)
                if len(line) > 1 and line.startswith("/"):
                    line = line[1:]
            patterns.append("!" + line if invert else line)
        return cls(patterns)

    @property
    def patterns(self) -> list[str]:
        """The compiled patterns as docker reports them, "!" restored on exceptions."""
        return [("!" if p.exclusion else "") + p.text for p in self._patterns]

    @property
    def has_exceptions(self) -> bool:
        """True when a "!" line exists: an excluded directory may then still hold included
        files, so a context walker cannot simply prune it."""
        return any(p.exclusion for p in self._patterns)

    def may_reinclude_below(self, directory: str) -> bool:
        """Can a "!" line bring back something under the excluded ``directory``? Then a
        walker must go into it (moby archive.TarWithOptions: an exception pattern that
        starts with "<dir>/" keeps the directory walked; the directory itself stays out)."""
        prefix = go_clean(directory).lstrip("/") + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self._patterns)

    def excluded(self, path: str) -> bool:
        path = go_clean(path).lstrip("/") or "."
        if path == ".":
            return False  # docker never lets the context root itself be excluded
        parent = posixpath.dirname(path)
        parents = []
        if parent:
            parts = parent.split("/")
            parents = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        matched = False
        for pattern in self._patterns:
            # An inclusion cannot change an already excluded path, nor an exception a path
            # that is not excluded: skip them (docker does, and it keeps this linear).
            if pattern.exclusion != matched:
                continue
            if pattern.match(path) or any(pattern.match(p) for p in parents):
                matched = not pattern.exclusion
        return matched
