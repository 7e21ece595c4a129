"""Loading a Compose project: files, ``.env``, interpolation, merge, ``extends``,
validation, profiles, normalisation (no I/O but reading the files).

Order, as docker compose v2 does it: find the files (``-f``…, else ``compose.yaml`` /
``compose.yml`` / ``docker-compose.yaml`` / ``docker-compose.yml`` plus its
``.override`` sibling), read ``.env`` from the project directory (the process
environment wins over it), interpolate each file, merge them in order, resolve
``extends`` (same file or ``file:``), validate the merged model against the Compose
Specification's schema, then drop the services whose profiles are not active.

The result is a :class:`Project` of plain, normalised dicts (the Compose model is a JSON
edge: it is turned into Engine API bodies by :mod:`conch.compose.convert`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from conch.errors import InvalidArgument, NotFound
from conch.compose.interpolation import interpolate, parse_env_file
from conch.compose.merge import merge_models, merge_service

__all__ = ["Project", "load_project", "DEFAULT_FILES", "normalize_project_name"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


@dataclass(slots=True, kw_only=True)
class Project:
    name: str
    working_dir: str
    config_files: list[str]
    services: dict[str, dict]
    networks: dict[str, dict] = field(default_factory=dict)
    volumes: dict[str, dict] = field(default_factory=dict)
    secrets: dict[str, dict] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)
    disabled: dict[str, dict] = field(default_factory=dict)  # services of inactive profiles
    environment: dict[str, str] = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # the merged, validated model (for `config`)


def normalize_project_name(name: str) -> str:
    """compose v2's rule: lower case, only ``[a-z0-9_-]``, starting with a letter/digit."""
    name = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return name.lstrip("_-")


def _find_files(files: list[str], cwd: str) -> list[Path]:
    if files:
        out = [Path(cwd, f).resolve() if f != "-" else Path("-") for f in files]
        for p in out:
            if str(p) != "-" and not p.is_file():
                raise NotFound(f"open {p}: no such file or directory")
        return out
    here = Path(cwd).resolve()
    for d in (here, *here.parents):
        for name in DEFAULT_FILES:
            if (d / name).is_file():
                main = d / name
                stem, ext = name.rsplit(".", 1)
                override = d / f"{stem}.override.{ext}"
                return [main, override] if override.is_file() else [main]
    raise NotFound("no configuration file provided: not found")


def _read_yaml(path: Path, stdin=None):
    import yaml

    try:
        text = stdin.read() if str(path) == "-" else path.read_text()
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"parsing {path}: {exc}") from exc


def _resolve_extends(services: dict, workdir: Path, env: dict, source: str,
                     seen: tuple = ()) -> dict:
    out = {}
    for name, svc in services.items():
        out[name] = _extend_one(name, svc, services, workdir, env, source, seen)
    return out


def _extend_one(name: str, svc, services: dict, workdir: Path, env: dict, source: str,
                seen: tuple) -> dict:
    if not isinstance(svc, dict) or "extends" not in svc:
        return svc
    ext = svc["extends"]
    ext = {"service": ext} if isinstance(ext, str) else dict(ext or {})
    base_name = ext.get("service")
    key = (ext.get("file") or source, base_name)
    if key in seen:
        raise InvalidArgument(f"services.{name}.extends: circular reference to {base_name!r}")
    if ext.get("file"):
        path = (workdir / ext["file"]).resolve()
        if not path.is_file():
            raise NotFound(f"services.{name}.extends.file: {path}: no such file")
        other = interpolate(_read_yaml(path) or {}, env)
        pool = (other or {}).get("services") or {}
        base_dir, base_source = path.parent, str(path)
    else:
        pool, base_dir, base_source = services, workdir, source
    if base_name not in pool:
        raise InvalidArgument(f"services.{name}.extends.service: service {base_name!r} "
                              f"not found in {base_source}")
    base = _extend_one(base_name, pool[base_name], pool, base_dir, env, base_source, seen + (key,))
    base = {k: v for k, v in (base or {}).items() if k not in ("extends",)}
    if base_dir != workdir and isinstance(base.get("build"), (str, dict)):
        build = base["build"] if isinstance(base["build"], dict) else {"context": base["build"]}
        build = {**build, "context": str((base_dir / build.get("context", ".")).resolve())}
        base["build"] = build
    mine = {k: v for k, v in svc.items() if k != "extends"}
    return merge_service(base, mine, path=f"services.{name}")


def load_project(*, files: list[str] | None = None, project_name: str | None = None,
                 profiles: list[str] | None = None, env_file: str | None = None,
                 cwd: str | None = None, environ: dict[str, str] | None = None,
                 project_directory: str | None = None, stdin=None,
                 enable_services: list[str] | None = None) -> Project:
    """See the module docstring. ``enable_services``: services named on the command line
    are enabled even when their profile is not (compose v2 does the same)."""
    from conch.compose.validate import validate

    cwd = cwd or os.getcwd()
    environ = dict(os.environ if environ is None else environ)
    paths = _find_files(files or [f for f in environ.get("COMPOSE_FILE", "").split(
        environ.get("COMPOSE_PATH_SEPARATOR", ":")) if f], cwd)
    first = paths[0] if str(paths[0]) != "-" else Path(cwd, "stdin")
    workdir = Path(project_directory).resolve() if project_directory else first.parent
    env = dict(environ)
    dotenv = Path(env_file) if env_file else workdir / ".env"
    if env_file and not dotenv.is_absolute():
        dotenv = Path(cwd, env_file)
    if dotenv.is_file():
        file_env = parse_env_file(dotenv.read_text(), where=str(dotenv), env=environ)
        env = {**file_env, **environ}  # the process environment wins
    elif env_file:
        raise NotFound(f"couldn't find env file: {dotenv}")
    raw = [(str(p), interpolate(_read_yaml(p, stdin) or {}, env)) for p in paths]
    model = merge_models(raw)
    if isinstance(model.get("services"), dict):
        model["services"] = _resolve_extends(model["services"], workdir, env, str(paths[0]))
    validate(model, source=", ".join(str(p) for p in paths))
    name = (project_name or env.get("COMPOSE_PROJECT_NAME") or model.get("name")
            or workdir.name)
    norm = normalize_project_name(name)
    if not norm:
        raise InvalidArgument(f"project name {name!r} must contain lowercase letters, digits, "
                              "dashes or underscores")
    active = set(profiles or [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p])
    wanted = set(enable_services or ())
    services, disabled = {}, {}
    from conch.compose.normalize import normalize_service, normalize_resources

    for sname, svc in (model.get("services") or {}).items():
        svc = normalize_service(sname, svc or {}, workdir, env)
        svc_profiles = set(svc.get("profiles") or ())
        if svc_profiles and not (svc_profiles & active) and sname not in wanted and "*" not in active:
            disabled[sname] = svc
        else:
            services[sname] = svc
    project = Project(
        name=norm, working_dir=str(workdir), config_files=[str(p) for p in paths],
        services=services, disabled=disabled, environment=env, model=model,
        networks=normalize_resources(model.get("networks")),
        volumes=normalize_resources(model.get("volumes")),
        secrets=normalize_resources(model.get("secrets"), workdir),
        configs=normalize_resources(model.get("configs"), workdir))
    _check_references(project)
    return project


def _check_references(p: Project) -> None:
    for name, svc in p.services.items():
        for dep in svc["depends_on"]:
            if dep not in p.services and dep not in p.disabled:
                raise InvalidArgument(f"service {name!r} depends on undefined service {dep!r}")
            if dep in p.disabled and svc["depends_on"][dep].get("required", True):
                raise InvalidArgument(f"service {name!r} depends on service {dep!r} which is "
                                      "disabled by its profiles")
        for net in svc["networks"]:
            if net != "default" and net not in p.networks:
                raise InvalidArgument(f"service {name!r} refers to undefined network {net}: "
                                      "invalid compose project")
        for vol in svc["volumes"]:
            if vol["type"] == "volume" and vol.get("source") and vol["source"] not in p.volumes:
                raise InvalidArgument(f"service {name!r} refers to undefined volume "
                                      f"{vol['source']}: invalid compose project")
        for kind in ("secrets", "configs"):
            for ref in svc[kind]:
                if ref["source"] not in getattr(p, kind):
                    raise InvalidArgument(f"service {name!r} refers to undefined {kind[:-1]} "
                                          f"{ref['source']}: invalid compose project")

