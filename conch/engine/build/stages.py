"""The build's stage graph: a Dockerfile's instructions cut into stages (after the meta
ARGs), each stage's alias, and the stages the target needs (FROM and ``--from`` of COPY
and RUN --mount, transitively: BuildKit's graph, so an unneeded stage is never built).
"""

from __future__ import annotations


from conch.engine.build.steps import expand_words
from conch.errors import ConchError, InvalidArgument


def stage_alias(from_ins) -> str:
    words = " ".join(from_ins.args).split()
    return words[2] if len(words) == 3 else ""


def needed_stages(stages, lexer, meta_args) -> list[int]:
    """The stages the last one (the target) needs, in order: those named by a FROM or
    a ``--from`` (COPY, RUN --mount) of a needed stage, transitively (BuildKit's graph;
    a stage nobody needs is not built, so its failure cannot fail the build)."""
    names = {}
    for i, (from_ins, _) in enumerate(stages):
        alias = stage_alias(from_ins).lower()
        if alias:
            names.setdefault(alias, i)

    def refs(i: int) -> set[int]:
        from_ins, body = stages[i]
        out = set()
        try:
            words = expand_words(lexer, tuple(from_ins.args), False, meta_args)
        except ConchError:
            words = list(from_ins.args)
        candidates = [words[0]] if words else []
        for ins in body:
            for flag in ins.flags:
                key, _, value = flag.lstrip("-").partition("=")
                if key == "from":
                    candidates.append(value)
                elif key == "mount":
                    for part in value.split(","):
                        k, _, v = part.partition("=")
                        if k == "from":
                            candidates.append(v)
        for c in candidates:
            c = c.lower()
            j = names.get(c)
            if j is None and c.isdigit():
                j = int(c)
            if j is not None and j < i:
                out.add(j)
        return out

    needed = {len(stages) - 1}
    todo = [len(stages) - 1]
    while todo:
        for j in refs(todo.pop()):
            if j not in needed:
                needed.add(j)
                todo.append(j)
    return sorted(needed)


def split_stages(instructions):
    """(meta ARGs before the first FROM, [(FROM, [instructions…])…])."""
    meta, stages = [], []
    for ins in instructions:
        if ins.name == "from":
            stages.append((ins, []))
        elif not stages:
            meta.append(ins)
        else:
            stages[-1][1].append(ins)
    if not stages:
        raise InvalidArgument("no build stage in current context")
    return meta, stages
