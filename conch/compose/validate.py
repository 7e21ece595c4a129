"""Validation against the Compose Specification's JSON schema (shipped in ``schema/``).

The schema is docker-compose 1.29.2's copy of compose-spec's (see
``schema/PROVENANCE.md``); it predates the top-level ``name`` key, which is checked here
on its own. An error names the key path (``services.web.ports.0``) and what is wrong, the
way ``docker compose config`` reports a bad file. ``jsonschema`` is imported only when a
file is validated (the CLI's other verbs never pay for it).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from conch.errors import InvalidArgument

__all__ = ["validate", "SCHEMA_PATH"]

SCHEMA_PATH = Path(__file__).with_name("schema") / "compose_spec.json"
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft201909Validator)
    return cls(schema, format_checker=None)


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(root)"


def _describe(err) -> str:
    where = _key_path(err.absolute_path)
    if err.validator == "additionalProperties" or (
            err.validator == "patternProperties" and "does not match any of the regexes" in err.message):
        extra = re.findall(r"'([^']+)'", err.message)
        name = extra[0] if extra else "?"
        return f"{where} additional property {name!r} is not allowed"
    if err.validator in ("oneOf", "anyOf") and err.context:
        # the branch that got furthest says the most (compose v2 does the same)
        best = max(err.context, key=lambda e: len(list(e.absolute_path)))
        if len(list(best.absolute_path)) > len(list(err.absolute_path)):
            return _describe(best)
        kinds = sorted({str(e.schema.get("type")) for e in err.context if e.schema.get("type")})
        if kinds:
            return f"{where} must be a {' or a '.join(kinds)}"
    if err.validator == "type":
        return f"{where} must be a {err.validator_value if isinstance(err.validator_value, str) else ' or a '.join(err.validator_value)}"
    return f"{where} {err.message}"


def validate(model: dict, *, source: str = "") -> None:
    """Raise InvalidArgument for the first problems of a merged Compose model."""
    if not isinstance(model, dict):
        raise InvalidArgument(f"{source or 'compose file'}: top-level object must be a mapping")
    body = dict(model)
    name = body.pop("name", None)
    if name is not None and (not isinstance(name, str) or not _PROJECT_NAME.fullmatch(name)):
        raise InvalidArgument(f"{source}: name {name!r} must contain only lowercase letters, "
                              "digits, dashes and underscores, and start with a letter or digit")
    errors = sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        prefix = f"validating {source}: " if source else ""
        raise InvalidArgument(prefix + "; ".join(_describe(e) for e in errors[:5]))
