"""Go text/template's evaluator (text/template/exec.go) over :mod:`values`.

Walks the tree with Go's rules: truthiness of empty values, ``<no value>`` for a missing
map key (or an error with ``missingkey=error``), "can't evaluate field" for a struct,
map keys sorted in ``range``, variables scoped to their control structure, and the
argument checks of a function call. Errors read as Go's:
``template: NAME:LINE:COL: executing "NAME" at <NODE>: MESSAGE``.
"""

from __future__ import annotations

from conch.cli.gotemplate import parse as P
from conch.cli.gotemplate.gofmt import go_quote, sprint_value
from conch.cli.gotemplate.values import (NOVALUE, GoMap, GoSlice, NilPtr, Struct, go_type,
                                         truth)


class ExecError(Exception):
    """A failure while executing; ``partial`` is what was written before it."""

    def __init__(self, message: str, partial: str = ""):
        super().__init__(message)
        self.partial = partial


class FuncError(Exception):
    """Raised by a template function: becomes ``error calling NAME: MESSAGE``."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Func:
    """A template function with its Go signature: ``params`` are Go type names of the
    fixed parameters (``any`` for reflect.Value/interface{}), ``variadic`` the element
    type of a trailing ``...`` parameter (or None)."""

    __slots__ = ("fn", "params", "variadic", "raw")

    def __init__(self, fn, params=("any",), variadic=None, raw=False):
        self.fn, self.params, self.variadic, self.raw = fn, tuple(params), variadic, raw


_UNDERLYING = {"strslice.StrSlice": "[]string"}


def _plain(v) -> bool:
    """A container decoded into interface{} (its elements' static type is interface {})."""
    return (type(v) is dict) or (type(v) is list)


class State:
    def __init__(self, tree: P.Tree, funcs: dict, missingkey: str = "default"):
        self.tree = tree
        self.funcs = funcs
        self.missingkey = missingkey
        self.node = None
        self.vars: list[list] = []
        self.out: list[str] = []
        self.text = ""
        self.depth = 0

    # -- errors
    def errorf(self, msg: str):
        name = self.tree.name
        if self.node is None:
            raise ExecError(f"template: {name}: {msg}", "".join(self.out))
        pos = self.node.pos
        text = self.text[:pos]
        nl = text.rfind("\n")
        col = pos if nl < 0 else pos - (nl + 1)
        line = 1 + text.count("\n")
        ctx = str(self.node)
        raise ExecError(f"template: {name}:{line}:{col}: executing {go_quote(name)} at <{ctx}>: {msg}",
                        "".join(self.out))

    def at(self, node):
        self.node = node

    # -- variables
    def push(self, name, value):
        self.vars.append([name, value])

    def set_var(self, name, value):
        for v in reversed(self.vars):
            if v[0] == name:
                v[1] = value
                return
        self.errorf(f"undefined variable: {name}")

    def var_value(self, name):
        for v in reversed(self.vars):
            if v[0] == name:
                return v[1]
        self.errorf(f"undefined variable: {name}")

    # -- walk
    def walk(self, dot, node):
        self.at(node)
        if isinstance(node, P.Action):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, val)
        elif isinstance(node, P.Text):
            self.out.append(node.text)
        elif isinstance(node, P.List):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, P.Branch):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(node.kind, dot, node)
        elif isinstance(node, P.Continue):
            raise _Continue()
        elif isinstance(node, P.Break):
            raise _Break()
        elif isinstance(node, P.TemplateCall):
            self.walk_template(dot, node)
        else:
            self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, kind, dot, node):
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            t, ok = truth(val)
            if not ok:
                self.errorf(f"if/with can't use {sprint_value(val)}")
            if t:
                self.walk(val if kind == "with" else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot, node):
        self.at(node)
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            if isinstance(val, NilPtr):
                val = NOVALUE
            ndecl = len(node.pipe.decl)
            vmark = len(self.vars)

            def one(index, elem):
                if ndecl:
                    if node.pipe.is_assign:
                        self.set_var(node.pipe.decl[0].ident[0], index if ndecl > 1 else elem)
                    else:
                        self.vars[vmark - 1][1] = elem
                if ndecl > 1:
                    if node.pipe.is_assign:
                        self.set_var(node.pipe.decl[1].ident[0], elem)
                    else:
                        self.vars[vmark - 2][1] = index
                inner = len(self.vars)
                try:
                    self.walk(elem, node.list)
                except _Continue:
                    pass
                finally:
                    del self.vars[inner:]

            if isinstance(val, (list, tuple)) and not isinstance(val, str):
                if val:
                    try:
                        for i, e in enumerate(val):
                            one(i, e)
                    except _Break:
                        pass
                    return
            elif isinstance(val, dict) and not hasattr(val, "go_type_name"):
                if val:
                    from conch.cli.gotemplate.gofmt import _sort_key

                    try:
                        for k in sorted(val, key=_sort_key):
                            one(k, val[k])
                    except _Break:
                        pass
                    return
            elif isinstance(val, int) and not isinstance(val, bool):
                if ndecl > 1:
                    self.errorf(f"can't use {int(val)} to iterate over more than one variable")
                try:
                    for i in range(int(val)):
                        one(i, i)
                except _Break:
                    pass
                return
            elif val is NOVALUE or val is None:
                pass
            else:
                self.errorf(f"range can't iterate over {sprint_value(val)}")
            if node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_template(self, dot, node):
        self.at(node)
        lst = self.tree.defined.get(node.name)
        if lst is None:
            self.errorf(f"template {go_quote(node.name)} not defined")
        newdot = self.eval_pipeline(dot, node.pipe) if node.pipe else NOVALUE
        saved = self.vars
        self.vars = [["$", newdot]]
        self.depth += 1
        if self.depth > 1000:
            self.errorf(f"exceeded maximum template depth (100000)")
        try:
            self.walk(newdot, lst)
        finally:
            self.vars = saved
            self.depth -= 1

    # -- pipelines
    def eval_pipeline(self, dot, pipe):
        if pipe is None:
            return NOVALUE
        self.at(pipe)
        value = NOVALUE
        first = True
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, NOVALUE if first else value, not first)
            first = False
            if value is None:  # a nil interface{}: reflect.ValueOf(nil) ("lovely!")
                value = NOVALUE
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.push(var.ident[0], value)
        return value

    def not_a_function(self, args, has_final):
        if (args is not None and len(args) > 1) or has_final:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot, cmd, final, has_final):
        first = cmd.args[0]
        if isinstance(first, P.Field):
            self.at(first)
            return self.eval_field_chain(dot, dot, first, first.ident, cmd.args, final, has_final)
        if isinstance(first, P.Chain):
            return self.eval_chain(dot, first, cmd.args, final, has_final)
        if isinstance(first, P.Identifier):
            return self.eval_function(dot, first, cmd, cmd.args, final, has_final)
        if isinstance(first, P.Pipe):
            self.not_a_function(cmd.args, has_final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, P.Variable):
            return self.eval_variable(dot, first, cmd.args, final, has_final)
        self.at(first)
        self.not_a_function(cmd.args, has_final)
        if isinstance(first, P.Bool):
            return first.value
        if isinstance(first, P.Dot):
            return dot
        if isinstance(first, P.Nil):
            self.errorf("nil is not a command")
        if isinstance(first, P.Number):
            return first.value
        if isinstance(first, P.String):
            return first.text
        self.errorf(f"can't evaluate command {first}")

    def eval_chain(self, dot, chain, args, final, has_final):
        self.at(chain)
        if isinstance(chain.node, P.Nil):
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final, has_final)

    def eval_variable(self, dot, var, args, final, has_final):
        self.at(var)
        value = self.var_value(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args, has_final)
            return value
        return self.eval_field_chain(dot, value, var, var.ident[1:], args, final, has_final)

    def eval_field_chain(self, dot, receiver, node, ident, args, final, has_final):
        iface = False
        for name in ident[:-1]:
            parent = receiver
            receiver = self.eval_field(dot, name, node, None, NOVALUE, False, receiver, iface)
            iface = _plain(parent)
        return self.eval_field(dot, ident[-1], node, args, final, has_final, receiver, iface)

    def eval_field(self, dot, name, node, args, final, has_final, receiver, iface=False):
        if receiver is NOVALUE:
            if self.missingkey == "error":
                self.errorf(f"nil data; no entry for key {go_quote(name)}")
            return NOVALUE
        typ = "interface {}" if iface or receiver is None else go_type(receiver)
        if receiver is None:
            self.errorf(f"nil pointer evaluating {typ}.{name}")
        has_args = (args is not None and len(args) > 1) or has_final
        gm = getattr(receiver, "go_method", None)
        if gm is not None:  # a value with methods (a formatter context, a header map)
            method = gm(name)
            if method is not None:
                return self.call_method(dot, method, node, name, args, final, has_final)
            tn = getattr(receiver, "go_type_name", None)
            if tn is not None:  # a formatter context: its fields are its methods
                self.errorf(f"can't evaluate field {name} in type {tn}")
        if isinstance(receiver, Struct):
            if name in receiver.fields:
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return receiver.fields[name]
        elif isinstance(receiver, NilPtr):
            if name in (receiver.fields or ()):
                self.errorf(f"nil pointer evaluating {typ}.{name}")
        elif isinstance(receiver, dict):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                v = receiver[name]
                return v
            if self.missingkey == "error":
                self.errorf(f"map has no entry for key {go_quote(name)}")
            return NOVALUE
        self.errorf(f"can't evaluate field {name} in type {typ}")

    def call_method(self, dot, method, node, name, args, final, has_final):
        fn = method if isinstance(method, Func) else Func(method, (), None)
        return self.eval_call(dot, fn, False, node, name, args, final, has_final)

    def eval_function(self, dot, ident, cmd, args, final, has_final):
        self.at(ident)
        fn = self.funcs.get(ident.name)
        if fn is None:
            self.errorf(f"{go_quote(ident.name)} is not a defined function")
        return self.eval_call(dot, fn, True, cmd, ident.name, args, final, has_final)

    def eval_call(self, dot, fn: Func, builtin, node, name, args, final, has_final):
        args = list(args[1:]) if args is not None else []
        num_in = len(args) + (1 if has_final else 0)
        nparams = len(fn.params)
        if fn.variadic is not None:
            if num_in < nparams:
                self.errorf(f"wrong number of args for {name}: want at least {nparams} got {len(args)}")
        elif num_in != nparams:
            self.errorf(f"wrong number of args for {name}: want {nparams} got {num_in}")
        if builtin and name in ("and", "or"):
            v = NOVALUE
            for a in args:
                v = self.eval_arg(dot, "any", a)
                if truth(v)[0] == (name == "or"):
                    return v
            if has_final:
                v = final
            return v
        argv = []
        for i, a in enumerate(args):
            t = fn.params[i] if i < nparams else fn.variadic
            argv.append(self.eval_arg(dot, t, a))
        if has_final:
            if fn.variadic is not None and num_in - 1 >= nparams:
                t = fn.variadic
            else:
                t = fn.params[num_in - 1] if fn.params else "any"
            argv.append(self.validate_type(final, t))
        if fn.raw:  # wants the evaluator (call)
            argv.insert(0, self)
        try:
            return fn.fn(*argv)
        except FuncError as exc:
            self.at(node)
            self.errorf(f"error calling {name}: {exc}")

    # -- arguments
    def validate_type(self, value, typ):
        if typ == "any":
            return value
        if value is NOVALUE or value is None:
            if typ.startswith(("[]", "map[", "*")):
                return GoSlice((), typ, nil=True) if typ.startswith("[]") else None
            self.errorf(f"invalid value; expected {typ}")
        got = go_type(value)
        if got != typ and _UNDERLYING.get(got) != typ:  # a named type's underlying one is assignable
            if typ == "[]string" and isinstance(value, list) and got == "[]interface {}":
                pass
            self.errorf(f"wrong type for value; expected {typ}; got {got}")
        return value

    def eval_arg(self, dot, typ, n):
        self.at(n)
        if isinstance(n, P.Dot):
            return self.validate_type(dot, typ)
        if isinstance(n, P.Nil):
            if typ == "any" or typ.startswith(("[]", "map[", "*")):
                return None
            self.errorf(f"cannot assign nil to {typ}")
        if isinstance(n, P.Field):
            return self.validate_type(self.eval_field_chain(dot, dot, n, n.ident, [n], NOVALUE, False), typ)
        if isinstance(n, P.Variable):
            return self.validate_type(self.eval_variable(dot, n, None, NOVALUE, False), typ)
        if isinstance(n, P.Pipe):
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if isinstance(n, P.Identifier):
            fn_args = [n]
            return self.validate_type(self.eval_function(dot, n, n, fn_args, NOVALUE, False), typ)
        if isinstance(n, P.Chain):
            return self.validate_type(self.eval_chain(dot, n, None, NOVALUE, False), typ)
        if typ == "any":
            if isinstance(n, P.Bool):
                return n.value
            if isinstance(n, P.Number):
                return n.value
            if isinstance(n, P.String):
                return n.text
        if typ == "string":
            if isinstance(n, P.String):
                return n.text
            self.errorf(f"expected string; found {n}")
        if typ == "int":
            if isinstance(n, P.Number) and isinstance(n.value, int):
                return n.value
            if isinstance(n, P.Number) and float(n.value).is_integer():
                return int(n.value)
            self.errorf(f"expected integer; found {n}")
        if typ == "bool":
            if isinstance(n, P.Bool):
                return n.value
            self.errorf(f"expected bool; found {n}")
        self.errorf(f"can't handle {n} for arg of type {typ}")

    # -- output
    def print_value(self, node, v):
        self.at(node)
        if isinstance(v, Struct) and v.ptr:
            v = Struct(v.gotype, v.fields, False, v.raw)
        self.out.append(sprint_value(v))


def execute(tree: P.Tree, text: str, data, funcs: dict, missingkey: str = "default") -> str:
    s = State(tree, funcs, missingkey)
    s.text = text
    s.vars = [["$", data]]
    try:
        s.walk(data, tree.root)
    except (_Break, _Continue):
        pass
    except RecursionError:
        raise ExecError(f"template: {tree.name}: exceeded maximum template depth (100000)",
                        "".join(s.out)) from None
    except (ExecError, FuncError):
        raise
    except Exception as exc:  # a bug of ours: still Go's shape of message, not a traceback
        s.errorf(f"internal error: {type(exc).__name__}: {exc}")
    return "".join(s.out)
