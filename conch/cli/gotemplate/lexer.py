"""Go text/template's lexer (text/template/parse/lex.go), item for item.

The lexer turns a template into items: text between actions, the delimiters, and the
words of an action. Errors are items too (``ERROR``, with Go's message) so the parser
reports them where Go does, with Go's wording.
"""

from __future__ import annotations

# item kinds: the names are Go's (itemText, itemLeftDelim, ...), without the prefix
EOF_, ERROR, TEXT, LDELIM, RDELIM, SPACE, IDENT, FIELD, VARIABLE, STRING, RAWSTRING, CHAR, \
    CHARCONST, NUMBER, BOOL, DOT, PIPE, DECLARE, ASSIGN, LPAREN, RPAREN, NIL, KEYWORD = range(23)

KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "template",
            "with", "nil", "."}
_SPACE = " \t\r\n"
_TERMINATORS = frozenset(" \t\r\n.,|:)(")


class Item:
    __slots__ = ("typ", "pos", "val", "line")

    def __init__(self, typ: int, pos: int, val: str, line: int):
        self.typ, self.pos, self.val, self.line = typ, pos, val, line

    def __str__(self) -> str:  # Go's item.String(), used in "unexpected X in Y"
        if self.typ == EOF_:
            return "EOF"
        if self.typ == ERROR:
            return self.val
        if self.typ in (KEYWORD, DOT, NIL):  # Go's keyword items (itemDot, itemNil among them)
            return f"<{self.val}>"
        if len(self.val) > 10:
            from conch.cli.gotemplate.gofmt import go_quote

            return go_quote(self.val[:10]) + "..."
        from conch.cli.gotemplate.gofmt import go_quote

        return go_quote(self.val)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdigit()


def go_rune_u(c: str) -> str:
    """``%#U``: ``U+007D '}'``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


def lex(text: str) -> list[Item]:
    """All items of ``text`` ending with EOF or the first ERROR."""
    items: list[Item] = []
    pos = 0
    line = 1
    n = len(text)

    def emit(typ, start, end):
        nonlocal line
        items.append(Item(typ, start, text[start:end], line))
        line += text.count("\n", start, end)

    def err(msg, at):
        items.append(Item(ERROR, at, msg, line))

    while True:
        # lexText
        x = text.find("{{", pos)
        if x < 0:
            if pos < n:
                emit(TEXT, pos, n)
            items.append(Item(EOF_, n, "", line))
            return items
        trim = text[x + 2:x + 3] == "-" and text[x + 3:x + 4] in tuple(_SPACE) and x + 3 < n
        end_text = x
        if trim:
            while end_text > pos and text[end_text - 1] in _SPACE:
                end_text -= 1
        if end_text > pos:
            emit(TEXT, pos, end_text)
        line += text.count("\n", end_text, x)
        pos = x + 2
        after = 2 if trim else 0
        if text.startswith("/*", pos + after):
            # lexComment
            pos += after
            cend = text.find("*/", pos + 2)
            if cend < 0:
                err("unclosed comment", pos)
                return items
            line += text.count("\n", pos, cend)
            pos = cend + 2
            rtrim = text[pos:pos + 1] in tuple(_SPACE) and text[pos + 1:pos + 2] == "-" and \
                text.startswith("}}", pos + 2)
            if rtrim:
                pos += 2
            if not text.startswith("}}", pos):
                err("comment ends before closing delimiter", pos)
                return items
            pos += 2
            if rtrim:
                while pos < n and text[pos] in _SPACE:
                    line += text[pos] == "\n"
                    pos += 1
            continue
        items.append(Item(LDELIM, x, "{{", line))
        pos += after
        depth = 0
        # lexInsideAction
        while True:
            rtrim = pos + 1 < n and text[pos] in _SPACE and text[pos + 1] == "-" and \
                text.startswith("}}", pos + 2)
            if rtrim or text.startswith("}}", pos):
                if depth:
                    err("unclosed left paren", pos)
                    return items
                if rtrim:
                    pos += 2
                items.append(Item(RDELIM, pos, "}}", line))
                pos += 2
                if rtrim:
                    while pos < n and text[pos] in _SPACE:
                        line += text[pos] == "\n"
                        pos += 1
                break
            if pos >= n:
                err("unclosed action", pos)
                return items
            c = text[pos]
            start = pos
            pos += 1
            if c in _SPACE:
                # lexSpace: stop before a space that begins " -}}"
                while pos < n and text[pos] in _SPACE:
                    if text[pos + 1:pos + 2] == "-" and text.startswith("}}", pos + 2):
                        break
                    pos += 1
                emit(SPACE, start, pos)
            elif c == "=":
                emit(ASSIGN, start, pos)
            elif c == ":":
                if text[pos:pos + 1] != "=":
                    err("expected :=", start)
                    return items
                pos += 1
                emit(DECLARE, start, pos)
            elif c == "|":
                emit(PIPE, start, pos)
            elif c == '"':
                while True:
                    if pos >= n or text[pos] == "\n":
                        err("unterminated quoted string", start)
                        return items
                    if text[pos] == "\\":
                        pos += 1
                        if pos >= n or text[pos] == "\n":
                            err("unterminated quoted string", start)
                            return items
                    elif text[pos] == '"':
                        pos += 1
                        break
                    pos += 1
                emit(STRING, start, pos)
            elif c == "`":
                e = text.find("`", pos)
                if e < 0:
                    err("unterminated raw quoted string", start)
                    return items
                pos = e + 1
                emit(RAWSTRING, start, pos)
            elif c == "'":
                while True:
                    if pos >= n or text[pos] == "\n":
                        err("unterminated character constant", start)
                        return items
                    if text[pos] == "\\":
                        pos += 1
                    elif text[pos] == "'":
                        pos += 1
                        break
                    pos += 1
                emit(CHARCONST, start, pos)
            elif c == "$" or (c == "." and not (pos < n and text[pos].isdigit())):
                # lexVariable / lexField
                typ = VARIABLE if c == "$" else FIELD
                if pos >= n or text[pos] in _TERMINATORS or text.startswith("}}", pos):
                    emit(VARIABLE if c == "$" else DOT, start, pos)
                    continue
                while pos < n and _is_alnum(text[pos]):
                    pos += 1
                if not (pos >= n or text[pos] in _TERMINATORS or text.startswith("}}", pos)):
                    err(f"bad character {go_rune_u(text[pos])}", pos)
                    return items
                emit(typ, start, pos)
            elif c in "+-.0123456789":
                pos = _scan_number(text, start)
                if pos < 0 or (pos < n and _is_alnum(text[pos])):
                    end = max(pos, start + 1)
                    while end < n and _is_alnum(text[end]):
                        end += 1
                    err(f"bad number syntax: {_q(text[start:end])}", start)
                    return items
                emit(NUMBER, start, pos)
            elif _is_alnum(c):
                while pos < n and _is_alnum(text[pos]):
                    pos += 1
                if not (pos >= n or text[pos] in _TERMINATORS or text.startswith("}}", pos)):
                    err(f"bad character {go_rune_u(text[pos])}", pos)
                    return items
                word = text[start:pos]
                if word in KEYWORDS:
                    emit(NIL if word == "nil" else KEYWORD, start, pos)
                elif word in ("true", "false"):
                    emit(BOOL, start, pos)
                else:
                    emit(IDENT, start, pos)
            elif c == "(":
                emit(LPAREN, start, pos)
                depth += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    err("unexpected right paren", start)
                    return items
                emit(RPAREN, start, pos)
            elif ord(c) < 128 and c.isprintable():
                emit(CHAR, start, pos)
            else:
                err(f"unrecognized character in action: {go_rune_u(c)}", start)
                return items


def _q(s: str) -> str:
    from conch.cli.gotemplate.gofmt import go_quote

    return go_quote(s)


def _scan_number(text: str, pos: int) -> int:
    """Go's scanNumber: the end of the number at ``pos``, or -1 when it is no number."""
    n = len(text)
    if pos < n and text[pos] in "+-":
        pos += 1
    digits = "0123456789_"
    if text.startswith(("0x", "0X"), pos):
        pos += 2
        digits = "0123456789abcdefABCDEF_"
    elif text.startswith(("0o", "0O"), pos):
        pos += 2
        digits = "01234567_"
    elif text.startswith(("0b", "0B"), pos):
        pos += 2
        digits = "01_"
    start = pos
    while pos < n and text[pos] in digits:
        pos += 1
    if pos < n and text[pos] == ".":
        pos += 1
        while pos < n and text[pos] in digits:
            pos += 1
    if pos == start or (pos == start + 1 and text[start] == "."):
        return -1
    if digits[:10] == "0123456789" and pos < n and text[pos] in ("eE" if len(digits) < 20 else "pP"):
        pos += 1
        if pos < n and text[pos] in "+-":
            pos += 1
        d0 = pos
        while pos < n and text[pos] in "0123456789_":
            pos += 1
        if pos == d0:
            return -1
    if pos < n and text[pos] == "i":
        pos += 1
    return pos
