"""``conch build``: docker's classic ``docker build`` (``POST /build``).

The context (PATH) is sent as a tar: names relative to PATH, owners 0:0 (as the docker
CLI sends them), files matched by PATH/.dockerignore left out (the Dockerfile and
``.dockerignore`` itself always go: the daemon needs them). ``-f`` is relative to the
working directory, as docker's: a Dockerfile outside the context is added to the tar
under a private name. ``PATH`` ``-`` reads stdin: a tar (plain or compressed) is the
context, anything else is a Dockerfile with an empty context; ``-f -`` reads the
Dockerfile from stdin with PATH as the context.

Output is the daemon's stream as it comes; ``-q`` prints only the image ID. A failed
step prints the daemon's message and exits with its code (a RUN's exit status), as
docker does. ``tarfile``/``json`` are imported here, inside the verb, not at CLI start-up.
"""

from __future__ import annotations

import io
import os
from typing import Any

from conch.cli.main import CommandError, Context, UsageError

_TAR_MAGIC_OFFSET = 257


def cmd_build(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] PATH | URL | -", "Build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[], help="Name and optionally a tag in the 'name:tag' format")
    p.add_argument("-f", "--file", help="Name of the Dockerfile (Default is 'PATH/Dockerfile')")
    p.add_argument("--build-arg", action="append", default=[], help="Set build-time variables")
    p.add_argument("--target", help="Set the target build stage to build")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the build output and print image ID on success")
    p.add_argument("--label", action="append", default=[], help="Set metadata for an image")
    p.add_argument("--rm", action="store_true", default=True, help="Remove intermediate containers after a successful build (default true)")
    p.add_argument("--force-rm", action="store_true", help="Always remove intermediate containers")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("--network", help="Set the networking mode for the RUN instructions during build (default \"default\")")
    p.add_argument("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping (host:ip)")
    p.add_argument("--cache-from", action="append", default=[], help="Images to consider as cache sources (or \"type=registry,ref=NAME\")")
    p.add_argument("--cache-to", action="append", default=[], help="Cache export destination (\"type=registry,ref=NAME\")")
    p.add_argument("-o", "--output", action="append", default=[], help="Output destination (format: \"type=local,dest=path\"; tar, oci)")
    p.add_argument("--progress", default="auto", help="Set type of progress output (\"auto\", \"plain\", \"tty\", \"quiet\")")
    p.add_argument("--iidfile", help="Write the image ID to the file")
    p.add_argument("--secret", action="append", default=[], help="Secret to expose to the build (format: \"id=mysecret[,src=/local/secret]\")")
    p.add_argument("path", metavar="PATH | URL | -")
    ns = p.parse(argv)
    if ns.path.startswith(("http://", "https://", "git@", "github.com/")):
        raise CommandError("conch build: remote contexts are not supported: clone it and build the directory")
    params: dict[str, Any] = {"t": ns.tag or None, "q": ns.quiet, "nocache": ns.no_cache,
                              "rm": ns.rm, "forcerm": ns.force_rm,
                              "pull": ns.pull, "target": ns.target or None,
                              "platform": ns.platform or None,
                              "networkmode": ns.network or None,
                              "extrahosts": ",".join(ns.add_host) or None}
    from conch.cli import build_outputs as bo

    outputs = [bo.parse_output(o) for o in ns.output]
    cache_to = [bo.cache_ref(c, to=True) for c in ns.cache_to]
    if ns.progress not in ("auto", "plain", "tty", "quiet", "rawjson"):
        raise UsageError(f"invalid progress mode {ns.progress!r}")
    if ns.cache_from:
        import json

        sources = [bo.cache_ref(c, to=False) for c in ns.cache_from]
        bo.import_caches(ctx, [ref for c, ref in zip(ns.cache_from, sources) if "type=registry" in c])
        params["cachefrom"] = json.dumps(sources)
    build_args = _pairs(ns.build_arg, from_env=True) if ns.build_arg else {}
    if os.environ.get("SOURCE_DATE_EPOCH") and "SOURCE_DATE_EPOCH" not in build_args:
        build_args["SOURCE_DATE_EPOCH"] = os.environ["SOURCE_DATE_EPOCH"]  # as buildx: reproducible
    if build_args:
        params["buildargs"] = build_args
    if ns.label:
        params["labels"] = _pairs(ns.label, from_env=False)
    context, dockerfile = _context(ctx, ns.path, ns.file)
    if dockerfile:
        params["dockerfile"] = dockerfile
    if not ns.quiet and ns.progress != "plain":
        ctx.out(f"Sending build context to conch daemon  {_size(len(context.getbuffer()))}")
    headers = {"Content-Type": "application/x-tar"}
    if ns.secret:
        headers["X-Conch-Build-Secrets"] = _secrets_header(ns.secret)
    resp = ctx.client.send_file("POST", "/build", context, params=params, headers=headers)
    quiet = ns.quiet or ns.progress == "quiet"
    image_id = _print_stream(ctx, resp, quiet, ns.iidfile, plain=ns.progress == "plain")
    for kind, dest in outputs:
        bo.write_output(ctx, image_id, kind, dest)
    for ref in cache_to:
        bo.export_cache(ctx, image_id, ref)
    return 0


def _secrets_header(specs: list[str]) -> str:
    """``--secret id=x[,src=FILE|,env=VAR]`` (buildx's forms; the default source is
    the env var named by the id, then the file of that name) as conch's header."""
    import base64
    import json

    out = {}
    for spec in specs:
        fields = dict(part.partition("=")[::2] for part in spec.split(",") if part)
        sid = fields.get("id") or ""
        src = fields.get("src") or fields.get("source") or ""
        env = fields.get("env") or ""
        if not sid:
            sid = os.path.basename(src) if src else env
        if not sid:
            raise UsageError(f"invalid secret {spec!r}: id= is required")
        if env or (not src and sid in os.environ):
            value = os.environ.get(env or sid, "").encode()
        else:
            try:
                with open(src or sid, "rb") as f:
                    value = f.read()
            except OSError as exc:
                raise CommandError(f"failed to read secret {sid}: {exc}") from exc
        out[sid] = base64.b64encode(value).decode()
    return base64.b64encode(json.dumps(out).encode()).decode()


def _pairs(items: list[str], *, from_env: bool) -> dict[str, str]:
    """``K=V`` items; a bare ``K`` takes the environment's value (build args, as docker)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid argument {item!r}: the name is empty")
        if not eq:
            if not from_env:
                value = ""
            elif key in os.environ:
                value = os.environ[key]
            else:
                continue  # docker drops an unset one
        out[key] = value
    return out


def _print_stream(ctx: Context, resp, quiet: bool, iidfile: str | None = None, *,
                  plain: bool = False) -> str:
    import json

    image_id = ""
    progress = None
    if plain and not quiet:  # BuildKit's plain progress, on stderr as buildx prints it
        from conch.cli.build_outputs import PlainProgress

        progress = PlainProgress(ctx.err)
    for line in resp.iter_lines():
        msg = json.loads(line)
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            raise CommandError(msg.get("error") or detail.get("message", ""),
                               status=int(detail.get("code") or 1))
        if "aux" in msg and isinstance(msg["aux"], dict):
            image_id = msg["aux"].get("ID", image_id)
        elif msg.get("stream") and progress is not None:
            progress.feed(msg["stream"])
        elif msg.get("stream") and not quiet:
            ctx.out(msg["stream"], end="")
    if iidfile and image_id:
        with open(iidfile, "w") as f:  # docker's --iidfile: the ID, no newline
            f.write(image_id)
    if progress is not None:
        progress.finish()
    if quiet:
        ctx.out(image_id)
    return image_id


def _context(ctx: Context, path: str, dockerfile: str | None) -> tuple[io.BytesIO, str]:
    """(the context tar, the dockerfile query value or "")."""
    stdin = getattr(ctx.stdin, "buffer", ctx.stdin)
    if path == "-":
        if dockerfile == "-":
            raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
        data = stdin.read()
        if _is_archive(data):
            return io.BytesIO(data), dockerfile or ""
        return _tar_of({"Dockerfile": data}), ""
    if not os.path.isdir(path):
        raise CommandError(f'unable to prepare context: path "{path}" not found')
    extra: dict[str, bytes] = {}
    name = ""
    if dockerfile == "-":
        name = f".dockerfile.{os.urandom(10).hex()}"
        extra[name] = stdin.read()
    elif dockerfile:
        full = os.path.abspath(dockerfile)
        rel = os.path.relpath(full, os.path.abspath(path))
        if not os.path.isfile(full):
            raise CommandError(f"unable to prepare context: the Dockerfile ({dockerfile}) cannot be found")
        if rel.startswith(".." + os.sep) or rel == "..":
            name = f".dockerfile.{os.urandom(10).hex()}"
            with open(full, "rb") as f:
                extra[name] = f.read()
        else:
            name = rel.replace(os.sep, "/")
    elif not os.path.isfile(os.path.join(path, "Dockerfile")) and not os.path.isfile(os.path.join(path, "dockerfile")):
        raise CommandError(f"unable to prepare context: unable to evaluate symlinks in Dockerfile "
                           f"path: lstat {os.path.abspath(os.path.join(path, 'Dockerfile'))}: no such file or directory")
    return _tar_dir(path, name or "Dockerfile", extra), name


def _is_archive(data: bytes) -> bool:
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00" \
            or data[:4] == b"\x28\xb5\x2f\xfd":
        return True
    return data[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b"ustar"


def _tar_of(files: dict[str, bytes]) -> io.BytesIO:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_files(tar, files)
    buf.seek(0)
    return buf


def _add_files(tar, files: dict[str, bytes]) -> None:
    """In-memory files (a Dockerfile from stdin or outside the context), 0644, root's."""
    import tarfile

    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def _ignore(path: str):
    """PATH/.dockerignore as a matcher, or None (pure matcher; imported only here)."""
    try:
        with open(os.path.join(path, ".dockerignore"), encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    from conch.build.dockerignore import DockerIgnore

    return DockerIgnore.parse(text)


def _tar_dir(path: str, dockerfile: str, extra: dict[str, bytes]) -> io.BytesIO:
    """The context tar of ``path`` (in memory: the request needs its length anyway)."""
    import tarfile

    ignore = _ignore(path)
    keep = {dockerfile, ".dockerignore"}
    buf = io.BytesIO()

    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        walk_into_excluded = ignore is not None and ignore.has_exceptions
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, path)
            for name in sorted(dirnames + filenames):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if ignore is not None and rel not in keep and ignore.excluded(rel):
                    if name in dirnames and not walk_into_excluded:
                        dirnames.remove(name)
                    continue
                full = os.path.join(dirpath, name)
                if name in dirnames and os.path.islink(full):
                    dirnames.remove(name)  # a symlink to a directory is sent as the link
                info = tar.gettarinfo(full, arcname=rel)
                if info is None:
                    continue  # a socket or a fifo: tar has no entry for it (docker skips them too)
                info = reset(info)
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        _add_files(tar, extra)
    buf.seek(0)
    return buf


def _size(n: int) -> str:
    """docker's units.HumanSize (decimal, 4 significant digits)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n}B"
