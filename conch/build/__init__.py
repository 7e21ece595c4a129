"""Dockerfile front end for ``conch build``: pure, sans-IO, no engine knowledge.

- :mod:`conch.build.parser` -- ``parse(text) -> Dockerfile``: the Dockerfile AST exactly as
  BuildKit's ``frontend/dockerfile/parser`` builds it (directives, line continuations,
  per-instruction argument shapes, heredocs), plus ``dump()`` = BuildKit's ``Node.Dump()``.
- :mod:`conch.build.shell` -- ``Lexer``: BuildKit's ``shell.Lex`` word expansion and
  splitting (quotes, escapes, ``$VAR``/``${VAR...}`` modifiers).
- :mod:`conch.build.dockerignore` -- ``DockerIgnore``: docker's ``.dockerignore`` matching
  (moby/patternmatcher rules).

Layering: this package imports only ``conch.errors`` and the standard library; the builder
(engine side) imports it. Nothing here touches the filesystem or the network.
"""
