"""The Go values a template sees, modelled on Python values.

Plain Python data is what ``encoding/json`` decodes into ``interface{}``: dict is
``map[string]interface {}``, list ``[]interface {}``, str/bool/int/float, None a nil
interface. Typed values (what the docker CLI decodes into its structs) carry their Go type:
:class:`Struct`, :class:`GoInt`/:class:`GoFloat`/:class:`GoStr` (int subclasses, so
arithmetic and comparison stay Python's), :class:`GoSlice`, :class:`GoMap`, :class:`NilPtr`.
``NOVALUE`` is reflect's invalid Value: a missing map key, printed ``<no value>``.
"""

from __future__ import annotations


class _NoValue:
    __slots__ = ()

    def __repr__(self):
        return "NOVALUE"

    def __bool__(self):
        return False


NOVALUE = _NoValue()


class GoInt(int):

    def __new__(cls, value, gotype="int"):
        self = super().__new__(cls, value)
        self.gotype = gotype
        return self


class GoFloat(float):
    __slots__ = ("gotype",)

    def __new__(cls, value, gotype="float64"):
        self = super().__new__(cls, value)
        self.gotype = gotype
        return self


class GoStr(str):
    """A named string type (``json.Number``, ``container.HealthStatus``...)."""

    def __new__(cls, value, gotype="string"):
        self = super().__new__(cls, value)
        self.gotype = gotype
        return self


class GoSlice(list):
    __slots__ = ("gotype", "nil")

    def __init__(self, items=(), gotype="[]interface {}", nil=False):
        super().__init__(items)
        self.gotype, self.nil = gotype, nil


class GoMap(dict):
    __slots__ = ("gotype", "nil", "zero")

    def __init__(self, items=(), gotype="map[string]interface {}", nil=False, zero=None):
        super().__init__(items)
        self.gotype, self.nil, self.zero = gotype, nil, zero


class NilPtr:
    """A nil ``*T``; ``fields`` are T's field names (a missing one is reported as such,
    not as a nil pointer, as Go does)."""

    __slots__ = ("gotype", "fields")

    def __init__(self, gotype, fields=()):
        self.gotype = gotype  # "*container.Health"
        self.fields = fields

    def __repr__(self):
        return f"NilPtr({self.gotype})"


class Struct:
    """A Go struct value (``ptr``: reached through a pointer, ``*T``). ``raw`` is the JSON
    it was decoded from, which ``json`` marshals back (the API JSON is the struct's)."""

    __slots__ = ("gotype", "fields", "ptr", "raw")

    def __init__(self, gotype, fields, ptr=False, raw=None):
        self.gotype, self.fields, self.ptr, self.raw = gotype, fields, ptr, raw

    def __repr__(self):
        return f"Struct({self.gotype}, {self.fields!r})"


def go_type(v) -> str:
    """``%T``: the dynamic Go type of ``v``."""
    if v is None or v is NOVALUE:
        return "<nil>"
    if v is True or v is False:
        return "bool"
    t = getattr(v, "gotype", None)
    if t is not None:
        return ("*" + t) if isinstance(v, Struct) and v.ptr else t
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        tn = getattr(v, "go_type_name", None)  # a formatter context (format.Row)
        return tn or "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if callable(v):
        return "func()"
    return type(v).__name__


def is_nil(v) -> bool:
    return v is None or isinstance(v, NilPtr) or (isinstance(v, (GoSlice, GoMap)) and v.nil)


def truth(v) -> tuple[bool, bool]:
    """Go's ``template.IsTrue``: (truth, ok). Non-empty containers, non-zero numbers,
    non-nil pointers, and any struct are true."""
    if v is NOVALUE:
        return False, True
    if v is None or isinstance(v, NilPtr):
        return False, True
    if isinstance(v, bool):
        return v, True
    if isinstance(v, (int, float, str, list, tuple, dict)):
        return bool(v), True
    if isinstance(v, Struct):
        return True, True
    return True, True
