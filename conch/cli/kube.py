"""``conch kube generate|play``: the verbs' flags; the work is in ``conch.kube``, imported
only when one of these verbs runs (it brings PyYAML)."""

from __future__ import annotations

import sys

from conch.cli.main import CommandError, Context, UsageError


def _venv_packages() -> None:
    """The ``conch`` launcher runs Python with ``-IS`` (no site, for start-up cost: see
    tools/lean_launcher.py), so PyYAML is not on sys.path: add the venv's site-packages,
    found from the interpreter's own path (without ``site``, sys.prefix is the base
    Python's), as conch.cli.compose does."""
    import os

    venv = os.path.dirname(os.path.dirname(sys.executable))
    lib = os.path.join(venv, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                       "site-packages")
    if os.path.isdir(lib) and lib not in sys.path:
        sys.path.append(lib)


class _own_errors:
    """conch.kube's own refusals (a bad manifest, nothing to generate from) are printed
    as ``Error: ...``; an error the daemon answered (it carries the HTTP ``status`` the
    client set) keeps docker's ``Error response from daemon: ...``."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from conch import errors

        if isinstance(exc, errors.ConchError) and not hasattr(exc, "status"):
            raise CommandError(f"Error: {exc}") from exc
        return False


def cmd_generate(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] CONTAINER|POD|COMPOSE-PROJECT [...]",
                   "Generate Kubernetes YAML for containers, pods or compose projects")
    p.add_argument("-s", "--service", action="store_true",
                   help="Also generate a Service for the published/exposed ports")
    p.add_argument("-r", "--replicas", type=int, help="Replicas of each Deployment")
    p.add_argument("-t", "--type", default="deployment", choices=["deployment", "pod"],
                   help='Kind of the workload: "deployment" (default) or "pod"')
    p.add_argument("-f", "--filename", help="Write the YAML to this file instead of stdout")
    p.add_argument("names", nargs="*", metavar="NAME")
    ns = p.parse(argv)
    if not ns.names:
        raise UsageError(f'"{ctx.prog}" requires at least 1 argument.')
    if ns.replicas is not None and ns.replicas < 0:
        raise UsageError(f"invalid replicas {ns.replicas}")
    _venv_packages()
    from conch.kube import generate

    with _own_errors():
        text = generate.dump(generate.generate(ctx.client, ns.names, service=ns.service,
                                               replicas=ns.replicas, kind=ns.type))
    if ns.filename:
        with open(ns.filename, "w") as f:
            f.write(text)
    else:
        ctx.out(text, end="")
    return 0


def cmd_play(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] FILE",
                   "Run Pods, Deployments, Services, ConfigMaps, Secrets and "
                   "PersistentVolumeClaims from Kubernetes YAML (FILE '-' reads stdin)")
    p.add_argument("--down", action="store_true", help="Remove what the file's objects made")
    p.add_argument("--replace", action="store_true",
                   help="Remove what the file's objects made before, then play it")
    p.add_argument("file", metavar="FILE")
    ns = p.parse(argv)
    if ns.down and ns.replace:
        raise UsageError("--down and --replace cannot be used together")
    if ns.file == "-":
        text = (ctx.stdin or sys.stdin).read()
    else:
        try:
            with open(ns.file) as f:
                text = f.read()
        except OSError as exc:
            raise UsageError(f"open {ns.file}: {exc.strerror}") from None
    _venv_packages()
    from conch.kube import play

    with _own_errors():
        if ns.down:
            play.down(ctx.client, text, out=ctx.out)
        else:
            play.play(ctx.client, text, replace=ns.replace, out=ctx.out)
    return 0
