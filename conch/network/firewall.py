"""NAT, network isolation and published ports in nftables: one ``ip`` table per daemon.

Everything conchd does to netfilter lives in the table named by the caller (``conch``,
or ``conch_<hex>`` for a test daemon), so two daemons never meet and deleting the table
undoes everything. Other tables (iptables-nft's ``ip nat``/``ip filter``, podman's) are
never touched. The rules are docker's with ``userland-proxy=false``: all in the kernel,
no proxy process.

The chains are fixed; a network or a published port is only *elements* of the sets and
maps below, so adding or removing one is a single ``nft -f -`` transaction (one process,
~3 ms, atomic) that never needs rule handles::

    set bridges  ifname                    every bridge of this daemon
    set internal ifname                    bridges of --internal networks
    set intra    ifname . ifname           "br" . "br": traffic inside a bridge
    set masq     ipv4_addr (interval)      subnets masqueraded on the way out
    set hairpin  ifname . ipv4_addr        bridge . subnet (bookkeeping: subnet of a bridge)
    map ports_any   proto . port        : container_ip . port   (host_ip 0.0.0.0)
    map ports_addr  proto . ip . port   : container_ip . port   (a given host_ip)
    map shared_any  proto . port        : goto sp_<proto>_<ip>_<port>  (shared ports)
    map shared_addr proto . ip . port   : goto sp_<proto>_<ip>_<port>

A *shared* port (replicas of one service behind one host port, :meth:`Firewall.set_backends`)
is a chain of its own holding one rule, ``dnat ip to numgen random mod N map { 0 : ip .
port, ... }``: each new connection picks one of the N backends at random (conntrack
keeps the choice for the connection's life, so removing a backend drains it: its open
connections finish, new ones go elsewhere). The chain is rewritten whole, in one
transaction, whenever the backends change; with none it is empty and the port refuses.
It is reached from ``publish`` before the one-container maps, so host-originated
(``output``) and container/outside (``prerouting``) traffic both take it.

forward (filter): intra-bridge accepted (with br_netfilter loaded, bridged frames also
cross this hook), internal bridges dropped both ways, DNAT'ed connections accepted,
bridge-to-bridge dropped (isolation), bridge-to-outside accepted, outside-to-bridge only
for established/related, everything else to a bridge dropped (docker >= 28).
prerouting/output (nat): destinations of type local go through ``publish``, which DNATs
by ``ports_addr`` then ``ports_any``; prerouting skips 127.0.0.0/8 so a neighbour cannot
reach a port published on 127.0.0.1 by routing to it. guard (filter, raw priority):
packets from a bridge to 127.0.0.0/8 are dropped, since ``route_localnet=1`` on the bridge
(needed so locally generated 127.x connections can be DNAT'ed out of it) would otherwise
let containers reach the host's loopback-only services.
postrouting (nat): 127.0.0.0/8-sourced packets leaving by a bridge, and DNAT'ed packets
leaving by the bridge their source subnet is on (hairpin, sibling via the host address),
are masqueraded; ``masq`` subnets leaving by anything but a conch bridge are masqueraded.

Host processes' connections to published ports usually never reach these rules: conchd's
socket LB (:mod:`conch.network.socklb`) rewrites them at connect() time; the rules stay
complete for everyone else and for when it is unavailable or conchd is down.

Contract: the bridge exists before ``add_network`` (its ``route_localnet`` is set);
bridge ports need hairpin mode for a container to reach its own published port (as
docker sets it with userland-proxy=false). ``ensure`` turns ``net.ipv4.ip_forward`` on
when it is off, as dockerd does. The state (``networks``/``published``) is read back from
the kernel by ``ensure``, so it survives a daemon crash; later calls keep it in memory.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from conch.errors import (
    AlreadyExists, ConchError, Conflict, FailedPrecondition, InvalidArgument, NotFound,
    PermissionDenied, Unavailable,
)
from conch.network import forwarding
from conch.network.firewall_state import parse_listing
from conch.network.netlink import check_ifname
from conch.network.ports import PortReservation, check_port_args

__all__ = ["Firewall", "PortRule", "PortReservation"]

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_IPTABLES_TABLES = {"nat", "filter", "mangle", "raw", "security"}

_SKELETON = """\
add table ip {t}
add set ip {t} bridges {{ type ifname; }}
add set ip {t} internal {{ type ifname; }}
add set ip {t} intra {{ type ifname . ifname; }}
add set ip {t} masq {{ type ipv4_addr; flags interval; }}
add set ip {t} hairpin {{ type ifname . ipv4_addr; flags interval; }}
add map ip {t} ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {t} ports_addr {{ type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service; }}
add map ip {t} shared_any {{ type inet_proto . inet_service : verdict; }}
add map ip {t} shared_addr {{ type inet_proto . ipv4_addr . inet_service : verdict; }}
add chain ip {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain ip {t} publish
add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain ip {t} guard
flush chain ip {t} forward
flush chain ip {t} publish
flush chain ip {t} prerouting
flush chain ip {t} output
flush chain ip {t} postrouting
add rule ip {t} guard iifname @bridges ip daddr 127.0.0.0/8 drop
add rule ip {t} forward iifname . oifname @intra accept
add rule ip {t} forward iifname @internal drop
add rule ip {t} forward oifname @internal drop
add rule ip {t} forward ct status dnat accept
add rule ip {t} forward iifname @bridges oifname @bridges drop
add rule ip {t} forward iifname @bridges accept
add rule ip {t} forward oifname @bridges ct state established,related accept
add rule ip {t} forward oifname @bridges drop
add rule ip {t} publish meta l4proto . ip daddr . th dport vmap @shared_addr
add rule ip {t} publish meta l4proto . th dport vmap @shared_any
add rule ip {t} publish dnat ip to meta l4proto . ip daddr . th dport map @ports_addr
add rule ip {t} publish dnat ip to meta l4proto . th dport map @ports_any
add rule ip {t} prerouting ip daddr != 127.0.0.0/8 fib daddr type local jump publish
add rule ip {t} output fib daddr type local jump publish
add rule ip {t} postrouting oifname @bridges ip saddr 127.0.0.0/8 masquerade
add rule ip {t} postrouting ct status dnat oifname . ip saddr @hairpin masquerade
add rule ip {t} postrouting ip saddr @masq oifname != @bridges masquerade
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Network:
    bridge: str
    subnet: ipaddress.IPv4Network
    internal: bool
    masquerade: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRule:
    """One published port. ``bridge`` is the network whose subnet holds
    ``container_ip`` (``""`` for a leftover rule matching no network)."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    bridge: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.proto, self.host_ip, self.host_port)

    def element(self) -> tuple[str, str]:
        """(map name, ``key : data`` in nft syntax)."""
        data = f"{self.container_ip} . {self.container_port}"
        if self.host_ip == "0.0.0.0":
            return "ports_any", f"{self.proto} . {self.host_port} : {data}"
        return "ports_addr", f"{self.proto} . {self.host_ip} . {self.host_port} : {data}"


def _elements(net: _Network) -> list[tuple[str, str]]:
    """(set, element) pairs that make up a network."""
    b = json.dumps(net.bridge)  # nft quotes ifnames like JSON strings
    out = [("bridges", b), ("intra", f"{b} . {b}"), ("hairpin", f"{b} . {net.subnet}")]
    if net.internal:
        out.append(("internal", b))
    elif net.masquerade:
        out.append(("masq", str(net.subnet)))
    return out


class Firewall:
    """The daemon's nftables table. Methods are thread-safe; each mutation is one
    ``nft`` process running one atomic transaction."""

    def __init__(self, table: str, *, nft: str = "nft"):
        if not _TABLE_NAME.fullmatch(table) or table.lower() in _IPTABLES_TABLES:
            raise InvalidArgument(f"invalid nftables table name {table!r} (letters, digits, "
                                  "'_', at most 32; not an iptables table name)")
        self.table = table
        self._nft = nft
        self._nft_resolved: str | None = None
        self._lock = threading.Lock()
        self._nets: dict[str, _Network] | None = None  # None: not read from the kernel yet
        self._ports: dict[tuple[str, str, int], PortRule] = {}
        self._shared: dict[tuple[str, str, int], list[tuple[str, int]]] = {}
        from conch.network.firewall6 import Firewall6, table_exists

        # EnableIPv6 networks: the ip6 table of the same name (conch.network.firewall6)
        self.v6 = Firewall6(table, self._run, lambda: table_exists(self._nft_path(), table),
                            self._nft_path)

    # -- lifecycle ---------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the table, its sets and chains (rules rewritten, elements kept), then read
        the current networks and ports back. Idempotent; an incompatible old table is
        replaced (the caller reconciles its networks afterwards)."""
        forwarding.ensure_on(forwarding.IPV4)
        skeleton = _SKELETON.format(t=self.table)
        with self._lock:
            try:
                self._run(skeleton)
            except ConchError as exc:
                self._check_name(exc)
                log.warning("nft table %s incompatible (%s): recreating it", self.table, exc)
                self._run(f"add table ip {self.table}\ndelete table ip {self.table}\n" + skeleton)
            self._load()

    def _check_name(self, exc: ConchError) -> None:
        """A table name nft reads as a keyword (``ct``, ``ip``, ``meta``...) is a syntax
        error in every script, and nft (1.0) takes no quoted table names: refuse it with
        the flag to change, not nft's parser message. Probed with ``nft -c`` (nothing is
        applied) so the rule is nft's own, whatever its version's keywords."""
        if "syntax error" not in str(exc):
            return
        probe = subprocess.run([self._nft_path(), "-c", "-f", "-"],
                               input=f"add table ip {self.table}\n", capture_output=True,
                               text=True, timeout=30)
        if probe.returncode != 0 and "syntax error" in probe.stderr:
            raise InvalidArgument(
                f"invalid nftables table name {self.table!r}: nft reads it as a keyword; "
                "choose another with --nft-table") from None

    def destroy(self) -> None:
        """Delete the table and everything in it; no error when it is absent."""
        with self._lock:
            self._run(f"add table ip {self.table}\ndelete table ip {self.table}\n")
            self.v6.destroy()
            for net in (self._nets or {}).values():
                _set_route_localnet(net.bridge, False)
            self._nets, self._ports, self._shared = None, {}, {}

    # -- networks ----------------------------------------------------------------------

    def add_network(self, *, bridge: str, subnet: str, internal: bool = False,
                    masquerade: bool = True, subnet6: str = "") -> None:
        """Rules for a bridge network: isolation, forwarding, outbound NAT (unless
        ``internal`` or not ``masquerade``). Idempotent; new settings replace old ones
        (and then drop the ports published to the bridge)."""
        check_ifname(bridge)
        if subnet6:  # idempotent, so before the unchanged-IPv4 shortcut below
            self.v6.add_network(bridge=bridge, subnet6=subnet6, internal=internal,
                                masquerade=masquerade)
        try:
            net4 = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError as exc:
            raise InvalidArgument(f"invalid IPv4 subnet {subnet!r}: {exc}") from exc
        net = _Network(bridge=bridge, subnet=net4, internal=internal,
                       masquerade=masquerade and not internal)
        with self._lock:
            nets = self._model()
            old = nets.get(bridge)
            if old == net:
                return
            # A 127.x connection DNAT'ed out of a bridge needs route_localnet on it;
            # taken back if the rules cannot be written (the guard against containers
            # reaching the host's loopback lives in those rules)
            _set_route_localnet(bridge, not internal)
            script = self._remove_script(old) if old else []
            script += [f"add element ip {self.table} {s} {{ {e} }}" for s, e in _elements(net)]
            try:
                self._run("\n".join(script) + "\n")
            except BaseException:
                _set_route_localnet(bridge, bool(old) and not old.internal)
                raise
            nets[bridge] = net
            self._ports = {k: r for k, r in self._ports.items() if r.bridge != bridge}

    def remove_network(self, *, bridge: str, subnet6: str = "") -> None:
        """Drop a network's rules and every port published to it; unknown: no-op."""
        self.v6.remove_network(bridge=bridge, subnet6=subnet6)
        with self._lock:
            nets = self._model()
            net = nets.get(bridge)
            if net is None:
                return
            self._run("\n".join(self._remove_script(net)) + "\n")
            del nets[bridge]
            self._ports = {k: r for k, r in self._ports.items() if r.bridge != bridge}
            _set_route_localnet(bridge, False)

    def networks(self) -> list[str]:
        """Bridges that have rules, sorted."""
        with self._lock:
            return sorted(self._model())

    # -- published ports ---------------------------------------------------------------

    def publish(self, *, bridge: str, proto: str, host_ip: str, host_port: int,
                container_ip: str, container_port: int) -> None:
        """DNAT ``host_ip:host_port/proto`` (``0.0.0.0``: every host address, 127.0.0.1
        included) to ``container_ip:container_port`` on ``bridge``. The same rule again is
        a no-op; a different rule on that host port is a Conflict."""
        self.publish_many(bridge=bridge, ports=[dict(
            proto=proto, host_ip=host_ip, host_port=host_port, container_ip=container_ip,
            container_port=container_port)])

    def publish_many(self, *, bridge: str, ports: list[dict]) -> None:
        """:meth:`publish` for several ports (dicts of its keyword arguments but
        ``bridge``) in one transaction: all or none."""
        with self._lock:
            net = self._model().get(bridge)
            if net is None:
                raise FailedPrecondition(f"network bridge {bridge!r} has no firewall rules: "
                                         "add_network first")
            if net.internal:
                raise FailedPrecondition(f"cannot publish ports on internal network {bridge!r}")
            new: dict[tuple[str, str, int], PortRule] = {}
            for port in ports:
                rule = _port_rule(net, **port)
                if rule.key in self._shared:
                    raise Conflict(f"host port {rule.host_ip}:{rule.host_port}/{rule.proto} is "
                                   "shared by a service's replicas")
                self._check_free(rule, {**self._ports, **new})
                if rule.key not in self._ports:
                    new[rule.key] = rule
            if not new:
                return
            self._run("".join(f"add element ip {self.table} {name} {{ {elem} }}\n"
                              for name, elem in (r.element() for r in new.values())))
            self._ports.update(new)

    def unpublish(self, *, proto: str, host_ip: str, host_port: int) -> None:
        """Remove a published port; unknown: no-op."""
        self.unpublish_many(ports=[(proto, host_ip, host_port)])

    def unpublish_many(self, *, ports: list[tuple[str, str, int]]) -> None:
        """Remove several ``(proto, host_ip, host_port)`` in one transaction (removals wait
        for a kernel RCU grace period, ~12 ms, once per transaction); unknown: skipped."""
        keys = [(p, check_port_args(p, ip, hp, allow_zero=False), hp) for p, ip, hp in ports]
        with self._lock:
            self._model()
            rules = [self._ports[k] for k in dict.fromkeys(keys) if k in self._ports]
            if not rules:
                return
            self._run("".join(line + "\n" for r in rules for line in self._drop(*r.element())))
            for rule in rules:
                del self._ports[rule.key]

    def published(self) -> list[dict]:
        """Every port rule as ``{"proto", "host_ip", "host_port", "container_ip",
        "container_port", "bridge"}``, sorted by (proto, host_ip, host_port)."""
        with self._lock:
            self._model()
            return [asdict(self._ports[k]) for k in sorted(self._ports)]

    # -- shared ports (replicas behind one host port) ----------------------------------

    @staticmethod
    def shared_chain(proto: str, host_ip: str, host_port: int) -> str:
        return f"sp_{proto}_{host_ip.replace('.', '_')}_{host_port}"

    def set_backends(self, *, proto: str, host_ip: str, host_port: int,
                     backends: list[tuple[str, int]]) -> None:
        """Make ``host_ip:host_port/proto`` a shared port spreading new connections over
        ``backends`` (``(container_ip, container_port)``, any order; empty: refuse new
        connections). Idempotent; one atomic transaction."""
        host_ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
        for ip, port in backends:
            ipaddress.IPv4Address(ip)
            if not 1 <= int(port) <= 65535:
                raise InvalidArgument(f"invalid container port {port!r}")
        backends = sorted(set((str(ip), int(port)) for ip, port in backends))
        chain = self.shared_chain(proto, host_ip, host_port)
        name, key = self._shared_key(proto, host_ip, host_port)
        script = [f"add chain ip {self.table} {chain}", f"flush chain ip {self.table} {chain}",
                  f"add counter ip {self.table} c{chain}"]
        if backends:
            # a nat chain sees a connection's first packet only: the named counter counts
            # new connections, and outlives the rule's rewrites (the autoscaler's rate)
            items = ", ".join(f"{i} : {ip} . {port}" for i, (ip, port) in enumerate(backends))
            script.append(f"add rule ip {self.table} {chain} meta l4proto {proto} counter name "
                          f"c{chain} dnat ip to numgen random mod {len(backends)} map {{ {items} }}")
        script.append(f"add element ip {self.table} {name} {{ {key} : goto {chain} }}")
        with self._lock:
            self._model()
            if (proto, host_ip, host_port) in self._ports:
                raise Conflict(f"host port {host_ip}:{host_port}/{proto} is already published "
                               "to one container")
            self._run("\n".join(script) + "\n")
            self._shared[(proto, host_ip, host_port)] = backends

    def remove_shared(self, *, proto: str, host_ip: str, host_port: int) -> None:
        """Undo :meth:`set_backends`; unknown: no-op."""
        host_ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
        chain = self.shared_chain(proto, host_ip, host_port)
        name, key = self._shared_key(proto, host_ip, host_port)
        with self._lock:
            self._run("\n".join([
                f"add chain ip {self.table} {chain}",
                f"add counter ip {self.table} c{chain}",
                f"add element ip {self.table} {name} {{ {key} : goto {chain} }}",
                f"delete element ip {self.table} {name} {{ {key} }}",
                f"flush chain ip {self.table} {chain}",
                f"delete chain ip {self.table} {chain}",
                f"delete counter ip {self.table} c{chain}"]) + "\n")
            self._shared.pop((proto, host_ip, host_port), None)

    def add_backend(self, *, proto: str, host_ip: str, host_port: int, container_ip: str,
                    container_port: int) -> None:
        """One more backend for a shared port (made shared when it was not)."""
        host_ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
        with self._lock:
            current = list(self._shared.get((proto, host_ip, host_port), []))
        if (container_ip, container_port) not in current:
            current.append((container_ip, container_port))
        self.set_backends(proto=proto, host_ip=host_ip, host_port=host_port, backends=current)

    def remove_backend(self, *, proto: str, host_ip: str, host_port: int, container_ip: str,
                       container_port: int) -> None:
        """A backend leaves a shared port: new connections stop going to it at once (its
        open ones finish). The port stays shared (possibly with no backend)."""
        host_ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
        with self._lock:
            current = list(self._shared.get((proto, host_ip, host_port), []))
        if (container_ip, container_port) in current:
            current.remove((container_ip, container_port))
            self.set_backends(proto=proto, host_ip=host_ip, host_port=host_port, backends=current)

    def shared_connections(self, *, proto: str, host_ip: str, host_port: int) -> int | None:
        """New connections a shared port has balanced since it was made (its named
        counter); None when it is not a shared port."""
        host_ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
        proc = subprocess.run([self._nft_path(), "-j", "list", "counter", "ip", self.table,
                               "c" + self.shared_chain(proto, host_ip, host_port)],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return None
        for obj in json.loads(proc.stdout).get("nftables", []):
            if "counter" in obj:
                return int(obj["counter"].get("packets", 0))
        return None

    def shared(self) -> dict[tuple[str, str, int], list[tuple[str, int]]]:
        """Shared ports set since start (or since :meth:`prune_shared`) and their backends."""
        with self._lock:
            return {k: list(v) for k, v in sorted(self._shared.items())}

    def prune_shared(self, keep: set[tuple[str, str, int]]) -> None:
        """Delete every shared-port chain in the kernel not in ``keep`` (after a daemon
        restart the kernel may hold chains of replicas that went away meanwhile)."""
        listing = self._list() or {}
        keep_chains = {self.shared_chain(*k) for k in keep}
        for obj in listing.get("nftables", []):
            chain = (obj.get("chain") or {}).get("name", "")
            if chain.startswith("sp_") and chain not in keep_chains:
                proto, rest = chain[3:].split("_", 1)
                *ip, port = rest.split("_")
                try:
                    self.remove_shared(proto=proto, host_ip=".".join(ip), host_port=int(port))
                except (ConchError, ValueError) as exc:
                    log.warning("removing stale shared port chain %s: %s", chain, exc)

    @staticmethod
    def _shared_key(proto: str, host_ip: str, host_port: int) -> tuple[str, str]:
        if host_ip == "0.0.0.0":
            return "shared_any", f"{proto} . {host_port}"
        return "shared_addr", f"{proto} . {host_ip} . {host_port}"

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _check_free(rule: PortRule, ports: dict[tuple[str, str, int], PortRule]) -> None:
        for other in ports.values():
            if other.proto != rule.proto or other.host_port != rule.host_port:
                continue
            if other == rule:
                return
            if "0.0.0.0" in (other.host_ip, rule.host_ip) or other.host_ip == rule.host_ip:
                raise Conflict(f"host port {rule.host_ip}:{rule.host_port}/{rule.proto} is "
                               f"already published to {other.container_ip}:"
                               f"{other.container_port}")

    def _drop(self, name: str, elem: str) -> list[str]:
        # add-then-delete: deleting an element the kernel lacks would abort the whole
        # transaction; adding it first makes the delete always succeed (nft < 1.0.8 has
        # no `destroy element`).
        key = elem.split(" : ")[0]
        return [f"add element ip {self.table} {name} {{ {elem} }}",
                f"delete element ip {self.table} {name} {{ {key} }}"]

    def _remove_script(self, net: _Network) -> list[str]:
        script: list[str] = []
        for rule in self._ports.values():
            if rule.bridge == net.bridge:
                script += self._drop(*rule.element())
        for name, elem in _elements(net):
            script += self._drop(name, elem)
        return script

    def _model(self) -> dict[str, _Network]:
        if self._nets is None:
            self._load()
        return self._nets

    def _load(self) -> None:
        listing = self._list()
        if listing is None:
            raise FailedPrecondition(f"nftables table ip {self.table} does not exist: "
                                     "call Firewall.ensure() first")
        nets, ports = parse_listing(listing)
        self._nets = {b: _Network(**n) for b, n in nets.items()}
        self._ports = {}
        for p in ports:
            cip = ipaddress.IPv4Address(p["container_ip"])
            owner = next((n.bridge for n in self._nets.values() if cip in n.subnet), "")
            rule = PortRule(bridge=owner, **p)
            self._ports[rule.key] = rule

    def _nft_path(self) -> str:
        if self._nft_resolved is None:
            path = shutil.which(self._nft) or shutil.which(self._nft, path="/usr/sbin:/sbin")
            if path is None:
                raise Unavailable(f"{self._nft!r} not found: install nftables")
            self._nft_resolved = path
        return self._nft_resolved

    def _list(self) -> dict | None:
        proc = subprocess.run([self._nft_path(), "-j", "list", "table", "ip", self.table],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return None
            raise _translate(proc.stderr, f"listing table {self.table}")
        return json.loads(proc.stdout)

    def _run(self, script: str) -> None:
        proc = subprocess.run([self._nft_path(), "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            raise _translate(proc.stderr, f"table {self.table}")


def _port_rule(net: _Network, *, proto: str, host_ip: str, host_port: int,
               container_ip: str, container_port: int) -> PortRule:
    """A validated rule for a port published to ``net``."""
    host_ip = check_port_args(proto, host_ip, host_port, allow_zero=False)
    if not isinstance(container_port, int) or not 1 <= container_port <= 65535:
        raise InvalidArgument(f"invalid container port {container_port!r} (1-65535)")
    try:
        cip = ipaddress.IPv4Address(container_ip)
    except ValueError as exc:
        raise InvalidArgument(f"invalid container IP {container_ip!r}") from exc
    if cip not in net.subnet:
        raise InvalidArgument(f"container IP {cip} is not in {net.bridge}'s subnet "
                              f"{net.subnet}")
    return PortRule(proto=proto, host_ip=host_ip, host_port=host_port, container_ip=str(cip),
                    container_port=container_port, bridge=net.bridge)


def _translate(stderr: str, what: str) -> ConchError:
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    msg = f"nft ({what}): " + ("; ".join(lines) or stderr.strip() or "failed")
    if "File exists" in stderr:
        return AlreadyExists(msg)
    if "No such file or directory" in stderr:
        return NotFound(msg)
    if "Operation not permitted" in stderr or "Permission denied" in stderr:
        return PermissionDenied(msg)
    return FailedPrecondition(msg)


def _set_route_localnet(bridge: str, on: bool) -> None:
    path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    try:
        path.write_text("1" if on else "0")
    except FileNotFoundError as exc:
        if on:
            raise NotFound(f"network interface {bridge!r} (create the bridge before "
                           "add_network)") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"setting {path}: {exc.strerror}") from exc

