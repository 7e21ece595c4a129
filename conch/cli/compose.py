"""``conch compose ...``: hands the arguments to :mod:`conch.compose.commands` (imported
only for this verb, so other verbs never load YAML or JSON-schema code)."""

from __future__ import annotations

import sys

from conch.cli.main import Context


def _venv_packages() -> None:
    """The ``conch`` launcher runs Python with ``-IS`` (no site: start-up cost, see
    tools/lean_launcher.py), so the venv's packages (PyYAML, jsonschema) are not on
    sys.path; compose needs them: add the venv's site-packages, found from the
    interpreter's own path."""
    import os

    venv = os.path.dirname(os.path.dirname(sys.executable))
    lib = os.path.join(venv, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                       "site-packages")
    if os.path.isdir(lib) and lib not in sys.path:
        sys.path.append(lib)


def cmd_compose(ctx: Context, argv: list[str]) -> int:
    from conch.cli import main as cli_main

    _venv_packages()
    from conch.compose.commands import main

    def run_verb(args: list[str]) -> int:  # `exec`, `start -a`: the CLI's own terminal code
        return cli_main.main(args, client=ctx.client, stdin=ctx.stdin, stdout=ctx.stdout,
                             stderr=ctx.stderr) if ctx.host is None else cli_main.main(
            ["-H", ctx.host, *args], stdin=ctx.stdin, stdout=ctx.stdout, stderr=ctx.stderr)

    return main(ctx, argv, run_verb)
