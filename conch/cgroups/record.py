"""The record base of conch.cgroups' values (:class:`_Record`).

Frozen, slotted, keyword-only values without ``dataclasses`` (which imports ``inspect``:
~8 ms on every container start; see the import-cost note in ``conch/cgroups/__init__``).
"""


class _Record:
    """An immutable value with keyword-only fields: what ``@dataclass(frozen=True,
    slots=True, kw_only=True)`` gave, without importing dataclasses.

    A subclass lists its fields in ``__slots__`` and sets them in a keyword-only
    ``__init__`` through :meth:`_set`. Equality, hashing and repr go field by field, in
    ``__slots__`` order.
    """

    __slots__ = ()

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def replace(self, **changes):
        """A copy with ``changes`` applied (``dataclasses.replace``); unknown names are a TypeError."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return type(self)(**fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__, self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self):
        # Pickle/copy through __init__ (slots without __dict__ and a blocking __setattr__).
        return _rebuild, (type(self), {name: getattr(self, name) for name in self.__slots__})


def _rebuild(cls, fields):
    return cls(**fields)
