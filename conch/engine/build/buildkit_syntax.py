"""BuildKit's Dockerfile additions, as the builder runs them (dockerfile frontend
``dockerfile2llb``): ``RUN --mount``, heredocs, ``COPY --chmod``/``--link``, ``ADD
--checksum`` and ``ADD <http url>``.

Contract:

* :func:`run_mounts` parses a RUN's ``--mount`` flags (``type=cache|bind|tmpfs|secret``,
  BuildKit's keys: ``target``/``dst``/``destination``, ``source``/``src``, ``from``,
  ``id``, ``ro``/``readonly``/``rw``, ``required``, ``mode``, ``uid``, ``gid``, ``size``,
  ``sharing``) into :class:`RunMount` records; unknown types or keys are BuildKit's errors.
* :func:`cache_dir` is where a cache mount lives: ``<data-root>/build-mounts/cache/<key>``,
  kept across builds (its key: the ``id``, default the target), made with ``mode``/
  ``uid``/``gid`` the first time.
* :func:`heredoc_command` is the argv of ``RUN`` with heredocs: a RUN that is only
  ``<<EOF`` runs the body as the shell's script (a ``#!`` body is written to a file and
  executed by its interpreter, as BuildKit); otherwise the whole text, heredocs included,
  goes to the shell, which reads them itself.
* :func:`heredoc_files` writes ``COPY <<EOF dest`` bodies (expanded unless the name was
  quoted; ``<<-`` strips leading tabs) as files named after the heredoc.
* :func:`parse_chmod` checks ``--chmod`` (octal only: what the classic API can carry).
* :func:`fetch_url` downloads ``ADD``'s URL into a directory (file name from the URL
  path; mtime from ``Last-Modified``, as docker) and checks ``--checksum``.

Pure helpers and blocking I/O for worker threads; the builder owns the steps.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from conch.errors import InvalidArgument

_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_KEYS = {"type", "target", "dst", "destination", "source", "src", "from", "id", "ro",
         "readonly", "rw", "readwrite", "required", "mode", "uid", "gid", "size", "sharing",
         "env"}


@dataclass(frozen=True, slots=True)
class RunMount:
    type: str
    target: str
    source: str = ""
    from_: str = ""
    id: str = ""
    readonly: bool = False
    required: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0

    def key(self) -> str:
        """The mount in a RUN's cache key (content of bind sources is added by the caller)."""
        return (f"{self.type},target={self.target},source={self.source},from={self.from_},"
                f"id={self.id},ro={self.readonly}")


def _bool(value: str) -> bool:
    if value in ("", "true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid boolean value {value!r}")


def run_mounts(flag_values: list[str], workdir: str) -> list[RunMount]:
    out = []
    for text in flag_values:
        fields: dict[str, str] = {}
        for part in text.split(","):
            if not part:
                continue
            key, eq, value = part.partition("=")
            key = key.strip().lower()
            if key not in _KEYS:
                raise InvalidArgument(f"unexpected key '{key}' in '{part}'")
            fields[key] = value if eq else ""
        kind = fields.get("type", "bind") or "bind"
        if kind not in _MOUNT_TYPES:
            raise InvalidArgument(f"unsupported mount type \"{kind}\"")
        if kind == "ssh":
            raise InvalidArgument("RUN --mount=type=ssh needs an SSH agent session: not supported by conch")
        target = fields.get("target") or fields.get("dst") or fields.get("destination") or ""
        if kind == "secret" and not target:
            target = "/run/secrets/" + (fields.get("id") or posixpath.basename(fields.get("source") or fields.get("src") or ""))
        if not target:
            raise InvalidArgument("mount destination is required")
        if not target.startswith("/"):
            target = posixpath.join("/", workdir or "/", target)
        target = posixpath.normpath(target)
        if target == "/":
            raise InvalidArgument("mount destination can not be /")
        ro_default = kind in ("bind", "secret")
        readonly = ro_default
        if "ro" in fields or "readonly" in fields:
            readonly = _bool(fields.get("ro", fields.get("readonly", "")))
        if "rw" in fields or "readwrite" in fields:
            readonly = not _bool(fields.get("rw", fields.get("readwrite", "")))

        def number(name: str, base: int = 10) -> int | None:
            if name not in fields:
                return None
            try:
                return int(fields[name], base)
            except ValueError:
                raise InvalidArgument(f"invalid {name} {fields[name]!r}") from None

        out.append(RunMount(
            type=kind, target=target, source=fields.get("source") or fields.get("src") or "",
            from_=fields.get("from", ""), id=fields.get("id", ""), readonly=readonly,
            required=_bool(fields["required"]) if "required" in fields else False,
            mode=number("mode", 8), uid=number("uid"), gid=number("gid"),
            size=int(fields.get("size") or 0) if (fields.get("size") or "0").isdigit() else 0))
    return out


def cache_dir(data_root: str, m: RunMount) -> str:
    key = hashlib.sha256((m.id or m.target).encode()).hexdigest()[:32]
    path = Path(data_root) / "build-mounts" / "cache" / key
    if not path.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(key + ".new")
        tmp.mkdir(mode=0o755, exist_ok=True)
        os.chmod(tmp, 0o755 if m.mode is None else m.mode)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        try:
            os.rename(tmp, path)
        except OSError:  # made meanwhile by another build
            os.rmdir(tmp)
    return str(path)


def _chomp(text: str) -> str:
    return "".join(line.lstrip("\t") for line in text.splitlines(keepends=True))


def heredoc_command(args: tuple[str, ...], heredocs, shell: tuple[str, ...]) -> tuple[str, ...]:
    line = " ".join(args).strip()
    if len(heredocs) == 1 and re.fullmatch(r"<<-?['\"]?" + re.escape(heredocs[0].name) + r"['\"]?", line):
        h = heredocs[0]
        body = _chomp(h.content) if h.chomp else h.content
        if body.startswith("#!"):
            # BuildKit writes a #! body to a file and runs it by its interpreter
            end = "" if body.endswith("\n") else "\n"
            return tuple(shell) + (
                f"f=$(mktemp) && cat > \"$f\" <<'CONCH_HEREDOC_EOF'\n{body}{end}CONCH_HEREDOC_EOF\n"
                "chmod +x \"$f\" && \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",)
        return tuple(shell) + (body,)
    text = line + "\n"
    for h in heredocs:
        text += h.content + h.name + "\n"
    return tuple(shell) + (text,)


def heredoc_files(directory: Path, heredocs, env: dict[str, str]) -> None:
    for h in heredocs:
        body = _chomp(h.content) if h.chomp else h.content
        if h.expand:
            body = _expand_vars(body, env)
        path = directory / h.name
        path.write_text(body, encoding="utf-8", errors="surrogateescape")
        os.chmod(path, 0o644)


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand_vars(text: str, env: dict[str, str]) -> str:
    """``$X``/``${X}`` of the build's args and env (quotes are text in a heredoc)."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def is_heredoc_source(word: str, heredocs) -> str | None:
    names = {h.name for h in heredocs}
    if word.startswith("<<"):
        name = word[2:].lstrip("-").strip("'\"")
        if name in names:
            return name
    return None


def parse_chmod(value: str) -> int | None:
    if not value:
        return None
    if not re.fullmatch(r"[0-7]{1,4}", value):
        raise InvalidArgument(f"invalid chmod parameter {value!r}: only octal modes are supported")
    return int(value, 8)


def fetch_url(url: str, directory: Path, checksum: str, timeout: float = 60) -> str:
    """Download ``url`` into ``directory``; the file's name (relative)."""
    import email.utils
    import urllib.parse
    import urllib.request

    name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
    path = directory / name
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(path, "wb") as f:  # noqa: S310 - ADD's URL
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except OSError as exc:
        raise InvalidArgument(f"failed to GET {url}: {exc}") from exc
    if checksum:
        algo, _, want = checksum.partition(":")
        if algo != "sha256" or not want:
            raise InvalidArgument(f"unsupported checksum {checksum!r}: sha256:<hex> is")
        if digest.hexdigest() != want.lower():
            raise InvalidArgument(f"digest mismatch sha256:{digest.hexdigest()}: {checksum}")
    os.chmod(path, 0o600)  # docker: downloaded files are 0600
    if modified:
        try:
            t = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (t, t))
        except (TypeError, ValueError):
            pass
    return name
