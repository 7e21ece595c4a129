"""Go's builtin template functions (text/template/funcs.go) and the docker CLI's extras
(docker/cli templates/templates.go: json split join title lower upper pad truncate)."""

from __future__ import annotations

from conch.cli.gotemplate.exec import FuncError, Func
from conch.cli.gotemplate.gofmt import sprint, sprintf, sprintln, sprint_value
from conch.cli.gotemplate.values import (NOVALUE, GoInt, GoMap, GoSlice, NilPtr, Struct, go_type,
                                         truth)


def _len(item):
    if item is NOVALUE or item is None:  # Go reaches reflect with a zero Value
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, NilPtr):
        raise FuncError("len of nil pointer")
    if isinstance(item, (str, list, tuple, dict)) and not hasattr(item, "go_type_name"):
        return len(item.encode("utf-8", "surrogateescape")) if isinstance(item, str) else len(item)
    raise FuncError(f"len of type {go_type(item)}")


def _index_arg(index, n):
    if index is NOVALUE or index is None:
        raise FuncError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index slice/array with type {go_type(index)}")
    x = int(index)
    if x < 0 or x > n:
        raise FuncError(f"index out of range: {x}")
    return x


def _key_type(m) -> str:
    from conch.cli.gotemplate.typed import _NAMED, _split_map

    t = go_type(m)
    t = _NAMED.get(t, t)  # nat.PortMap is a map[nat.Port]...: a string key is no nat.Port
    return _split_map(t)[0] if t.startswith("map[") else "string"


def _index(item, *indexes):
    if item is NOVALUE or item is None:
        raise FuncError("index of untyped nil")
    for index in indexes:
        if isinstance(item, NilPtr) or item is None:
            raise FuncError("index of nil pointer")
        if isinstance(item, (list, tuple, str)):
            x = _index_arg(index, len(item))
            if x == len(item):
                raise FuncError("reflect: slice index out of range" if not isinstance(item, str)
                                else "reflect: string index out of range")
            item = item[x] if not isinstance(item, str) else GoInt(item.encode()[x], "uint8")
        elif isinstance(item, dict) and not hasattr(item, "go_type_name"):
            kt = _key_type(item)
            if index is NOVALUE or index is None:
                raise FuncError(f"value is nil; should be of type {kt}")
            if go_type(index) != kt:
                raise FuncError(f"value has type {go_type(index)}; should be {kt}")
            if index in item:
                item = item[index]
            else:
                item = item.zero if isinstance(item, GoMap) else None
        else:
            raise FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item, *indexes):
    if item is NOVALUE or item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, (str, list, tuple)):
        raise FuncError(f"can't slice item of type {go_type(item)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise FuncError("cannot 3-index slice a string")
    n = len(item)
    idx = [0, n]
    for i, index in enumerate(indexes):
        idx_i = _index_arg(index, n)
        if i < 2:
            idx[i] = idx_i
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    out = item[idx[0]:idx[1]]
    if isinstance(item, GoSlice):
        return GoSlice(out, item.gotype)
    return out


def _not(v):
    return not truth(v)[0]


# comparisons: basicKind
_BOOL, _INT, _FLOAT, _STRING = range(4)


def _kind(v):
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, int):
        return _INT
    if isinstance(v, float):
        return _FLOAT
    if isinstance(v, str):
        return _STRING
    return None


def _eq(a1, *rest):
    if not rest:
        raise FuncError("missing argument for comparison")
    k1 = _kind(a1)
    for a in rest:
        k2 = _kind(a)
        if k1 != k2:
            valid1 = a1 is not NOVALUE
            valid2 = a is not NOVALUE
            if valid1 and valid2:
                raise FuncError("incompatible types for comparison")
            t = False
        elif k1 is None:
            if a1 is NOVALUE and a is NOVALUE:
                t = True  # never reached in Go: both invalid compare equal by kind
            elif isinstance(a1, Struct) and a1.ptr and isinstance(a, Struct) and a.ptr:
                t = a1 is a  # pointers: the same object
            elif isinstance(a1, (list, dict, Struct)) or isinstance(a, (list, dict, Struct)):
                if (a1 is None or isinstance(a1, NilPtr)) or (a is None or isinstance(a, NilPtr)):
                    t = (a1 is None or isinstance(a1, NilPtr)) == (a is None or isinstance(a, NilPtr))
                else:
                    raise FuncError(f"non-comparable type {sprint_value(a)}: {go_type(a)}")
            else:
                t = (a1 is None or isinstance(a1, NilPtr)) == (a is None or isinstance(a, NilPtr))
        else:
            t = a1 == a
        if t:
            return True
    return False


def _lt(a1, a2):
    k1, k2 = _kind(a1), _kind(a2)
    if k1 is None or k2 is None:
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    if k1 == _BOOL:
        raise FuncError("invalid type for comparison")
    if k1 == _STRING:
        return a1.encode("utf-8", "surrogateescape") < a2.encode("utf-8", "surrogateescape")
    return a1 < a2


def _le(a1, a2):
    return _lt(a1, a2) or _eq(a1, a2)


def _gt(a1, a2):
    return not _le(a1, a2)


def _ge(a1, a2):
    return not _lt(a1, a2)


def _eval_args(args):
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(*args)


def _html(*args):
    s = _eval_args(args)
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&#34;").replace("\0", "\ufffd"))


def _js(*args):
    s = _eval_args(args)
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("\\'")
        elif c == '"':
            out.append('\\"')
        elif c in "<>&=":
            out.append(f"\\u{ord(c):04X}")
        elif ord(c) < 0x20 or not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args):
    from urllib.parse import quote_plus

    return quote_plus(_eval_args(args), safe="")


def _call(state, fn, *args):
    raise FuncError(f"non-function {sprint_value(fn)} of type {go_type(fn)}"
                    if fn is not NOVALUE else "call of nil")


# -- docker/cli templates.go -------------------------------------------------------------


def _json(v):
    from conch.cli.gotemplate.typed import marshal

    return marshal(v)


def _split(s, sep):
    if sep == "":
        return GoSlice(list(s), "[]string")
    return GoSlice(s.split(sep), "[]string")


def _join(elems, sep):
    return sep.join(elems)


def _title(s):
    # strings.Title: the first letter of each word (after a separator) in upper case
    out = []
    prev = " "
    for c in s:
        sep = not (c.isalnum() or c == "_") if ord(prev) < 128 else prev.isspace()
        if ord(prev) < 128:
            sep = not (prev.isalnum() or prev == "_")
        out.append(c.upper() if sep else c)
        prev = c
    return "".join(out)


def _pad(s, prefix, suffix):
    if prefix < 0 or suffix < 0:
        raise FuncError("strings: negative Repeat count")
    return " " * prefix + s + " " * suffix


def _truncate(s, length):
    if length < 0:
        raise FuncError(f"runtime error: slice bounds out of range [:{length}]")
    b = s.encode("utf-8", "surrogateescape")
    if len(b) < length:
        return s
    return b[:length].decode("utf-8", "surrogateescape")


BUILTINS = {
    "and": Func(None, ("any",), "any"),
    "or": Func(None, ("any",), "any"),
    "not": Func(_not, ("any",)),
    "len": Func(_len, ("any",)),
    "index": Func(_index, ("any",), "any"),
    "slice": Func(_slice, ("any",), "any"),
    "print": Func(sprint, (), "any"),
    "printf": Func(sprintf, ("string",), "any"),
    "println": Func(sprintln, (), "any"),
    "html": Func(_html, (), "any"),
    "js": Func(_js, (), "any"),
    "urlquery": Func(_urlquery, (), "any"),
    "call": Func(_call, ("any",), "any", raw=True),
    "eq": Func(_eq, ("any",), "any"),
    "ne": Func(lambda a, b: not _eq(a, b), ("any", "any")),
    "lt": Func(_lt, ("any", "any")),
    "le": Func(_le, ("any", "any")),
    "gt": Func(_gt, ("any", "any")),
    "ge": Func(_ge, ("any", "any")),
}

DOCKER = {
    "json": Func(_json, ("any",)),
    "split": Func(_split, ("string", "string")),
    "join": Func(_join, ("[]string", "string")),
    "title": Func(_title, ("string",)),
    "lower": Func(lambda s: s.lower(), ("string",)),
    "upper": Func(lambda s: s.upper(), ("string",)),
    "pad": Func(_pad, ("string", "int", "int")),
    "truncate": Func(_truncate, ("string", "int")),
}

ALL = {**BUILTINS, **DOCKER}


def _first(v, *_):
    return v


# docker/cli templates.HeaderFunctions: a table's header row is the template run on the
# column titles, where these return the title as it is
HEADER = {
    "json": Func(_first, ("string",)),
    "split": Func(_first, ("string", "string")),
    "join": Func(_first, ("string", "string")),
    "title": Func(_first, ("string",)),
    "lower": Func(_first, ("string",)),
    "upper": Func(_first, ("string",)),
    "pad": Func(_pad, ("string", "int", "int")),  # the one that acts on titles too
    "truncate": Func(_first, ("string", "int")),
}

HEADER_ALL = {**BUILTINS, **HEADER}
