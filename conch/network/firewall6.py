"""IPv6 for EnableIPv6 networks in nftables: the ``ip6`` twin of :mod:`.firewall`'s table.

docker 28 runs ip6tables by default: an IPv6 network's subnet is masqueraded on the way
out, bridges are isolated from each other and from new connections from outside, and a
port published on every address (``-p 8080:80``, "0.0.0.0" and "::") is DNAT'ed to the
container's IPv6 address as well. This table (``ip6 <name>``, the same name as the
daemon's ``ip`` table) holds exactly that, made on the first IPv6 network and deleted
with the last one (and with the ``ip`` table)::

    set bridges  ifname                every bridge with an IPv6 subnet
    set internal ifname                those of --internal networks
    set intra    ifname . ifname       "br" . "br": traffic inside a bridge
    set masq     ipv6_addr (interval)  subnets masqueraded on the way out
    map ports_any proto . port : ipv6_addr . port   (host address "::")

Like dockerd, the first IPv6 network turns ``net.ipv6.conf.all.forwarding`` on when it
is off. Elements are added and deleted one transaction at a time; deleting a missing
one (a daemon restart forgot it) is no error.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading

from conch.errors import ConchError, InvalidArgument
from conch.network import forwarding

_SKELETON6 = """\
add table ip6 {t}
add set ip6 {t} bridges {{ type ifname; }}
add set ip6 {t} internal {{ type ifname; }}
add set ip6 {t} intra {{ type ifname . ifname; }}
add set ip6 {t} masq {{ type ipv6_addr; flags interval; }}
add map ip6 {t} ports_any {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
add chain ip6 {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain ip6 {t} publish
add chain ip6 {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip6 {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip6 {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain ip6 {t} forward
flush chain ip6 {t} publish
flush chain ip6 {t} prerouting
flush chain ip6 {t} output
flush chain ip6 {t} postrouting
add rule ip6 {t} forward iifname . oifname @intra accept
add rule ip6 {t} forward iifname @internal drop
add rule ip6 {t} forward oifname @internal drop
add rule ip6 {t} forward ct status dnat accept
add rule ip6 {t} forward iifname @bridges oifname @bridges drop
add rule ip6 {t} forward iifname @bridges accept
add rule ip6 {t} forward oifname @bridges ct state established,related accept
add rule ip6 {t} forward oifname @bridges drop
add rule ip6 {t} publish dnat ip6 to meta l4proto . th dport map @ports_any
add rule ip6 {t} prerouting fib daddr type local jump publish
add rule ip6 {t} output fib daddr type local jump publish
add rule ip6 {t} postrouting ip6 saddr @masq oifname != @bridges masquerade
"""


class Firewall6:
    """The ``ip6`` table; ``run`` is the owning Firewall's ``nft -f -`` runner."""

    def __init__(self, table: str, run, listing, nft) -> None:
        self.table = table
        self._run = run
        self._nft = nft  # () -> the nft binary
        self._listing = listing  # () -> bool: does the ip6 table exist
        self._lock = threading.Lock()
        self._ready = False
        self._nets: dict[str, tuple[str, bool, bool]] = {}  # bridge -> (subnet, internal, masq)

    def _ensure(self) -> None:
        if self._ready:
            return
        forwarding.ensure_on(forwarding.IPV6)  # on the first IPv6 network, as dockerd
        self._run(_SKELETON6.format(t=self.table))
        self._ready = True

    def add_network(self, *, bridge: str, subnet6: str, internal: bool, masquerade: bool) -> None:
        try:
            net6 = ipaddress.IPv6Network(subnet6, strict=False)
        except ValueError as exc:
            raise InvalidArgument(f"invalid IPv6 subnet {subnet6!r}: {exc}") from exc
        with self._lock:
            self._ensure()
            t = self.table
            script = [f"add element ip6 {t} bridges {{ {bridge} }}",
                      f"add element ip6 {t} intra {{ {bridge} . {bridge} }}"]
            if internal:
                script.append(f"add element ip6 {t} internal {{ {bridge} }}")
            elif masquerade:
                script.append(f"add element ip6 {t} masq {{ {net6} }}")
            self._run("\n".join(script) + "\n")
            self._nets[bridge] = (str(net6), internal, masquerade and not internal)

    def remove_network(self, *, bridge: str, subnet6: str = "") -> None:
        with self._lock:
            known = self._nets.pop(bridge, None)
            if not (self._ready or known or subnet6) or not self._listing():
                return
            t = self.table
            subnet6 = known[0] if known else subnet6
            self._delete([f"bridges {{ {bridge} }}", f"intra {{ {bridge} . {bridge} }}",
                          f"internal {{ {bridge} }}"]
                         + ([f"masq {{ {subnet6} }}"] if subnet6 else []), t)
            if not self._nets and not self._has_bridges():
                # the last IPv6 network went: so does the table (made again on the next)
                self._run(f"add table ip6 {t}\ndelete table ip6 {t}\n")
                self._ready = False

    def publish(self, *, proto: str, host_port: int, container_ip6: str, container_port: int) -> None:
        ipaddress.IPv6Address(container_ip6)
        with self._lock:
            self._ensure()
            self._run(f"add element ip6 {self.table} ports_any {{ {proto} . {int(host_port)} : "
                      f"{container_ip6} . {int(container_port)} }}\n")

    def unpublish(self, *, proto: str, host_port: int) -> None:
        with self._lock:
            if self._listing():
                self._delete([f"ports_any {{ {proto} . {int(host_port)} }}"], self.table)

    def _has_bridges(self) -> bool:
        proc = subprocess.run([self._nft(), "-j", "list", "set", "ip6", self.table, "bridges"],
                              capture_output=True, text=True, timeout=30)
        return proc.returncode != 0 or '"elem"' in proc.stdout

    def destroy(self) -> None:
        with self._lock:
            self._run(f"add table ip6 {self.table}\ndelete table ip6 {self.table}\n")
            self._ready, self._nets = False, {}

    def _delete(self, elements: list[str], t: str) -> None:
        for elem in elements:  # one by one: a missing element fails only its own delete
            try:
                self._run(f"delete element ip6 {t} {elem}\n")
            except ConchError:
                pass


def table_exists(nft: str, table: str) -> bool:
    proc = subprocess.run([nft, "list", "table", "ip6", table], capture_output=True, text=True,
                          timeout=30)
    return proc.returncode == 0
