"""The host's IP forwarding switches. Containers reach the outside only when the host
routes: dockerd turns ``net.ipv4.ip_forward`` on at start and
``net.ipv6.conf.all.forwarding`` with its first IPv6 network when they are off, and so
do :mod:`.firewall` and :mod:`.firewall6` (through :func:`ensure_on`)."""

from __future__ import annotations

import logging
from pathlib import Path

from conch.errors import PermissionDenied

log = logging.getLogger(__name__)

IPV4 = Path("/proc/sys/net/ipv4/ip_forward")
IPV6 = Path("/proc/sys/net/ipv6/conf/all/forwarding")


def ensure_on(switch: Path) -> None:
    """Write 1 to ``switch`` (a /proc/sys file) unless it is 1 already."""
    try:
        if switch.read_text().strip() != "1":
            name = ".".join(switch.relative_to("/proc/sys").parts)
            log.info("enabling %s for container networking", name)
            switch.write_text("1")
    except OSError as exc:
        raise PermissionDenied(f"enabling {switch}: {exc.strerror}") from exc
