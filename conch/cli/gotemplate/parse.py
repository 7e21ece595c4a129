"""Go text/template's parser (text/template/parse/parse.go): items to a node tree.

The grammar, the checks done at parse time (undefined functions and variables, empty
pipelines, non-executable pipeline stages) and the error texts are Go's:
``template: <name>:<line>: <message>``.
"""

from __future__ import annotations

from conch.cli.gotemplate import lexer as L


class ParseError(Exception):
    """A template that does not parse; ``str()`` is Go's text."""


# -- nodes ---------------------------------------------------------------------------


class Node:
    __slots__ = ("pos",)


class Text(Node):
    __slots__ = ("text",)

    def __init__(self, pos, text):
        self.pos, self.text = pos, text


class Dot(Node):
    __slots__ = ()

    def __init__(self, pos):
        self.pos = pos

    def __str__(self):
        return "."


class Nil(Node):
    __slots__ = ()

    def __init__(self, pos):
        self.pos = pos

    def __str__(self):
        return "nil"


class Bool(Node):
    __slots__ = ("value",)

    def __init__(self, pos, value):
        self.pos, self.value = pos, value

    def __str__(self):
        return "true" if self.value else "false"


class Number(Node):
    __slots__ = ("text", "value")

    def __init__(self, pos, text, value):
        self.pos, self.text, self.value = pos, text, value

    def __str__(self):
        return self.text


class String(Node):
    __slots__ = ("quoted", "text")

    def __init__(self, pos, quoted, text):
        self.pos, self.quoted, self.text = pos, quoted, text

    def __str__(self):
        return self.quoted


class Identifier(Node):
    __slots__ = ("name",)

    def __init__(self, pos, name):
        self.pos, self.name = pos, name

    def __str__(self):
        return self.name


class Field(Node):
    __slots__ = ("ident",)

    def __init__(self, pos, text):
        self.pos, self.ident = pos, text[1:].split(".")

    def __str__(self):
        return "." + ".".join(self.ident)


class Variable(Node):
    __slots__ = ("ident",)

    def __init__(self, pos, text):
        self.pos, self.ident = pos, text.split(".")

    def __str__(self):
        return ".".join(self.ident)


class Chain(Node):
    __slots__ = ("node", "fields")

    def __init__(self, pos, node):
        self.pos, self.node, self.fields = pos, node, []

    def __str__(self):
        s = str(self.node)
        if isinstance(self.node, Pipe):
            s = f"({s})"
        return s + "".join("." + f for f in self.fields)


class Command(Node):
    __slots__ = ("args",)

    def __init__(self, pos):
        self.pos, self.args = pos, []

    def __str__(self):
        return " ".join(f"({a})" if isinstance(a, Pipe) else str(a) for a in self.args)


class Pipe(Node):
    __slots__ = ("line", "is_assign", "decl", "cmds")

    def __init__(self, pos, line):
        self.pos, self.line, self.is_assign, self.decl, self.cmds = pos, line, False, [], []

    def __str__(self):
        s = ""
        if self.decl:
            s = ", ".join(str(d) for d in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


class Action(Node):
    __slots__ = ("line", "pipe")

    def __init__(self, pos, line, pipe):
        self.pos, self.line, self.pipe = pos, line, pipe

    def __str__(self):
        return "{{" + str(self.pipe) + "}}"


class List(Node):
    __slots__ = ("nodes",)

    def __init__(self, pos):
        self.pos, self.nodes = pos, []


class Branch(Node):
    """if / range / with."""

    __slots__ = ("kind", "line", "pipe", "list", "else_list")

    def __init__(self, kind, pos, line, pipe, lst, else_list):
        self.kind, self.pos, self.line, self.pipe, self.list, self.else_list = \
            kind, pos, line, pipe, lst, else_list

    def __str__(self):
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


class TemplateCall(Node):
    __slots__ = ("line", "name", "pipe")

    def __init__(self, pos, line, name, pipe):
        self.pos, self.line, self.name, self.pipe = pos, line, name, pipe

    def __str__(self):
        return "{{template " + _go_q(self.name) + (" " + str(self.pipe) if self.pipe else "") + "}}"


class Break(Node):
    __slots__ = ("line",)

    def __init__(self, pos, line):
        self.pos, self.line = pos, line


class Continue(Break):
    __slots__ = ()


class _End(Node):
    __slots__ = ()

    def __init__(self, pos):
        self.pos = pos

    def __str__(self):
        return "{{end}}"


class _Else(Node):
    __slots__ = ("line",)

    def __init__(self, pos, line):
        self.pos, self.line = pos, line

    def __str__(self):
        return "{{else}}"


def _go_q(s):
    from conch.cli.gotemplate.gofmt import go_quote

    return go_quote(s)


# -- parser ----------------------------------------------------------------------------


class Tree:
    """One parsed template (``root``) plus the ``{{define}}``d ones (``defined``)."""

    def __init__(self, name: str, root: List, defined: dict[str, List]):
        self.name, self.root, self.defined = name, root, defined


def parse(text: str, funcs, name: str = "") -> Tree:
    return _Parser(text, funcs, name).parse()


class _Parser:
    def __init__(self, text, funcs, name):
        self.text = text
        self.funcs = funcs
        self.name = name
        self.items = L.lex(text)
        self.i = 0
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0
        self.defined: dict[str, List] = {}

    # -- items
    def next(self):
        # past the end, EOF (or the lexer's error) again: the index still moves, so a
        # backup() after it lands where it should
        it = self.items[min(self.i, len(self.items) - 1)]
        self.i += 1
        return it

    def backup(self, n=1):
        self.i -= n

    def peek(self):
        return self.items[min(self.i, len(self.items) - 1)]

    def next_non_space(self):
        while True:
            it = self.next()
            if it.typ != L.SPACE:
                return it

    def peek_non_space(self):
        it = self.next_non_space()
        self.backup()
        return it

    def errorf(self, msg, line=None):
        if line is None:
            line = self.items[max(self.i - 1, 0)].line
        raise ParseError(f"template: {self.name}:{line}: {msg}")

    def unexpected(self, item, context):
        if item.typ == L.ERROR:
            extra = ""
            if self.action_line and self.action_line != item.line:
                extra = f" in {context}"
                if item.val.endswith(" action"):
                    extra = extra[len(" in "):]
            self.errorf(f"{item}{extra}", item.line)
        self.errorf(f"unexpected {item} in {context}", item.line)

    def expect(self, typ, context):
        it = self.next_non_space()
        if it.typ != typ:
            self.unexpected(it, context)
        return it

    def keyword(self, it, word):
        return it.typ == L.KEYWORD and it.val == word

    # -- grammar
    def parse(self) -> Tree:
        root = List(0)
        while self.peek().typ != L.EOF_:
            if self.peek().typ == L.LDELIM:
                delim = self.next()
                if self.keyword(self.next_non_space(), "define"):
                    self.parse_definition()
                    continue
                self.i = self.items.index(delim)
            n = self.text_or_action()
            if isinstance(n, (_End, _Else)):
                self.errorf(f"unexpected {n}")
            root.nodes.append(n)
        return Tree(self.name, root, self.defined)

    def parse_definition(self):
        it = self.next_non_space()
        name = self.template_name(it, "define clause")
        self.expect(L.RDELIM, "define clause")
        lst, end = self.item_list()
        if not isinstance(end, _End):
            self.errorf(f"unexpected {end} in define clause")
        self.defined[name] = lst

    def template_name(self, it, context):
        if it.typ in (L.STRING, L.RAWSTRING):
            return _unquote(self, it)
        self.unexpected(it, context)

    def item_list(self):
        lst = List(self.peek_non_space().pos)
        while self.peek_non_space().typ != L.EOF_:
            n = self.text_or_action()
            if isinstance(n, (_End, _Else)):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self):
        it = self.next_non_space()
        if it.typ == L.TEXT:
            return Text(it.pos, it.val)
        if it.typ == L.LDELIM:
            self.action_line = it.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        self.unexpected(it, "input")

    def action(self):
        it = self.next_non_space()
        if it.typ == L.KEYWORD:
            w = it.val
            if w == "block":
                return self.block_control()
            if w in ("break", "continue"):
                if self.range_depth == 0:
                    self.errorf("{{%s}} outside {{range}}" % w)
                self.expect(L.RDELIM, "{{%s}}" % w)
                return (Break if w == "break" else Continue)(it.pos, it.line)
            if w == "else":
                peek = self.peek_non_space()
                if peek.typ == L.KEYWORD and peek.val in ("if", "with"):
                    return _Else(peek.pos, peek.line)
                tok = self.expect(L.RDELIM, "else")
                return _Else(tok.pos, tok.line)
            if w == "end":
                return _End(self.expect(L.RDELIM, "end").pos)
            if w in ("if", "range", "with"):
                return self.control(w)
            if w == "template":
                return self.template_control()
        self.backup()
        it = self.peek()
        return Action(it.pos, it.line, self.pipeline("command", L.RDELIM))

    def control(self, context):
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, L.RDELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list = None
            if isinstance(nxt, _Else):
                peek = self.peek()
                if context in ("if", "with") and peek.typ == L.KEYWORD and peek.val == context:
                    self.next()
                    else_list = List(nxt.pos)
                    else_list.nodes.append(self.control(context))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, _End):
                        self.errorf(f"expected end; found {nxt}")
            return Branch(context, pipe.pos, pipe.line, pipe, lst, else_list)
        finally:
            del self.vars[mark:]

    def template_control(self):
        it = self.next_non_space()
        name = self.template_name(it, "template clause")
        pipe = None
        if self.next_non_space().typ != L.RDELIM:
            self.backup()
            pipe = self.pipeline("template clause", L.RDELIM)
        return TemplateCall(it.pos, it.line, name, pipe)

    def block_control(self):
        it = self.next_non_space()
        name = self.template_name(it, "block clause")
        pipe = self.pipeline("block clause", L.RDELIM)
        lst, end = self.item_list()
        if not isinstance(end, _End):
            self.errorf(f"unexpected {end} in block clause")
        self.defined[name] = lst
        return TemplateCall(it.pos, it.line, name, pipe)

    def pipeline(self, context, end):
        tok = self.peek_non_space()
        pipe = Pipe(tok.pos, tok.line)
        while True:  # the decls: loop of Go's `goto decls`
            v = self.peek_non_space()
            if v.typ != L.VARIABLE:
                break
            self.next_non_space()
            after = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in (L.ASSIGN, L.DECLARE):
                pipe.is_assign = nxt.typ == L.ASSIGN
                self.next_non_space()
                pipe.decl.append(Variable(v.pos, v.val))
                self.vars.append(v.val)
            elif nxt.typ == L.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(Variable(v.pos, v.val))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (L.VARIABLE, L.RDELIM, L.RPAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            else:
                self.i = self.items.index(v)
            break
        while True:
            tok = self.next_non_space()
            if tok.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if tok.typ in (L.BOOL, L.CHARCONST, L.DOT, L.FIELD, L.IDENT, L.NUMBER, L.NIL,
                           L.RAWSTRING, L.STRING, L.VARIABLE, L.LPAREN):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(tok, context)

    def check_pipeline(self, pipe, context):
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(c.args[0], (Bool, Dot, Nil, Number, String)):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self):
        cmd = Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            op = self.operand()
            if op is not None:
                cmd.args.append(op)
            tok = self.next()
            if tok.typ == L.SPACE:
                continue
            if tok.typ in (L.RDELIM, L.RPAREN):
                self.backup()
            elif tok.typ != L.PIPE:
                self.unexpected(tok, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self):
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == L.FIELD:
            chain = Chain(self.peek().pos, node)
            while self.peek().typ == L.FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, Field):
                return Field(chain.pos, str(chain))
            if isinstance(node, Variable):
                return Variable(chain.pos, str(chain))
            if isinstance(node, (Bool, String, Number, Nil, Dot)):
                self.errorf(f"unexpected . after term {_go_q(str(node))}")
            return chain
        return node

    def term(self):
        tok = self.next_non_space()
        t = tok.typ
        if t == L.IDENT:
            if tok.val not in self.funcs:
                self.errorf(f"function {_go_q(tok.val)} not defined")
            return Identifier(tok.pos, tok.val)
        if t == L.DOT or (t == L.KEYWORD and tok.val == "."):
            return Dot(tok.pos)
        if t == L.NIL:
            return Nil(tok.pos)
        if t == L.VARIABLE:
            name = tok.val.split(".")[0]
            if name not in self.vars:
                self.errorf(f"undefined variable {_go_q(name)}")
            return Variable(tok.pos, tok.val)
        if t == L.FIELD:
            return Field(tok.pos, tok.val)
        if t == L.BOOL:
            return Bool(tok.pos, tok.val == "true")
        if t in (L.NUMBER, L.CHARCONST):
            return Number(tok.pos, tok.val, _number(self, tok))
        if t == L.LPAREN:
            return self.pipeline("parenthesized pipeline", L.RPAREN)
        if t in (L.STRING, L.RAWSTRING):
            return String(tok.pos, tok.val, _unquote(self, tok))
        self.backup()
        return None


def _unquote(p, tok) -> str:
    from conch.cli.gotemplate.gofmt import go_unquote

    try:
        return go_unquote(tok.val)
    except ValueError as exc:
        p.errorf(str(exc), tok.line)


def _number(p, tok):
    """An int or a float, as Go's idealConstant would make of the literal."""
    text = tok.val
    if tok.typ == L.CHARCONST:
        from conch.cli.gotemplate.gofmt import go_unquote

        try:
            s = go_unquote('"' + text[1:-1].replace('"', '\\"') + '"')
        except ValueError:
            s = ""
        if len(s) != 1:
            p.errorf(f"malformed character constant: {text}", tok.line)
        return ord(s)
    if text.endswith("i"):
        p.errorf(f"illegal number syntax: {_go_q(text)}", tok.line)  # complex: not supported
    clean = text.replace("_", "")
    try:
        if clean.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") and "." not in clean \
                and "p" not in clean.lower():
            return int(clean, 0)
        if not any(c in clean for c in ".eEpP"):
            body = clean.lstrip("+-")
            if len(body) > 1 and body[0] == "0":  # Go: a leading 0 is octal
                return int(clean[:len(clean) - len(body)] + "0o" + body[1:], 0)
            return int(clean, 10)
        if clean.lstrip("+-")[:2].lower() == "0x":
            return float.fromhex(clean)
        return float(clean)
    except ValueError:
        p.errorf(f"illegal number syntax: {_go_q(text)}", tok.line)
