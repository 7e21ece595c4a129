"""The embedded DNS server's answering logic, sans I/O: wire bytes in, wire bytes out.

:func:`answer` returns ``(request, reply)``: ``request`` is None when the bytes must be
dropped (unparsable, or a response rather than a query); ``reply`` is None when the
query is not ours and must be forwarded upstream. The rules are stated in
:mod:`conch.network.dns`.
"""

from __future__ import annotations

import logging
import random
from typing import Callable

__all__ = ["answer", "TTL"]

log = logging.getLogger(__name__)

TTL = 600  # docker's respTTL
_ARPA = ".in-addr.arpa"


def _parse(data: bytes):
    from dnslib import DNSRecord

    try:
        request = DNSRecord.parse(data)
    except Exception:  # hostile bytes: dnslib raises DNSError, struct/Index/Unicode errors
        return None
    return None if request.header.qr else request


def _reverse_ip(name: str) -> str | None:
    """``4.3.2.1.in-addr.arpa`` -> ``1.2.3.4``; None for anything else."""
    if not name.endswith(_ARPA):
        return None
    parts = name[: -len(_ARPA)].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 and str(int(p)) == p
                                  for p in parts):
        return None
    return ".".join(reversed(parts))


def answer(data: bytes, *, network_id: str, client_ip: str, domain: str | None,
           lookup: Callable[[str, str, str], list[str] | None],
           reverse: Callable[[str, str], str | None] | None) -> tuple[object | None, bytes | None]:
    """See the module docstring. A lookup callback that raises gives SERVFAIL."""
    from dnslib import AAAA, OPCODE, QTYPE, RCODE, RR, A, PTR

    request = _parse(data)
    if request is None:
        return None, None
    reply = request.reply()
    if request.header.opcode != OPCODE.QUERY:
        reply.header.rcode = RCODE.NOTIMP
        return request, reply.pack()
    if len(request.questions) != 1:
        reply.header.rcode = RCODE.FORMERR
        return request, reply.pack()
    q = request.q
    name = str(q.qname).rstrip(".").lower()
    if not name:
        return request, None
    try:
        if q.qtype == QTYPE.PTR and reverse is not None and (ip := _reverse_ip(name)):
            host = reverse(network_id, ip)
            if host is None:
                return request, None
            reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(host.rstrip(".") + "."), ttl=TTL))
            return request, reply.pack()
        ips = lookup(network_id, client_ip, name)
        if ips is None and domain and name.endswith("." + domain):
            ips = lookup(network_id, client_ip, name[: -len(domain) - 1])
        if ips is None:
            return request, None
        # several addresses (a service's replicas share its name as an alias):
        # shuffled per answer, as docker's resolver does, so that clients taking the
        # first address spread over the replicas. IPv6 ones (EnableIPv6 networks) are
        # the AAAA answers.
        ips = list(ips)
        random.shuffle(ips)
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            for ip in ips:
                if ":" not in ip:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        if q.qtype in (QTYPE.AAAA, QTYPE.ANY):
            for ip in ips:
                if ":" in ip:
                    reply.add_answer(RR(q.qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=TTL))
        return request, reply.pack()
    except Exception:  # an engine callback bug must not take the listener down
        log.exception("DNS lookup of %r for %s failed", name, client_ip)
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return request, reply.pack()
