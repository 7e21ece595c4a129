"""``NetworkService``: docker's networks over the real kernel — the default ``bridge``,
``host`` and ``none``, user-defined bridges with name resolution, published ports,
connect/disconnect of running containers — and the hooks the container lifecycle calls.

Records and pure rules live in :mod:`conch.engine.network.records`; what is done to one
container (veths, hosts/resolv text, ports, live-state files) in
:mod:`conch.engine.network.sandbox`. Injected (conchd's composition root makes them): a
``Firewall`` (one nftables table: NAT, isolation between networks, published ports), a
``PortReservation`` (holds each published host port so nothing else binds it), an
optional ``SocketLB`` (host processes' connects to published ports rewritten straight to
the container, kept next to every firewall publish/unpublish; see conch.network.socklb) and a
``dns_factory(lookup, client_upstreams) -> DnsServer`` (one listener per user network,
on its gateway; ``client_upstreams`` gives a container's ``--dns`` servers to forward to).

Contract with the container lifecycle (``ContainerService``):

- ``plan(spec)`` at create: the container's networks (name -> {id, aliases, ipv4}),
  validated; NotFound for an unknown network.
- ``setup(c, image)`` at start, in a worker thread, before the OCI config is written:
  the netns file, an endpoint per network, published ports; returns the netns path
  ("" when the runtime should make the namespace: ``none``, or use the host's: ``host``).
  Everything it made is undone when it fails.
- ``etc_files(c, hostname)``: (hosts, resolv.conf) text for a container it set up.
- ``teardown(cid)`` when the task is gone (exit, rm, failed start): idempotent; the
  address goes back to the pool, as docker keeps IP config only while running.

Locking: one ``threading.RLock`` guards records, pools and live state; kernel work that
may take long (veths, netns) runs outside it where nothing shared changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re

from conch.engine.network import sandbox, shared_ports
from conch.engine.network.records import (PREDEFINED, Network, NetworkStore, created_before,
                                          effective_mode, matches, network_event, parse_ipam,
                                          parse_ipam6, parse_until, pool6_key, predefined,
                                          user_network)
from conch.errors import ConchError, Conflict, InvalidArgument, NotFound, PermissionDenied

log = logging.getLogger(__name__)

_OUR_VETH = re.compile(r"^v[0-9a-f]{14}$")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")  # Go's ParseMAC, 6 bytes


class NetworkService:
    def __init__(self, *, data_root: str, exec_root: str, events, firewall, ports, dns_factory,
                 bridge_name: str = "conch0", bridge_cidr: str = "172.17.0.1/16",
                 socklb=None):
        import threading

        self.store = NetworkStore(os.path.join(data_root, "network"))
        self.netns_root = os.path.join(exec_root, "netns")
        self.state_root = os.path.join(exec_root, "network")
        self.events = events
        self.firewall = firewall
        self.ports = ports
        # host processes' connections to published ports, rewritten at connect() time
        # (conch.network.socklb); None or disabled: the firewall's DNAT serves them too
        self.socklb = socklb
        self.dns_factory = dns_factory
        self.dns = None
        self.bridge_name = bridge_name
        self.bridge_cidr = bridge_cidr
        self.sandboxes: dict[str, dict] = {}
        self.containers = None  # ContainerService, bound by the engine (connect, links)
        self._lock = threading.RLock()
        self._alock = asyncio.Lock()
        self._names: dict[str, dict[str, list[str]]] = {}
        self._dns_of: dict[str, dict[str, list[str]]] = {}  # network -> client ip -> --dns
        self._links: dict[tuple[str, str], dict[str, str]] = {}  # (network, client ip) -> alias -> name
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, action: str, net: Network, **attrs) -> None:
        """:func:`network_event` from any thread (setup/teardown run in worker threads):
        handed to the loop's thread, in order."""
        if self.events is None:
            return
        loop = self._loop
        try:
            on_loop = loop is not None and asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop or loop is None:
            network_event(self.events, action, net, **attrs)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(functools.partial(network_event, self.events, action, net, **attrs))

    def bind(self, containers) -> None:
        self.containers = containers

    # -- daemon lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._start_kernel)
        self.dns = self.dns_factory(self.lookup, self.client_upstreams)
        for net in list(self.store.networks.values()):
            if net.dns:
                await self._listen(net)

    async def _listen(self, net: Network) -> None:
        try:
            await self.dns.add_listener(network_id=net.id, address=net.gateway)
        except (ConchError, OSError) as exc:
            log.warning("DNS for network %s on %s:53 not served: %s", net.name, net.gateway, exc)

    def _start_kernel(self) -> None:
        with self._lock:
            self.store.load()
            for net, pool in predefined(self.store.networks, self.bridge_name, self.bridge_cidr):
                self.store.put(net, pool)
            self.firewall.ensure()
            if self.socklb is not None:
                self.socklb.start()
            for net in self.store.networks.values():
                if net.driver == "bridge":
                    self._ensure_kernel(net)
            self.sandboxes = sandbox.load_all(self.state_root)
            for state in self.sandboxes.values():
                for p in state.get("ports", ()):
                    try:  # the rules survived in the kernel; the reservations did not
                        self.ports.reserve(proto=p["proto"], host_ip=p["host_ip"], host_port=p["host_port"])
                    except ConchError as exc:
                        log.warning("port %s/%s of %s not re-reserved: %s", p["host_port"], p["proto"],
                                    state["id"][:12], exc)
            self._reindex()
            shared_ports.resync(self)
            self._sync_socklb()

    def _sync_socklb(self) -> None:
        """The socket LB's map from the live published ports (it starts empty); shared
        ports stay on the nft balancer (the socket LB would pin one replica)."""
        if self.socklb is not None:
            with self._lock:
                ports = [p for s in self.sandboxes.values() for p in s.get("ports", ())
                         if not p.get("group")]
            self.socklb.sync(ports)

    def _ensure_kernel(self, net: Network) -> None:
        from conch.network import netlink

        netlink.ensure_bridge(net.bridge, f"{net.gateway}/{net.subnet.partition('/')[2]}")
        if net.subnet6:
            netlink.ensure_bridge(net.bridge, f"{net.gateway6}/{net.subnet6.partition('/')[2]}")
        self.firewall.add_network(bridge=net.bridge, subnet=net.subnet, internal=net.internal,
                                  masquerade=net.masquerade and not net.internal,
                                  subnet6=net.subnet6)
        if self.socklb is not None:  # the bridge's gateway is a new host address
            self.socklb.refresh_addresses()

    async def reconcile(self, live_ids) -> None:
        """After the containers' reconcile: whatever belongs to no running container goes."""
        await asyncio.to_thread(self._reconcile, set(live_ids))

    def _reconcile(self, live: set[str]) -> None:
        from conch.network import netns

        for cid in [c for c in self.sandboxes if c not in live]:
            self.teardown(cid)
        with self._lock:
            for name in _listdir(self.netns_root):
                if name not in self.sandboxes:
                    netns.remove(os.path.join(self.netns_root, name))
            owned = {(ep["network_id"], ep["ip"]) for s in self.sandboxes.values()
                     for ep in s["endpoints"].values()}
            for nid, pool in self.store.pools.items():
                stale = [ip for ip in pool.allocated if (nid, ip) not in owned]
                for ip in stale:
                    pool.release(ip)
                if stale:
                    try:
                        self.store.save_pool(nid)
                    except OSError as exc:  # a full data root: written with the next change
                        log.warning("network %s: releasing %s: %s", nid[:12], ", ".join(stale), exc)
            wanted = {(p["proto"], p["host_ip"], int(p["host_port"])) for s in self.sandboxes.values()
                      for p in s.get("ports", ())}
            for rule in self.firewall.published():
                key = (rule["proto"], rule["host_ip"], int(rule["host_port"]))
                if key not in wanted:
                    self.firewall.unpublish(proto=key[0], host_ip=key[1], host_port=key[2])
            self._remove_stray_veths()
        self._sync_socklb()

    def _remove_stray_veths(self) -> None:
        from conch.network import netlink

        bridges = {n.bridge for n in self.store.networks.values() if n.bridge}
        live = {ep["veth"] for s in self.sandboxes.values() for ep in s["endpoints"].values()}
        for name in _listdir("/sys/class/net"):
            if not _OUR_VETH.match(name) or name in live:
                continue
            try:
                master = os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
            except OSError:
                continue
            if master in bridges:
                netlink.delete_link(name)

    async def close(self) -> None:
        """Daemon shutdown: running containers keep their networking (and published
        ports: the rules are in the kernel); with none running, everything goes."""
        if self.dns is not None:
            await self.dns.close()
            self.dns = None
        if self.socklb is not None:  # running containers' ports: the nft rules serve them
            self.socklb.close()
        await asyncio.to_thread(self._close_kernel)

    def _close_kernel(self) -> None:
        from conch.network import netlink

        with self._lock:
            if self.sandboxes:
                return
            for net in self.store.networks.values():
                if net.driver == "bridge":
                    try:
                        self.firewall.remove_network(bridge=net.bridge, subnet6=net.subnet6)
                    except ConchError as exc:
                        log.warning("firewall rules of %s: %s", net.name, exc)
                    netlink.delete_link(net.bridge)
            self.firewall.destroy()

    # -- network API ----------------------------------------------------------------------
    def get(self, ref: str) -> Network:
        with self._lock:
            return self.store.find(ref)

    def list(self, filters: dict | None = None) -> list[Network]:
        filters = filters or {}
        with self._lock:
            nets = list(self.store.networks.values())
            used = {ep["network_id"] for s in self.sandboxes.values() for ep in s["endpoints"].values()}
        return [n for n in nets
                if matches(n, filters, dangling=not n.predefined and n.id not in used)
                and not ("dangling" in filters and n.predefined)]

    def endpoints(self, nid: str) -> dict[str, dict]:
        """Running containers on network ``nid``: cid -> {name, endpoint}."""
        with self._lock:
            return {cid: {"name": s.get("name", ""), "endpoint": s["endpoints"][nid]}
                    for cid, s in self.sandboxes.items() if nid in s["endpoints"]}

    async def create(self, name: str, *, driver: str = "bridge", internal: bool = False,
                     attachable: bool = False, ipam_body: dict | None = None,
                     options: dict | None = None, labels: dict | None = None,
                     check_duplicate: bool = True, enable_ipv6: bool = False) -> Network:
        subnet, gateway, ip_range, ipam_options, aux = parse_ipam(ipam_body)
        subnet6, gateway6 = parse_ipam6(ipam_body, enable_ipv6)
        async with self._alock:  # creates and removes one at a time (kernel work awaited)
            with self._lock:
                existing = list(self.store.networks.values())
                if name in PREDEFINED:
                    raise PermissionDenied(f"{name} is a pre-defined network and cannot be created")
                if any(n.name == name for n in existing):
                    # docker refuses a duplicate name whatever CheckDuplicate says (API >= 1.44)
                    raise Conflict(f"network with name {name} already exists")
                net, pool, pool6 = user_network(name, driver or "bridge", internal=internal,
                                                attachable=attachable, options=options or {},
                                                labels=labels or {}, subnet=subnet, gateway=gateway,
                                                ip_range=ip_range, ipam_options=ipam_options,
                                                aux_addresses=aux, existing=existing,
                                                enable_ipv6=enable_ipv6, subnet6=subnet6,
                                                gateway6=gateway6)
            try:
                await asyncio.to_thread(self._ensure_kernel, net)
                with self._lock:
                    self.store.put(net, pool, pool6)
            except BaseException:
                await asyncio.to_thread(self._remove_kernel, net)
                raise
        if net.dns and self.dns is not None:
            await self._listen(net)
        network_event(self.events, "create", net)
        return net

    def _remove_kernel(self, net: Network) -> None:
        from conch.network import netlink

        try:
            self.firewall.remove_network(bridge=net.bridge, subnet6=net.subnet6)
        except ConchError as exc:
            log.warning("firewall rules of %s: %s", net.name, exc)
        netlink.delete_link(net.bridge)

    async def remove(self, ref: str) -> None:
        async with self._alock:
            with self._lock:
                net = self.store.find(ref)
                if net.predefined:
                    raise PermissionDenied(f"{net.name} is a pre-defined network and cannot be removed")
                if self.endpoints(net.id):
                    raise PermissionDenied(f"error while removing network: network {net.name} id "
                                           f"{net.id} has active endpoints")
                self.store.delete(net.id)  # first: a crash after it leaves only kernel leftovers
            if net.dns and self.dns is not None:
                await self.dns.remove_listener(address=net.gateway)
            await asyncio.to_thread(self._remove_kernel, net)
        network_event(self.events, "destroy", net)

    async def prune(self, filters: dict | None = None) -> list[str]:
        import time

        filters = dict(filters or {})
        now = time.time()
        untils = [parse_until(v, now) for v in filters.pop("until", ())]
        removed = []
        for net in self.list(filters):
            if net.predefined or not all(created_before(net, u) for u in untils):
                continue
            try:
                await self.remove(net.id)
                removed.append(net.name)
            except PermissionDenied:
                continue  # in use
        return removed

    # -- container hooks ----------------------------------------------------------------
    def plan(self, spec) -> dict:
        """The networks a new container joins: name -> {id, aliases, ipv4}."""
        mode = effective_mode(spec)
        if mode.startswith("container:"):
            sandbox.check_joining(spec)
            if self.containers is not None:
                self.containers.get(mode.partition(":")[2])  # NotFound: No such container
            return {}
        with self._lock:
            net = self.store.find(mode)
        out = {}
        endpoints = dict(spec.endpoints or {})
        first = endpoints.pop(mode, None) or endpoints.pop(net.name, None) or endpoints.pop("default", None) or {}
        if net.driver != "bridge" and endpoints:
            raise InvalidArgument(f"container cannot be connected to multiple networks with one "
                                  f"of the networks in {net.name} mode")
        out[net.name] = self._endpoint_config(net, first)
        for ref, cfg in endpoints.items():
            other = self.get(ref)
            if other.driver != "bridge":
                raise InvalidArgument(f"container cannot be connected to multiple networks with "
                                      f"one of the networks in {other.name} mode")
            out[other.name] = self._endpoint_config(other, cfg)
        return out

    def _endpoint_config(self, net: Network, cfg: dict) -> dict:
        aliases = list(cfg.get("aliases") or ())
        ipv4 = cfg.get("ipv4") or ""
        if net.predefined and aliases:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if net.predefined and ipv4:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        mac = cfg.get("mac") or ""
        if mac and not _MAC.fullmatch(mac):
            raise InvalidArgument(f"invalid MAC address {mac}")  # moby validateEndpointSettings
        out = {"id": net.id, "aliases": aliases, "ipv4": ipv4}
        # kept as given and shown in inspect (docker's EndpointSettings)
        for key in ("ipv6", "link_local_ips", "mac", "links", "driver_opts"):
            if cfg.get(key):
                out[key] = cfg[key]
        return out

    def setup(self, c, image=None) -> str:
        from conch.engine.network import netsetup

        return netsetup.setup(self, c, image)

    def link_env(self, c) -> list[str]:
        """The ``--link`` variables of ``c``, after :meth:`setup` (see netsetup)."""
        from conch.engine.network import netsetup

        return netsetup.link_env(self, c)

    def teardown(self, cid: str) -> None:
        from conch.engine.network import netsetup

        netsetup.teardown(self, cid)

    # -- shared ports (replicas behind one host port; see shared_ports) -------------------
    async def started(self, cid: str, pid: int, *, has_health: bool) -> None:
        """After a start: a replica without a healthcheck joins its shared ports once it
        listens (one background wait per replica, owned by the caller's task group)."""
        if not has_health and shared_ports.has_shared(self, cid):
            await asyncio.to_thread(shared_ports.wait_listening, self, cid, pid)

    async def resume_shared(self) -> None:
        """After a conchd start: replicas whose readiness was still pending when the old
        conchd died (its wait died with it) are waited for again; health-gated ones take
        their recorded health."""
        waits = []
        for cid in [c for c, s in list(self.sandboxes.items())
                    if any(p.get("group") and not p.get("ready") for p in s.get("ports", ()))]:
            try:
                c = self.containers.get(cid)
            except ConchError:
                continue
            if not c.state.running:
                continue
            if c.state.health is None:
                waits.append(asyncio.to_thread(shared_ports.wait_listening, self, cid, c.state.pid))
            else:
                self.health_changed(cid, c.state.health.status)
        await asyncio.gather(*waits)

    def group_connections(self, group: str) -> int | None:
        """New connections balanced so far over a port group's shared ports (their nft
        counters, summed); None when the group shares no port."""
        with self._lock:
            keys = {(p["proto"], p["host_ip"], int(p["host_port"]))
                    for s in self.sandboxes.values() for p in s.get("ports", ())
                    if p.get("group") == group}
        counts = [self.firewall.shared_connections(proto=k[0], host_ip=k[1], host_port=k[2])
                  for k in keys]
        counts = [n for n in counts if n is not None]
        return sum(counts) if counts else None

    def health_changed(self, cid: str, status: str) -> None:
        """healthy: in the balancer; unhealthy: out of it."""
        if status in ("healthy", "unhealthy"):
            shared_ports.set_ready(self, cid, status == "healthy")

    async def drain(self, cid: str, pid: int | None, timeout: float) -> None:
        """Before a stop: out of the balancer, open connections finished (bounded)."""
        if shared_ports.has_shared(self, cid):
            await asyncio.to_thread(shared_ports.drain, self, cid, pid, timeout)

    def etc_files(self, c, hostname: str) -> tuple[str, str]:
        from conch.engine.network import netsetup

        return netsetup.etc_files(self, c, hostname)

    def settings(self, cid: str) -> dict | None:
        """The live state of a running container (sandbox.py's shape), or None."""
        with self._lock:
            state = self.sandboxes.get(cid)
            return None if state is None else dict(state)

    # -- connect / disconnect -----------------------------------------------------------
    async def connect(self, net_ref: str, container_ref: str, *, aliases=(), ipv4: str = "",
                      settings: dict | None = None) -> None:
        """``settings``: the whole endpoint config (aliases, ipv4, mac, links, …), else
        just ``aliases`` and ``ipv4``."""
        from conch.engine.network import netsetup

        await netsetup.connect(self, net_ref, container_ref, aliases=aliases, ipv4=ipv4,
                               settings=settings)

    async def disconnect(self, net_ref: str, container_ref: str, *, force: bool = False) -> None:
        from conch.engine.network import netsetup

        await netsetup.disconnect(self, net_ref, container_ref, force=force)

    # -- names ----------------------------------------------------------------------------
    def _reindex(self) -> None:
        """Rebuild network id -> name -> addresses (the DNS answers); callers hold the lock."""
        index: dict[str, dict[str, list[str]]] = {}
        for state in self.sandboxes.values():
            for nid, ep in state["endpoints"].items():
                names = index.setdefault(nid, {})
                for n in ep.get("dns_names", ()):
                    names.setdefault(n.lower(), []).append(ep["ip"])
                    if ep.get("ip6"):  # answered as AAAA (conch.network.dnsanswer)
                        names[n.lower()].append(ep["ip6"])
        dns_of: dict[str, dict[str, list[str]]] = {}
        for state in self.sandboxes.values():
            if state.get("dns"):
                for nid, ep in state["endpoints"].items():
                    dns_of.setdefault(nid, {})[ep["ip"]] = list(state["dns"])
        # EndpointSettings.Links ("target:alias"): the alias names the target for this
        # endpoint's container only (libnetwork's per-sandbox link aliases)
        links: dict[tuple[str, str], dict[str, str]] = {}
        for state in self.sandboxes.values():
            for nid, ep in state["endpoints"].items():
                for link in ep.get("links") or ():
                    target, _, alias = link.partition(":")
                    links.setdefault((nid, ep["ip"]), {})[(alias or target).lower()] = target.lower()
        self._names = index  # one assignment: the DNS thread sees old or new
        self._dns_of = dns_of
        self._links = links

    def client_upstreams(self, network_id: str, client_ip: str) -> list[str] | None:
        """The ``--dns`` servers of the container at ``client_ip`` on ``network_id``, or
        None: the embedded DNS forwards that container's other names there (docker)."""
        return self._dns_of.get(network_id, {}).get(client_ip)

    def lookup(self, network_id: str, client_ip: str, qname: str) -> list[str] | None:
        """Addresses for ``qname`` on network ``network_id`` (container name, alias, short
        id), or None: not ours, to be forwarded."""
        name = qname.rstrip(".").lower()
        target = self._links.get((network_id, client_ip), {}).get(name)
        ips = self._names.get(network_id, {}).get(target or name)
        return list(ips) if ips else None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
