"""The verbs' flag parser: docker's grammar without importing argparse on the hot path.

``Context.parser()`` hands every verb a :class:`Parser`. It records the verb's
``add_argument`` calls (cheap) and parses well-formed command lines itself; anything it
is not sure of -- ``--help``, an unknown flag, a missing or bad value, a value that
starts with ``-``, ``--``, a flag after a positional argument, a flag kind it does not
model -- is handed, unchanged, to the argparse-backed :class:`conch.cli.argparser.Parser`
built from the same recorded calls. argparse stays the definition of the grammar and of
every error text and exit code; this module only has to agree with it on the command
lines it accepts (tests/unit/test_cli_flags.py checks a corpus against argparse).

Why: ``import argparse`` costs ~14 ms (it pulls in ``re``, ``gettext``, ``enum``) on
every ``conch`` call, about a third of the CLI's start-up.

The grammar accepted here (a subset of pflag's and argparse's, where they agree):
``--flag value``, ``--flag=value``, ``-f value``, ``-fvalue``, ``-f=value``, clusters
of short bools ending in at most one value flag (``-it``, ``-dit``, ``-itp 80``),
repeated flags (last wins; ``append`` flags accumulate), ``--bool=false`` / ``-d=false``
(Go's ``strconv.ParseBool`` spellings), and positionals after the flags: with
``parse(argv, stop_after=N)`` the N-th positional ends the flags and the rest of argv
goes to ``ns.rest`` verbatim (``run IMAGE CMD...``).
"""

from __future__ import annotations

# Go's strconv.ParseBool spellings (argparser.parse_bool); anything else goes to argparse,
# which reports it as docker does.
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_MISSING = object()


class Namespace:
    """What ``parse`` returns: attributes named by the flags' ``dest`` (like argparse's)."""

    def __init__(self, **kwargs) -> None:
        self.__dict__.update(kwargs)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


class _Opt:
    """One recorded flag: kind is store, append, flag (store_true/false) or slow."""

    __slots__ = ("dest", "kind", "const", "type", "choices", "default")

    def __init__(self, dest, kind, const=None, type=None, choices=None, default=None):
        self.dest = dest
        self.kind = kind
        self.const = const
        self.type = type
        self.choices = choices
        self.default = default


class Parser:
    """Records ``add_argument`` calls; ``parse`` parses fast or defers to argparse.

    Only ``add_argument`` and ``parse`` are part of the verbs' contract; any other
    attribute (``print_help``, ``error``...) is the argparse parser's.
    """

    def __init__(self, prog: str, usage: str | None = None, description: str | None = None,
                 add_help: bool = True) -> None:
        self._init = (prog, usage, description, add_help)
        self._calls: list[tuple[tuple, dict]] = []
        self._opts: dict[str, _Opt] = {}
        self._order: list[_Opt] = []  # every action, in order (defaults: first dest wins)
        self._positionals: list[_Opt] = []
        self._slow_only = False
        self._real = None
        if add_help:
            self._add(("-h", "--help"), {"action": "help"})

    # -- recording -----------------------------------------------------------------------

    def add_argument(self, *names: str, **kw) -> None:
        self._calls.append((names, kw))
        self._add(names, kw)

    def _add(self, names: tuple, kw: dict) -> None:
        action = kw.get("action")
        nargs = kw.get("nargs")
        if not names[0].startswith("-"):
            kind = "pos" if action in (None, "store") and nargs in (None, "?", "*", "+") \
                and "choices" not in kw else "slow"
            opt = _Opt(names[0], kind, type=kw.get("type"), default=kw.get("default"))
            opt.const = nargs
            self._positionals.append(opt)
            self._order.append(opt)
            self._slow_only |= kind == "slow"
            return
        # argparse's dest: the first long name, else the first name, dashes to underscores
        dest = kw.get("dest") or next((n for n in names if n.startswith("--")), names[0])
        dest = dest.lstrip("-").replace("-", "_") if "dest" not in kw else dest
        if action == "help":
            opt = _Opt(None, "help")
        elif nargs is not None or action not in (None, "store", "append", "store_true", "store_false"):
            opt = _Opt(dest, "slow")
            self._slow_only = True  # its default and semantics are argparse's business
        elif action in ("store_true", "store_false"):
            const = action == "store_true"
            opt = _Opt(dest, "flag", const=const, default=kw.get("default", not const))
        else:
            opt = _Opt(dest, "append" if action == "append" else "store", type=kw.get("type"),
                       choices=kw.get("choices"), default=kw.get("default"))
        for name in names:
            self._opts[name] = opt
        self._order.append(opt)

    # -- argparse, when needed -----------------------------------------------------------

    def _slow(self):
        if self._real is None:
            from conch.cli.argparser import Parser as ArgParser

            prog, usage, description, add_help = self._init
            real = ArgParser(prog, usage=usage, description=description, add_help=add_help)
            for names, kw in self._calls:
                real.add_argument(*names, **kw)
            self._real = real
        return self._real

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._slow(), name)

    # -- parsing -------------------------------------------------------------------------

    def parse(self, argv: list[str], stop_after: int = 0):
        """Flags and positionals of ``argv`` (plus ``ns.rest``); see the module docstring.
        Raises ``UsageError`` (via argparse) on a bad command line, exits on ``--help``."""
        ns = None if self._slow_only else self._fast(argv, stop_after)
        if ns is None:
            return self._slow().parse(argv, stop_after)
        return ns

    def _fast(self, argv: list[str], stop_after: int):
        """The namespace argparse would give, or None to let argparse decide."""
        opts = self._opts
        values: dict = {}
        for o in self._order:
            if o.dest is not None and o.dest not in values:
                values[o.dest] = o.default
        seen: set = set()
        overrides: dict = {}
        positionals: list[str] = []
        rest: list[str] = []
        n = len(argv)
        i = 0
        while i < n:
            tok = argv[i]
            i += 1
            if tok[:1] != "-" or tok == "-":
                positionals.append(tok)
                if stop_after and len(positionals) >= stop_after:
                    rest = argv[i:]
                    break
                continue
            if positionals or tok == "--":
                return None  # interleaved flags, or `--`: argparse's rules
            if tok[1] == "-":
                name, eq, value = tok.partition("=")
                o = opts.get(name)
                if o is None:
                    return None
                if o.kind == "flag":
                    if eq:
                        b = _BOOLS.get(value)
                        if b is None:
                            return None
                        overrides[o.dest] = b == o.const
                    else:
                        values[o.dest] = o.const
                        seen.add(o)
                    continue
                if o.kind not in ("store", "append"):
                    return None
                if not eq:
                    if i >= n or argv[i][:1] == "-":
                        return None
                    value = argv[i]
                    i += 1
                if not self._store(o, value, values, seen):
                    return None
                continue
            # a cluster of short flags: bools, then at most one flag taking a value
            j = 1
            while j < len(tok):
                o = opts.get("-" + tok[j])
                if o is None:
                    return None
                if o.kind == "flag":
                    if tok[j + 1:j + 2] == "=":
                        b = _BOOLS.get(tok[j + 2:])
                        if b is None or j != 1:
                            return None
                        overrides[o.dest] = b == o.const
                        break
                    values[o.dest] = o.const
                    seen.add(o)
                    j += 1
                    continue
                if o.kind not in ("store", "append"):
                    return None
                value = tok[j + 1:]
                if value[:1] == "=":
                    if j != 1:
                        return None
                    value = value[1:]
                elif not value:
                    if i >= n or argv[i][:1] == "-":
                        return None
                    value = argv[i]
                    i += 1
                if not self._store(o, value, values, seen):
                    return None
                break
        if not self._assign_positionals(positionals, values):
            return None
        for o in self._order:  # argparse converts unused string defaults with `type`
            if o not in seen and o.type is not None and isinstance(o.default, str) \
                    and values.get(o.dest) is o.default:
                try:
                    values[o.dest] = o.type(o.default)
                except Exception:  # noqa: BLE001 - argparse reports it
                    return None
        values.update(overrides)
        values["rest"] = rest
        return Namespace(**values)

    @staticmethod
    def _convert(o: _Opt, value: str):
        if o.type is not None:
            value = o.type(value)
        if o.choices is not None and value not in o.choices:
            raise ValueError(value)
        return value

    def _store(self, o: _Opt, value: str, values: dict, seen: set) -> bool:
        try:
            value = self._convert(o, value)
        except Exception:  # noqa: BLE001 - argparse gives the error text
            return False
        if o.kind == "append":
            items = values.get(o.dest)
            items = [] if items is None else list(items)
            items.append(value)
            value = items
        values[o.dest] = value
        seen.add(o)
        return True

    def _assign_positionals(self, strings: list[str], values: dict) -> bool:
        """Greedy left to right, leaving each later positional its minimum (argparse's
        regex match of 'A', 'A?', 'A*', 'A+' on contiguous arguments)."""
        specs = self._positionals
        mins = [1 if p.const in (None, "+") else 0 for p in specs]
        idx = 0
        try:
            for k, p in enumerate(specs):
                avail = len(strings) - idx - sum(mins[k + 1:])
                if p.const is None:
                    if avail < 1:
                        return False
                    values[p.dest] = self._convert(p, strings[idx])
                    idx += 1
                elif p.const == "?":
                    if avail >= 1:
                        values[p.dest] = self._convert(p, strings[idx])
                        idx += 1
                    elif isinstance(p.default, str):
                        values[p.dest] = self._convert(p, p.default)
                else:
                    take = max(avail, 0)
                    if p.const == "+" and take < 1:
                        return False
                    if take == 0:
                        values[p.dest] = p.default if p.default is not None else []
                    else:
                        values[p.dest] = [self._convert(p, s) for s in strings[idx:idx + take]]
                    idx += take
        except Exception:  # noqa: BLE001 - a bad value: argparse gives the error text
            return False
        return idx == len(strings)
