"""``/etc/conch/daemon.json``: conchd's configuration file, read as dockerd reads
``/etc/docker/daemon.json`` (moby daemon/config).

Keys are the long flag names (``data-root``, ``bip``, ``log-level``, ``tlsverify``...), and
docker's plural names for repeatable flags: ``hosts`` (-H), ``insecure-registries``
(--insecure-registry), ``runtimes`` (``{"name": {"path": ...}}``, --add-runtime),
``log-opts`` (--log-opt), ``default-ulimits`` (``{"nofile": {"Name": "nofile", "Soft": n,
"Hard": n}}``, --default-ulimit). As dockerd:

* a key that is no option is refused: "the following directives don't match any
  configuration option: ...";
* a key given in the file and as a flag is refused: "the following directives are
  specified both as a flag and in the configuration file: name: (from flag: x, from file: y)";
* a missing file is fine at the default path, an error when ``--config-file`` names it.

Pure: no I/O but reading the file, so tests/unit can drive it.
"""

from __future__ import annotations

import argparse
import json

DEFAULT_CONFIG_FILE = "/etc/conch/daemon.json"

# docker's configuration names that differ from the flag's (moby's NamedOption)
NAMED = {"hosts": "host", "insecure-registries": "insecure_registry", "runtimes": "add_runtime",
         "log-opts": "log_opt", "default-ulimits": "default_ulimit"}
NOT_IN_FILE = {"config_file", "help"}


class ConfigError(Exception):
    pass


def _go(value) -> str:
    """Go's %v of a JSON value (how dockerd prints a conflict)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Configuration name -> the flag's action (long names without dashes, and NAMED)."""
    out = {}
    by_dest = {a.dest: a for a in parser._actions}
    for action in parser._actions:
        if action.dest in NOT_IN_FILE:
            continue
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:]] = action
    for name, dest in NAMED.items():
        out[name] = by_dest[dest]
    return out


def given_flags(parser: argparse.ArgumentParser, argv) -> dict[str, object]:
    """The dests given on the command line (a parse where every default is suppressed)."""
    saved = [(a, a.default) for a in parser._actions]
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
        return vars(parser.parse_args(argv))
    finally:
        for a, d in saved:
            a.default = d


def load(path: str, *, required: bool) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: "
                              f"open {path}: no such file or directory") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {exc}") from None
    if not raw.strip():
        return {}  # dockerd: an empty file is no configuration
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: "
                          "the configuration is not a JSON object")
    return data


def _as_list(name: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: want a list of strings, got {_go(value)}")
    return list(value)


def _file_value(name: str, action: argparse.Action, value):
    """The file's value as the flag's parsed value would be."""
    if name == "runtimes":
        if not isinstance(value, dict):
            raise ConfigError("runtimes: want an object of {\"name\": {\"path\": ...}}")
        out = []
        for rname, rt in value.items():
            if not isinstance(rt, dict) or not isinstance(rt.get("path"), str) or not rt["path"]:
                raise ConfigError(f"runtimes: {rname}: want {{\"path\": \"...\"}}")
            if rt.get("runtimeArgs"):
                raise ConfigError(f"runtimes: {rname}: runtimeArgs are not supported by conchd")
            out.append(f"{rname}={rt['path']}")
        return out
    if name == "log-opts":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError("log-opts: want an object of strings")
        return [f"{k}={v}" for k, v in value.items()]
    if name == "default-ulimits":
        if not isinstance(value, dict):
            raise ConfigError("default-ulimits: want an object of {\"name\": {\"Soft\": n, \"Hard\": n}}")
        out = []
        for uname, u in value.items():
            if not isinstance(u, dict) or not isinstance(u.get("Soft"), int) \
                    or not isinstance(u.get("Hard"), int):
                raise ConfigError(f"default-ulimits: {uname}: want {{\"Soft\": n, \"Hard\": n}}")
            out.append(f"{u.get('Name') or uname}={u['Soft']}:{u['Hard']}")
        return out
    if action.nargs == 0:  # store_true
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: want true or false, got {_go(value)}")
        return value
    if isinstance(action, argparse._AppendAction):
        return _as_list(name, value)
    if name == "hosts":
        return _as_list(name, value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name}: want a string, got {_go(value)}")
    value = str(value)
    if action.choices and value not in action.choices:
        raise ConfigError(f"{name}: invalid value {value!r} (choose from {', '.join(action.choices)})")
    return value


def merge(parser: argparse.ArgumentParser, argv, args: argparse.Namespace, config: dict,
          path: str) -> argparse.Namespace:
    """``args`` with the file's values where no flag was given; dockerd's refusals."""
    options = _options(parser)
    unknown = [k for k in config if k not in options]
    if unknown:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: the following "
                          f"directives don't match any configuration option: {', '.join(unknown)}")
    given = given_flags(parser, argv)
    conflicts = []
    for name, value in config.items():
        action = options[name]
        if action.dest in given:
            conflicts.append(f"{name}: (from flag: {_go(given[action.dest])}, from file: {_go(value)})")
    if conflicts:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: the following "
                          "directives are specified both as a flag and in the configuration file: "
                          + ", ".join(conflicts))
    for name, value in config.items():
        setattr(args, options[name].dest, _file_value(name, options[name], value))
    return args
