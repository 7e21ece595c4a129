"""``python -m conch.registry.server serve|gc ...`` (what ``conch registry`` execs).

    serve --addr HOST:PORT --root DIR [--htpasswd FILE [--anonymous-pull]] [--realm URL]
          [--tls-cert FILE --tls-key FILE]
    gc    --root DIR [--dry-run] [--grace SECONDS] [--upload-ttl SECONDS]

``serve`` prints ``listening on http(s)://HOST:PORT`` on stderr once the socket accepts
(tests and scripts wait for it) and stops cleanly on SIGTERM/SIGINT. Exit status: 0, or
1 with a one-line error, or 2 for a usage error (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

READ_BUFSIZE = 4 << 20


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conch registry", description="OCI distribution registry")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="Serve a registry over HTTP(S)")
    s.add_argument("--addr", default="127.0.0.1:5000", help="HOST:PORT to listen on")
    s.add_argument("--root", required=True, help="storage directory")
    s.add_argument("--htpasswd", help="bcrypt htpasswd file: turns on token auth")
    s.add_argument("--anonymous-pull", action="store_true", help="with --htpasswd: anyone may pull")
    s.add_argument("--realm", help="token realm URL (default: <scheme>://<Host>/token)")
    s.add_argument("--tls-cert", help="PEM certificate chain")
    s.add_argument("--tls-key", help="PEM private key")
    s.add_argument("--log-level", default="info")
    g = sub.add_parser("gc", help="Delete unreferenced blobs and stale uploads")
    g.add_argument("--root", required=True)
    g.add_argument("--dry-run", action="store_true", help="only report what would go")
    g.add_argument("--grace", type=float, default=3600.0,
                   help="never delete blobs touched within this many seconds (default 3600)")
    g.add_argument("--upload-ttl", type=float, default=3600.0,
                   help="remove uploads idle for this many seconds (default 3600)")
    return p


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"conch registry: --addr wants HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from .app import Registry, make_app
    from .auth import Authorizer, Htpasswd

    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("conch registry: --tls-cert and --tls-key go together")
    users = Htpasswd(args.htpasswd) if args.htpasswd else None
    reg = Registry(args.root, Authorizer(users, args.anonymous_pull), realm=args.realm)
    ssl_ctx = None
    if args.tls_cert:
        import ssl

        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
    host, port = _split_addr(args.addr)
    # A bigger read buffer (default 64 KiB) means fewer pause/resume cycles of the
    # transport while a blob streams in (measured: PUT 184 -> ~225 MB/s here).
    runner = web.AppRunner(make_app(reg), access_log=None, handle_signals=False,
                           read_bufsize=READ_BUFSIZE)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=512)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = "https" if ssl_ctx else "http"
    print(f"listening on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def gc(args: argparse.Namespace) -> None:
    from .gc import collect
    from .storage import Storage

    report = collect(Storage(args.root), dry_run=args.dry_run, grace=args.grace,
                     upload_ttl=args.upload_ttl)
    verb = "would delete" if args.dry_run else "deleted"
    for digest in report.deleted:
        print(f"{verb} blob {digest}")
    print(f"{report.marked} blobs referenced, {verb} {len(report.deleted)} blobs "
          f"({report.deleted_bytes} bytes), kept {report.kept_young} young unreferenced blobs, "
          f"{verb} {report.uploads_removed} stale uploads")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            logging.basicConfig(level=args.log_level.upper(),
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            asyncio.run(serve(args))
        else:
            gc(args)
    except (OSError, ValueError) as exc:
        print(f"conch registry: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
