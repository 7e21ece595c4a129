"""Where conchd serves the API: dockerd's ``-H`` forms, all at once.

* ``unix:///path.sock`` - a socket file (mode 0660), removed on the way out;
* ``tcp://ADDR[:PORT]`` - over TLS with ``--tls`` / ``--tlsverify`` (the latter refuses a
  client without a certificate signed by ``--tlscacert``); without TLS only on a loopback
  address, with dockerd's warning (dockerd 27 refuses plain TCP elsewhere as well). The
  port defaults to 2376 with TLS, 2375 without, as dockerd;
* ``fd://`` / ``fd://N`` - sockets handed over by systemd (socket activation:
  ``LISTEN_PID``/``LISTEN_FDS``, the fds from 3 on, sd_listen_fds(3)); ``fd://`` serves them
  all. They are systemd's: conchd does not unlink them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
from typing import AsyncIterator

from aiohttp import web

log = logging.getLogger("conchd")

SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    pass


def tls_context(args) -> ssl.SSLContext | None:
    """The server context for ``--tls``/``--tlsverify`` (None: no TLS)."""
    if not (args.tls or args.tlsverify):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # dockerd's tlsconfig.ServerDefault
    try:
        ctx.load_cert_chain(args.tlscert, args.tlskey)
        if args.tlsverify:
            ctx.load_verify_locations(cafile=args.tlscacert)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(f"could not load the TLS certificates: {exc}") from None
    return ctx


def parse_tcp(host: str, tls: bool) -> tuple[str, int]:
    rest = host[len("tcp://"):].rstrip("/")
    addr, _, port = rest.rpartition(":") if rest.rfind(":") > rest.rfind("]") else (rest, "", "")
    addr = addr.strip("[]") or "0.0.0.0"
    try:
        return addr, int(port) if port else (2376 if tls else 2375)
    except ValueError:
        raise ListenError(f"invalid host {host!r}: bad port") from None


def _loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def validate(hosts: list[str], tls: bool) -> None:
    """Refuse a bad ``-H`` before conchd touches anything (dirs, bridge, nft)."""
    for host in hosts:
        if host.startswith("unix://"):
            from conch.api.server import socket_path
            from conch.errors import ConchError

            try:
                socket_path(host)
            except ConchError as exc:
                raise ListenError(str(exc)) from None
        elif host.startswith("tcp://"):
            addr, _ = parse_tcp(host, tls)
            if not tls and not _loopback(addr):
                raise ListenError(
                    f"refusing to serve {host} without TLS: the API is root on this host. "
                    "Use --tlsverify with --tlscacert/--tlscert/--tlskey, or a loopback address")
        elif host.startswith("fd://"):
            if not _activated():
                raise ListenError(f"{host}: no sockets found via socket activation: make sure "
                                  "the service was started by systemd (LISTEN_PID, LISTEN_FDS)")
        else:
            raise ListenError(f"unsupported host {host!r}: want unix://, tcp:// or fd://")


def _activated() -> int:
    """How many sockets systemd passed to this process (0: none, or not to us)."""
    try:
        if int(os.environ.get("LISTEN_PID", "")) != os.getpid():
            return 0
        return max(0, int(os.environ.get("LISTEN_FDS", "")))
    except ValueError:
        return 0


def systemd_fds() -> list[socket.socket]:
    """The sockets systemd passed (sd_listen_fds(3)); the variables are unset after."""
    count = _activated()
    if not count:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        out.append(socket.socket(fileno=fd))
    return out


def notify(state: str) -> None:
    """sd_notify(3): tell systemd (Type=notify) "READY=1" / "STOPPING=1"; nothing without
    $NOTIFY_SOCKET."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), path)
    except OSError as exc:
        log.warning("sd_notify %s: %s", state, exc)


@contextlib.asynccontextmanager
async def serving(app: web.Application, hosts: list[str], *, tls: ssl.SSLContext | None = None,
                  shutdown_timeout: float = 5.0) -> AsyncIterator[None]:
    """Serve ``app`` on every host of ``hosts`` for the duration of the block."""
    from conch.api.server import _claim_socket_path, socket_path

    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    unlink = []
    activated: list[socket.socket] | None = None
    try:
        for host in hosts:
            if host.startswith("unix://"):
                path = socket_path(host)
                _claim_socket_path(path)
                await web.UnixSite(runner, str(path)).start()
                unlink.append(path)
                os.chmod(path, 0o660)
            elif host.startswith("tcp://"):
                addr, port = parse_tcp(host, tls is not None)
                if tls is None:
                    validate([host], False)
                    log.warning("[DEPRECATION NOTICE]: API is accessible on http://%s:%d without "
                                "encryption. Access to the remote API is equivalent to root access "
                                "on the host. Binding to an IP address, even on localhost, can also "
                                "give access to scripts run in a browser. Be safe out there!",
                                addr, port)
                elif not getattr(tls, "verify_mode", None) == ssl.CERT_REQUIRED:
                    log.warning("API is accessible on https://%s:%d without client certificate "
                                "verification (--tlsverify): anyone who reaches it is root on "
                                "this host", addr, port)
                await web.TCPSite(runner, addr, port, ssl_context=tls).start()
            elif host.startswith("fd://"):
                if activated is None:
                    activated = systemd_fds()
                if not activated:
                    raise ListenError(f"{host}: no sockets found via socket activation: make sure "
                                      "the service was started by systemd (LISTEN_FDS)")
                want = host[len("fd://"):]
                socks = activated if not want else [s for s in activated if str(s.fileno()) == want]
                if not socks:
                    raise ListenError(f"{host}: not one of the activated sockets "
                                      f"{[s.fileno() for s in activated]}")
                for sock in socks:
                    ctx = tls if sock.family in (socket.AF_INET, socket.AF_INET6) else None
                    await web.SockSite(runner, sock, ssl_context=ctx).start()
            else:
                raise ListenError(f"unsupported host {host!r}: want unix://, tcp:// or fd://")
            log.info("API listening on %s", host)
        yield
    finally:
        try:
            await asyncio.wait_for(runner.cleanup(), shutdown_timeout + 2)
        except asyncio.TimeoutError:
            log.warning("API shutdown timed out; closing anyway")
        for path in unlink:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
