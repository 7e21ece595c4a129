"""The Dockerfile instructions that only change an image's config, as docker's classic
builder dispatches them (moby ``builder/dockerfile/dispatchers.go``), plus the word
expansion every instruction shares.

Contract: a :class:`StageState` is one stage's running state (its image config so far,
the ARGs in scope, the shell); :func:`apply_config_step` applies one of ENV, LABEL,
WORKDIR, USER, EXPOSE, VOLUME, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD,
ARG, MAINTAINER to it and returns the history comment docker records for it
(``#(nop)  ENV A=b``; the caller writes ``/bin/sh -c`` in front). Pure: no I/O.

Expansion (``$VAR``, ``${VAR:-x}``, quotes) is :class:`conch.build.shell.Lexer`'s, over
the build args in scope overlaid by the config's ``Env`` (ENV wins over ARG, as docker).
Shell-form RUN/CMD/ENTRYPOINT are never expanded here: the shell does that.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field, replace

from conch.errors import InvalidArgument
from conch.oci.duration import duration_ns
from conch.oci.image import ExecutionConfig, Healthcheck

DEFAULT_SHELL = ("/bin/sh", "-c")
# docker's predefined args: usable with --build-arg without an ARG line, never in history
PREDEFINED_ARGS = frozenset(
    k for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for k in (base, base.lower())) | {"SOURCE_DATE_EPOCH"}  # BuildKit's: reproducibility


@dataclass
class StageState:
    """One stage while it is built (mutable: the builder's private working record)."""

    name: str
    image_id: str                      # the image the next step builds on ("" = scratch)
    config: ExecutionConfig
    build_args: dict[str, str]         # --build-arg values (all of them)
    meta_args: dict[str, str]          # ARGs declared before the first FROM
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs in scope
    used_args: set[str] = field(default_factory=set)
    author: str = ""                   # MAINTAINER
    triggers: list = field(default_factory=list)  # the base image's ONBUILD, parsed
    # a stage the build does not export keeps its steps' results as snapshots
    # (conch.engine.build.step_results): ``lazy`` is the last one, image_id its base
    defer: bool = False
    lazy: object | None = None         # step_results.Lazy

    @property
    def result(self):
        """What the next step stands on (and is keyed by): the Lazy, else the image ID."""
        return self.lazy if self.lazy is not None else self.image_id

    @property
    def step_id(self) -> str:
        return self.lazy.id if self.lazy is not None else self.image_id

    @property
    def shell(self) -> tuple[str, ...]:
        return tuple(self.config.shell or DEFAULT_SHELL)

    def env_map(self) -> dict[str, str]:
        """What ``$VAR`` sees: the ARGs in scope, then the config's Env over them."""
        out = {k: v for k, v in self.args.items() if v is not None}
        for item in self.config.env or ():
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def run_args(self) -> list[str]:
        """``K=V`` of the ARGs in scope that are not shadowed by ENV (RUN's extra env
        and the ``|N K=V`` prefix of its history), sorted as docker sorts them."""
        env_keys = {e.partition("=")[0] for e in self.config.env or ()}
        return sorted(f"{k}={v}" for k, v in self.args.items()
                      if v is not None and k not in env_keys)


def expand(lexer, word: str, env: dict[str, str]) -> str:
    return lexer.process_word(word, env)


def expand_words(lexer, args: tuple[str, ...], json_form: bool, env: dict[str, str]) -> list[str]:
    """The instruction's arguments as words: a shell-form single string is split (with
    quotes honoured) by the lexer; JSON-form or already split args are expanded one by one."""
    if len(args) == 1 and not json_form:
        return list(lexer.process_words(args[0], env))
    return [lexer.process_word(a, env) for a in args]


def triples(args: tuple) -> list[tuple[str, str, str]]:
    """ENV/LABEL args as (key, value, sep): a flat tuple of triples or a tuple of tuples."""
    if args and isinstance(args[0], (tuple, list)):
        return [tuple(t) for t in args]  # type: ignore[misc]
    if len(args) % 3:
        raise InvalidArgument(f"malformed key/value arguments: {args!r}")
    return [tuple(args[i:i + 3]) for i in range(0, len(args), 3)]  # type: ignore[misc]


def exec_form(args: tuple[str, ...], json_form: bool, shell: tuple[str, ...]) -> tuple[str, ...]:
    """CMD/ENTRYPOINT/RUN command: JSON form as is, shell form under the stage's SHELL."""
    if json_form:
        return tuple(args)
    return tuple(shell) + (" ".join(args),)


# -- the config-only instructions ----------------------------------------------------------

def apply_config_step(state: StageState, lexer, name: str, flags: tuple[str, ...],
                      args: tuple, json_form: bool) -> str | None:
    """Apply one config instruction; its history comment, or None when docker commits
    no image for it (ARG with nothing to record is still a step: it gets a comment)."""
    handler = _HANDLERS.get(name)
    if handler is None:
        raise InvalidArgument(f"unknown instruction: {name.upper()}")
    return handler(state, lexer, flags, args, json_form)


def _env(state, lexer, flags, args, json_form):
    env = list(state.config.env or ())
    parts = []
    for key, value, _sep in triples(args):
        names = state.env_map()
        key, value = expand(lexer, key, names), expand(lexer, value, names)
        if not key:
            raise InvalidArgument("ENV names can not be blank")
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
        state.config = replace(state.config, env=tuple(env))
        parts.append(f"{key}={value}")
    return "ENV " + " ".join(parts)


def _label(state, lexer, flags, args, json_form):
    labels = dict(state.config.labels or {})
    parts = []
    for key, value, _sep in triples(args):
        names = state.env_map()
        key, value = expand(lexer, key, names), expand(lexer, value, names)
        if not key:
            raise InvalidArgument("LABEL names can not be blank")
        labels[key] = value
        parts.append(f"{json.dumps(key)}={json.dumps(value)}")
    state.config = replace(state.config, labels=labels)
    return "LABEL " + " ".join(parts)


def _one_word(state, lexer, args, what: str) -> str:
    text = " ".join(args).strip()
    if not text:
        raise InvalidArgument(f"{what} requires exactly one argument")
    return expand(lexer, text, state.env_map())


def workdir_path(state: StageState, lexer, args) -> str:
    import posixpath

    path = _one_word(state, lexer, args, "WORKDIR")
    if not path.startswith("/"):
        path = posixpath.join("/", state.config.working_dir or "/", path)
    return posixpath.normpath(path)


def _workdir(state, lexer, flags, args, json_form):
    state.config = replace(state.config, working_dir=workdir_path(state, lexer, args))
    return f"WORKDIR {state.config.working_dir}"


def _user(state, lexer, flags, args, json_form):
    state.config = replace(state.config, user=_one_word(state, lexer, args, "USER"))
    return f"USER {state.config.user}"


def _expose(state, lexer, flags, args, json_form):
    from conch.images.importer import exposed_ports

    words = expand_words(lexer, tuple(args), json_form, state.env_map())
    ports = exposed_ports(state.config.exposed_ports, words)
    state.config = replace(state.config, exposed_ports=ports)
    return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(ports)) + "]"


def _volume(state, lexer, flags, args, json_form):
    words = expand_words(lexer, tuple(args), json_form, state.env_map())
    if not words or any(not w.strip() for w in words):
        raise InvalidArgument("VOLUME specified can not be an empty string")
    state.config = replace(state.config, volumes={**(state.config.volumes or {}),
                                                  **{w: {} for w in words}})
    return f"VOLUME [{' '.join(words)}]"


def _cmd(state, lexer, flags, args, json_form):
    cmd = exec_form(tuple(args), json_form, state.shell)
    state.config = replace(state.config, cmd=cmd, args_escaped=False)
    return f"CMD {_go_quote_list(cmd)}"


def _entrypoint(state, lexer, flags, args, json_form):
    entry = exec_form(tuple(args), json_form, state.shell) if args and any(args) else None
    # docker: a new ENTRYPOINT resets a CMD inherited from the base image
    state.config = replace(state.config, entrypoint=entry, cmd=None)
    return f"ENTRYPOINT {_go_quote_list(entry or ())}"


def _shell(state, lexer, flags, args, json_form):
    if not json_form or not args:
        raise InvalidArgument("SHELL requires the arguments to be in JSON form")
    state.config = replace(state.config, shell=tuple(args))
    return f"SHELL [{' '.join(args)}]"


def _stopsignal(state, lexer, flags, args, json_form):
    sig = _one_word(state, lexer, args, "STOPSIGNAL")
    name = sig.upper()
    ok = (name.isdigit() and 0 < int(name) <= 64) or hasattr(
        signal.Signals, name if name.startswith("SIG") else f"SIG{name}")
    if not ok:
        raise InvalidArgument(f"Invalid signal: {sig}")
    state.config = replace(state.config, stop_signal=sig)
    return f"STOPSIGNAL {sig}"


def _healthcheck(state, lexer, flags, args, json_form):
    words = list(args)
    head = words[0].strip() if words else ""
    first, _, rest = head.partition(" ")
    if first.upper() == "NONE":
        hc = Healthcheck(test=("NONE",))
    else:
        if first.upper() == "CMD":
            words = ([rest] if rest else []) + words[1:]
        if json_form:
            test = ("CMD",) + tuple(words)
        else:
            text = " ".join(w for w in words if w).strip()
            if text.startswith("["):
                try:
                    test = ("CMD",) + tuple(json.loads(text))
                except ValueError:
                    test = ("CMD-SHELL", text)
            else:
                test = ("CMD-SHELL", text)
        if len(test) < 2 or not test[1]:
            raise InvalidArgument("Missing command after HEALTHCHECK CMD")
        opts = _flag_values(flags)
        hc = Healthcheck(test=test, interval=_duration(opts.get("interval")),
                         timeout=_duration(opts.get("timeout")),
                         start_period=_duration(opts.get("start-period")),
                         start_interval=_duration(opts.get("start-interval")),
                         retries=int(opts.get("retries", "0") or 0))
    state.config = replace(state.config, healthcheck=hc)
    return f"HEALTHCHECK &{{{_go_quote_list(hc.test or ())}}}"


def _onbuild(state, lexer, flags, args, json_form):
    trigger = " ".join(args).strip()
    keyword = trigger.split(None, 1)[0].upper() if trigger else ""
    if keyword in ("ONBUILD", "FROM", "MAINTAINER"):
        raise InvalidArgument(f"{keyword} isn't allowed as an ONBUILD trigger")
    if not keyword:
        raise InvalidArgument("ONBUILD requires at least one argument")
    trigger = keyword + trigger[len(keyword):]
    state.config = replace(state.config, on_build=tuple(state.config.on_build or ()) + (trigger,))
    return f"ONBUILD {trigger}"


def _maintainer(state, lexer, flags, args, json_form):
    state.author = expand(lexer, " ".join(args).strip(), state.env_map())
    return f"MAINTAINER {state.author}"


def _arg(state, lexer, flags, args, json_form):
    parts = []
    for word in args:
        name, eq, default = word.partition("=")
        if not name:
            raise InvalidArgument("ARG requires at least one argument")
        value: str | None = expand(lexer, default, state.env_map()) if eq else None
        if value is None and name in state.meta_args:
            value = state.meta_args[name]
        if name in state.build_args:
            value = state.build_args[name]
            state.used_args.add(name)
        state.args[name] = value
        parts.append(f"{name}={value}" if value is not None else name)
    return "ARG " + " ".join(parts)


_HANDLERS = {
    "env": _env, "label": _label, "workdir": _workdir, "user": _user, "expose": _expose,
    "volume": _volume, "cmd": _cmd, "entrypoint": _entrypoint, "shell": _shell,
    "stopsignal": _stopsignal, "healthcheck": _healthcheck, "onbuild": _onbuild,
    "maintainer": _maintainer, "arg": _arg,
}
CONFIG_STEPS = frozenset(_HANDLERS)


_KNOWN = CONFIG_STEPS | {"from", "run", "copy", "add"}
_EXACTLY_ONE = frozenset({"workdir", "user", "stopsignal"})


def validate(ins) -> None:
    """Argument counts, checked for every instruction before the first step runs (docker
    parses all instructions first: a bad line is an error with no step output)."""
    name, line = ins.name, getattr(ins, "start_line", 0)
    args = [a for a in ins.args if a != ""] if not ins.json_form else list(ins.args)
    problem = ""
    if name not in _KNOWN:
        problem = f"unknown instruction: {name.upper()}"
    elif name in ("copy", "add") and len(args) < 2 and not getattr(ins, "heredocs", ()):
        problem = f"{name.upper()} requires at least two arguments"
    elif name == "onbuild" and getattr(ins, "next", None) is None:
        problem = "ONBUILD requires at least one argument"
    elif name in _EXACTLY_ONE and not args:
        problem = f"{name.upper()} requires exactly one argument"
    elif name not in ("onbuild", "cmd", "entrypoint") and not args:
        problem = f"{name.upper()} requires at least one argument"
    if problem:
        raise InvalidArgument(f"dockerfile parse error on line {line}: {problem}")


def _flag_values(flags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for f in flags:
        key, _, value = f.lstrip("-").partition("=")
        out[key] = value
    return out


def flag_values(flags: tuple[str, ...], allowed: tuple[str, ...], what: str) -> dict[str, str]:
    """``--key=value`` flags of an instruction; an unknown one is docker's error."""
    out = _flag_values(flags)
    for key in out:
        if key not in allowed:
            raise InvalidArgument(f"Unknown flag: {key}" if key != "chmod"
                                  else "the --chmod option requires BuildKit")
    return out


def _duration(text: str | None) -> int:
    """Go's time.ParseDuration (the subset HEALTHCHECK takes) -> ns; "" -> 0."""
    try:
        return duration_ns(text or "")
    except ValueError:
        raise InvalidArgument(f'time: invalid duration "{text}"') from None


def _go_quote_list(items) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(x) for x in items) + "]"
