"""The argparse-backed parser: the reference grammar, ``--help`` and every error text.

``conch.cli.flags.Parser`` (what verbs get from ``Context.parser``) parses the common,
well-formed command lines itself and hands anything else here, so importing argparse
(~14 ms with re/gettext) is paid only for ``--help``, usage errors and rare shapes.
Behaviour is defined by this class; tests/unit/test_cli_flags.py checks the fast parser
against it.
"""

from __future__ import annotations

import argparse

from conch.cli.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse with docker's error texts and exit codes, and docker's flag grammar.

    ``parse(argv, stop_after=N)`` stops reading flags after the N-th positional argument
    (``run IMAGE CMD...``, ``exec CONTAINER CMD...``: the command keeps its own flags) and
    accepts ``--bool-flag=false`` as pflag does.
    """

    def __init__(self, prog: str, usage: str | None = None, description: str | None = None,
                 add_help: bool = True):
        super().__init__(prog=prog, usage=usage, description=description, allow_abbrev=False,
                         add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str):
        if message.startswith("unrecognized arguments: "):
            arg = message.split(": ", 1)[1].split()[0]
            message = f"unknown flag: {arg}" if arg.startswith("-") else (
                f'"{self.prog}" accepts no argument(s) like "{arg}"')
        elif message.startswith("the following arguments are required"):
            raise UsageError(f'"{self.prog}" requires at least 1 argument.', status=1)
        raise UsageError(message)

    def parse(self, argv: list[str], stop_after: int = 0) -> argparse.Namespace:
        opts = {s: a for a in self._actions for s in a.option_strings}
        flags: list[str] = []
        rest: list[str] = []
        overrides: dict[str, bool] = {}
        npos = 0
        i = 0
        while i < len(argv):
            tok = argv[i]
            i += 1
            if tok == "--":
                flags.append(tok)
                flags.extend(argv[i:]) if not stop_after else rest.extend(argv[i:])
                break
            if tok.startswith("--"):
                name, eq, value = tok.partition("=")
                action = opts.get(name)
                if action is None:  # pflag reports it before any missing argument
                    raise UsageError(f"unknown flag: {name}")
                if action is not None and action.nargs == 0 and eq and action.const in (True, False):
                    overrides[action.dest] = parse_bool(value) == action.const
                    continue
                flags.append(tok)
                if action is not None and action.nargs != 0 and not eq and i < len(argv):
                    flags.append(argv[i])
                    i += 1
                continue
            if tok.startswith("-") and len(tok) > 1:
                flags.append(tok)
                for j, ch in enumerate(tok[1:], start=1):
                    action = opts.get("-" + ch)
                    if action is None:
                        raise UsageError(f"unknown shorthand flag: '{ch}' in {tok}")
                    if action.nargs == 0 and tok[j + 1 : j + 2] == "=":
                        flags.pop()
                        overrides[action.dest] = parse_bool(tok[j + 2 :]) == action.const
                        break
                    if action.nargs != 0:
                        if j == len(tok) - 1 and i < len(argv):
                            flags.append(argv[i])
                            i += 1
                        break
                continue
            flags.append(tok)
            npos += 1
            if stop_after and npos >= stop_after:
                rest = argv[i:]
                break
        ns = self.parse_args(flags)
        for dest, value in overrides.items():
            setattr(ns, dest, value)
        ns.rest = rest
        return ns


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``, which docker uses for ``--flag=value``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise UsageError(f'invalid argument "{text}": strconv.ParseBool: parsing "{text}": invalid syntax')
