"""Network records: docker's ``bridge``, ``host`` and ``null`` networks as stored, their
IPAM pools, and the pure rules around them (names, overlaps, filters, defaults).
The service using them is :mod:`conch.engine.network.service`; it and
:mod:`~conch.engine.network.netsetup` share from here :func:`effective_mode` and
:func:`network_event` (docker's network events).

Kernel work is done by :mod:`conch.network` (bridges and veths over netlink, netns
files, IPAM pools), :mod:`conch.network.firewall` (one nftables table per daemon: NAT,
isolation, published ports, all in the kernel) and :mod:`conch.network.dns` (one
listener per user-defined network on its gateway, port 53). The daemon never enters a
namespace. What happens to one container (netns, veths, ports, /etc/hosts) is
:mod:`conch.engine.network.sandbox`'s job; this module owns the networks.

On disk (crash-safe: temp file, fsync, ``os.replace``)::

    <data-root>/network/<id>/network.json   the record (Network, as JSON)
    <data-root>/network/<id>/ipam.json      the Pool (bridge networks)
    <exec-root>/netns/<container-id>        a running container's netns (sandbox.py)
    <exec-root>/network/<container-id>.json its live endpoints and ports (sandbox.py)

Default networks: ``bridge`` (device and subnet from conchd's ``--bridge-name`` and
``--bip``; no DNS, ``--link`` only), ``host`` and ``none``; they are made at the first
start, kept, and cannot be removed. Lifecycle: :meth:`NetworkService.start` (records,
bridges, firewall table, DNS listeners, sandboxes found again) before the containers'
reconcile, :meth:`reconcile` after it (stale sandboxes, netns files, addresses and rules
of containers no longer running go), :meth:`close` at shutdown (everything kernel-side
goes when no container runs; otherwise all is left for the running ones).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field, replace

from conch.engine.model import now_rfc3339
from conch.engine.durable import write_atomic
from conch.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, Unavailable
from conch.network import ipam

log = logging.getLogger(__name__)

DRIVERS = ("bridge", "host", "null")
PREDEFINED = ("bridge", "host", "none")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    id: str
    name: str
    driver: str                  # bridge | host | null
    created: str
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    bridge: str = ""             # the bridge device (bridge driver)
    internal: bool = False
    attachable: bool = False
    predefined: bool = False     # bridge, host, none: made by the daemon, never removed
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    ipam_options: dict | None = None  # IPAM.Options as given (None: not given, shown null)
    aux_addresses: dict = field(default_factory=dict)  # IPAM.Config's AuxiliaryAddresses (reserved)
    enable_ipv6: bool = False    # EnableIPv6: an IPv6 subnet too (its pool is pools[id + "/6"])
    subnet6: str = ""
    gateway6: str = ""

    @property
    def dns(self) -> bool:
        """Embedded DNS: user-defined bridge networks only, as docker."""
        return self.driver == "bridge" and not self.predefined

    @property
    def masquerade(self) -> bool:
        return self.options.get(MASQUERADE_OPTION, "true") != "false"


def host_routes() -> list[str]:
    """The host's IPv4 routes (destination/prefix), from /proc/net/route."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                dst = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
                mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
                out.append(str(ipaddress.IPv4Network(f"{dst}/{mask}", strict=False)))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return out


class NetworkStore:
    """Network records and their IPAM pools under ``<data-root>/network``. Callers hold
    the service's lock around changes."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.networks: dict[str, Network] = {}
        self.pools: dict[str, ipam.Pool] = {}

    def load(self) -> None:
        for nid in os.listdir(self.root):
            path = os.path.join(self.root, nid, "network.json")
            try:
                with open(path) as f:
                    net = Network(**json.load(f))
            except FileNotFoundError:
                shutil.rmtree(os.path.join(self.root, nid), ignore_errors=True)  # half-made
                continue
            except (ValueError, TypeError) as exc:
                log.warning("network record %s unreadable, skipped: %s", path, exc)
                continue
            self.networks[net.id] = net
            if net.subnet:
                try:
                    self.pools[net.id] = ipam.load_state(self._ipam(net.id))
                except NotFound:
                    self.pools[net.id] = ipam.Pool(net.subnet, net.gateway, net.ip_range or None)
            if net.subnet6:
                try:
                    self.pools[pool6_key(net.id)] = ipam.load_state(self._ipam(pool6_key(net.id)))
                except NotFound:
                    self.pools[pool6_key(net.id)] = ipam.Pool(net.subnet6, net.gateway6)

    def _ipam(self, key: str) -> str:
        """A pool's state file: ``<id>/ipam.json``, the IPv6 one ``<id>/ipam6.json``."""
        nid, _, v6 = key.partition("/")
        return os.path.join(self.root, nid, "ipam6.json" if v6 else "ipam.json")

    def put(self, net: Network, pool: ipam.Pool | None = None,
            pool6: ipam.Pool | None = None) -> None:
        d = os.path.join(self.root, net.id)
        os.makedirs(d, mode=0o700, exist_ok=True)
        if pool is not None:
            ipam.save_state(self._ipam(net.id), pool)
            self.pools[net.id] = pool
        if pool6 is not None:
            ipam.save_state(self._ipam(pool6_key(net.id)), pool6)
            self.pools[pool6_key(net.id)] = pool6
        # the record last: a directory without it is a create that did not finish
        write_atomic(os.path.join(d, "network.json"), json.dumps(asdict(net)).encode())
        self.networks[net.id] = net

    def save_pool(self, nid: str) -> None:
        ipam.save_state(self._ipam(nid), self.pools[nid])

    def delete(self, nid: str) -> None:
        try:
            os.unlink(os.path.join(self.root, nid, "network.json"))
        except FileNotFoundError:
            pass
        shutil.rmtree(os.path.join(self.root, nid), ignore_errors=True)
        self.networks.pop(nid, None)
        self.pools.pop(nid, None)
        self.pools.pop(pool6_key(nid), None)

    def find(self, ref: str) -> Network:
        """docker's order: full id, exact name, then a unique id prefix."""
        if ref in self.networks:
            return self.networks[ref]
        for net in self.networks.values():
            if net.name == ref:
                return net
        matches = [n for n in self.networks.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")


def validate_name(name: str) -> str:
    """libnetwork's rule: any name but an empty or all-blank one (spaces included)."""
    if not name or not name.strip():
        raise InvalidArgument(f'invalid name: "{name}"')
    return name


def pool6_key(nid: str) -> str:
    """The key of a network's IPv6 pool in ``NetworkStore.pools``."""
    return nid + "/6"


def parse_ipam6(ipam_body: dict | None, enable_ipv6: bool) -> tuple[str, str]:
    """The IPv6 entry of POST /networks/create's IPAM.Config: (subnet, gateway), "" when
    none was given; one without EnableIPv6 is libnetwork's error."""
    configs = [c for c in (ipam_body or {}).get("Config") or () if ":" in (c.get("Subnet") or "")]
    if not configs:
        return "", ""
    if not enable_ipv6:
        raise InvalidArgument("non-overlapping IPv6 address pools are only supported with "
                              "EnableIPv6: add --ipv6")
    if len(configs) > 1:
        raise InvalidArgument("only one IPv6 subnet per network is supported")
    return configs[0]["Subnet"], configs[0].get("Gateway") or ""


def ula_subnet(nid: str, existing) -> str:
    """An IPv6 /64 for a network given none: a unique-local prefix (fd00::/8) taken from
    its ID, the next one when another network has it (docker 28 picks a ULA /64 too)."""
    taken = {ipaddress.ip_network(n.subnet6) for n in existing if getattr(n, "subnet6", "")}
    for i in range(0, len(nid) - 10, 2):
        h = nid[i:i + 10]
        net = ipaddress.ip_network(f"fd{h[0:2]}:{h[2:6]}:{h[6:10]}::/64")
        if net not in taken:
            return str(net)
    raise Unavailable("no free IPv6 unique-local subnet")


def parse_ipam(ipam_body: dict | None) -> tuple[str, str, str, dict | None, dict]:
    """POST /networks/create's IPAM -> (subnet, gateway, ip_range, options or None when not
    given, auxiliary addresses) of its IPv4 entry (the IPv6 one: :func:`parse_ipam6`)."""
    ipam_body = ipam_body or {}
    driver = ipam_body.get("Driver") or "default"
    if driver != "default":
        raise InvalidArgument(f"IPAM driver {driver!r} is not supported: use default")
    configs = ipam_body.get("Config") or []
    v4 = [c for c in configs if ":" not in (c.get("Subnet") or "")]
    if len(v4) > 1:
        raise InvalidArgument("only one IPv4 subnet per network is supported")
    cfg = v4[0] if v4 else {}
    subnet, gateway, ip_range = cfg.get("Subnet") or "", cfg.get("Gateway") or "", cfg.get("IPRange") or ""
    if (gateway or ip_range) and not subnet:
        raise InvalidArgument("a gateway or ip range needs a subnet (--subnet)")
    aux = dict(cfg.get("AuxiliaryAddresses") or {})
    if aux and not subnet:
        raise InvalidArgument("auxiliary addresses need a subnet (--subnet)")
    options = ipam_body.get("Options")
    return subnet, gateway, ip_range, (dict(options) if options is not None else None), aux


def check_overlap(subnet: str, others) -> None:
    new = ipaddress.ip_network(subnet)
    for other in others:
        if other.subnet and new.overlaps(ipaddress.ip_network(other.subnet)):
            # libnetwork's text (a Forbidden error there too)
            raise PermissionDenied(f"invalid pool request: Pool overlaps with other one on this "
                                   f"address space ({subnet} overlaps {other.subnet} of network {other.name})")


def new_id() -> str:
    return secrets.token_hex(32)


def user_network(name: str, driver: str, *, internal: bool, attachable: bool, options: dict,
                 labels: dict, subnet: str, gateway: str, ip_range: str, ipam_options: dict | None,
                 existing, aux_addresses: dict | None = None, enable_ipv6: bool = False,
                 subnet6: str = "", gateway6: str = "") -> tuple[Network, ipam.Pool | None, ipam.Pool | None]:
    """A new record (and pool) for ``network create``, validated against ``existing``."""
    validate_name(name)
    if driver not in DRIVERS:
        raise NotFound(f'plugin "{driver}" not found')
    if driver != "bridge":
        # docker: only one network of the host and null drivers may exist
        raise PermissionDenied(f'{driver} network can only have a single instance ("{driver}" exists)')
    nid = new_id()
    bridge = options.get(BRIDGE_NAME_OPTION) or f"br-{nid[:12]}"
    if len(bridge) > 15:
        raise InvalidArgument(f"bridge name {bridge!r} is longer than 15 characters")
    for other in existing:
        if other.bridge == bridge:
            raise Conflict(f"bridge name {bridge} is used by network {other.name}")
    if not subnet:
        subnet = ipam.default_subnet_for([n.subnet for n in existing if n.subnet] + host_routes())
    check_overlap(subnet, existing)
    pool = ipam.Pool(subnet, gateway or None, ip_range or None)
    for host, addr in (aux_addresses or {}).items():
        # libnetwork reserves them: no container is given one
        if ipaddress.ip_address(addr) not in pool.subnet:
            raise InvalidArgument(f"auxiliary address: ({host}:{addr}) must belong to the "
                                  f"master pool: {pool.subnet}")
        pool.allocate(addr)
    net = Network(id=nid, name=name, driver=driver, created=now_rfc3339(), subnet=str(pool.subnet),
                  gateway=str(pool.gateway), ip_range=ip_range, bridge=bridge, internal=internal,
                  attachable=attachable, options=dict(options), labels=dict(labels),
                  ipam_options=dict(ipam_options) if ipam_options is not None else None,
                  aux_addresses=dict(aux_addresses or {}))
    pool6 = None
    if enable_ipv6:
        subnet6 = subnet6 or ula_subnet(nid, existing)
        new6 = ipaddress.ip_network(subnet6, strict=False)
        for other in existing:
            if getattr(other, "subnet6", "") and new6.overlaps(ipaddress.ip_network(other.subnet6)):
                raise PermissionDenied(f"invalid pool request: Pool overlaps with other one on this "
                                       f"address space ({subnet6} overlaps {other.subnet6} of "
                                       f"network {other.name})")
        pool6 = ipam.Pool(subnet6, gateway6 or None)
        net = replace(net, enable_ipv6=True, subnet6=str(pool6.subnet), gateway6=str(pool6.gateway))
    return net, pool, pool6


def predefined(existing: dict[str, Network], bridge_name: str, bridge_cidr: str
               ) -> list[tuple[Network, ipam.Pool | None]]:
    """The records of ``bridge``, ``host`` and ``none`` to (re)write: missing ones, and the
    default bridge when conchd's flags changed its device or subnet."""
    by_name = {n.name: n for n in existing.values() if n.predefined}
    out = []
    iface = ipaddress.ip_interface(bridge_cidr)
    subnet, gateway = str(iface.network), str(iface.ip)
    old = by_name.get("bridge")
    if old is None or old.bridge != bridge_name or old.subnet != subnet or old.gateway != gateway:
        net = Network(id=old.id if old else new_id(), name="bridge", driver="bridge",
                      created=old.created if old else now_rfc3339(), subnet=subnet, gateway=gateway,
                      bridge=bridge_name, predefined=True,
                      options={BRIDGE_NAME_OPTION: bridge_name,
                               "com.docker.network.bridge.default_bridge": "true",
                               MASQUERADE_OPTION: "true",
                               "com.docker.network.bridge.enable_icc": "true",
                               "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                               "com.docker.network.driver.mtu": "1500"})
        out.append((net, ipam.Pool(subnet, gateway)))
    for name, driver in (("host", "host"), ("none", "null")):
        if name not in by_name:
            out.append((Network(id=new_id(), name=name, driver=driver, created=now_rfc3339(),
                                predefined=True), None))
    return out


def matches(net: Network, filters: dict, dangling: bool) -> bool:
    """docker's network filters: name (substring), id (prefix), driver, label, type, dangling."""
    if "name" in filters and not any(v in net.name for v in filters["name"]):
        return False
    if "id" in filters and not any(net.id.startswith(v) for v in filters["id"]):
        return False
    if "driver" in filters and net.driver not in filters["driver"]:
        return False
    if "type" in filters:
        kinds = set(filters["type"])
        if not kinds <= {"custom", "builtin"}:
            raise InvalidArgument(f"invalid filter: 'type'='{','.join(sorted(kinds))}'")
        if ("builtin" if net.predefined else "custom") not in kinds:
            return False
    if "label" in filters:
        for want in filters["label"]:
            key, eq, value = want.partition("=")
            if key not in net.labels or (eq and net.labels[key] != value):
                return False
    for unwanted in filters.get("label!", ()):
        key, eq, value = unwanted.partition("=")
        if key in net.labels and (not eq or net.labels[key] == value):
            return False
    if "dangling" in filters:
        want = {v.lower() in ("1", "true") for v in filters["dangling"]}
        if dangling not in want:
            return False
    return True


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_until(value: str, now: float) -> float:
    """docker's ``until`` filter value as a unix time: ``<seconds>[.<frac>]``, an
    RFC 3339 date/time (``2006-01-02``, ``2006-01-02T15:04:05[.frac][Z|±hh:mm]``), or a
    Go duration (``10m``, ``1h30m``) meaning that long before ``now``."""
    import datetime as dt

    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text and _DURATION.sub("", text) == "":
        return now - sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid filter 'until={value}': not a timestamp, date or "
                              "duration") from None
    if when.tzinfo is None:  # docker reads a zone-less time as the daemon's local time
        when = when.astimezone()
    return when.timestamp()


def created_before(net: Network, until: float) -> bool:
    """Was ``net`` created before ``until`` (a unix time)? Pre-defined ones always are."""
    import datetime as dt

    try:
        # Python >= 3.11 reads any number of fractional digits (beyond 6 cut)
        created = dt.datetime.fromisoformat(net.created.replace("Z", "+00:00"))
    except ValueError:
        return True
    return created.timestamp() < until


def network_event(events, action: str, net: Network, **attrs) -> None:
    """Docker's network event: actor attributes name, type (the driver), container.
    Call it on the event loop's thread (the bus is not thread-safe); from a worker
    thread use :meth:`NetworkService.emit`."""
    import time

    from conch.engine.events import Event

    attributes = {"name": net.name, "type": net.driver, **attrs}
    events.publish_event(Event(type="network", action=action, actor_id=net.id,
                               attributes=attributes, time_nano=time.time_ns()))


def effective_mode(spec) -> str:
    mode = spec.network_mode or "default"
    return "bridge" if mode == "default" else mode


__all__ = ["Network", "NetworkStore", "DRIVERS", "PREDEFINED", "user_network", "predefined",
           "matches", "parse_ipam", "parse_ipam6", "pool6_key", "check_overlap", "host_routes", "validate_name", "parse_until",
           "created_before", "network_event", "effective_mode"]
