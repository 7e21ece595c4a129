"""``conch compose ...``: hands the arguments to :mod:`conch.compose.commands` (imported
only for this verb, so other verbs never load YAML or JSON-schema code)."""

from __future__ import annotations

from conch.cli.main import Context


def cmd_compose(ctx: Context, argv: list[str]) -> int:
    from conch.cli import main as cli_main
    from conch.compose.commands import main

    def run_verb(args: list[str]) -> int:  # `exec`, `start -a`: the CLI's own terminal code
        return cli_main.main(args, client=ctx.client, stdin=ctx.stdin, stdout=ctx.stdout,
                             stderr=ctx.stderr) if ctx.host is None else cli_main.main(
            ["-H", ctx.host, *args], stdin=ctx.stdin, stdout=ctx.stdout, stderr=ctx.stderr)

    return main(ctx, argv, run_verb)
