"""The steps behind :class:`conch.engine.network.service.NetworkService`'s container hooks:
set up and tear down a container's sandbox, write its /etc files, and connect or
disconnect a network while it runs.

Order of :func:`setup` (the live state is registered and written before each kernel
step, so that :func:`teardown` — called on any failure, and by the daemon's reconcile
after a crash — finds and undoes everything made so far):

1. the netns file (``<exec-root>/netns/<id>``, ``lo`` up);
2. per network, in attach order: an address from its pool (persisted), a veth pair,
   the host end on the bridge, ``eth<n>`` configured inside (default route: first one);
3. published ports: reserve the host port (a taken one is a Conflict naming it), then
   the kernel rule to the first network's address (a service replica's fixed port joins
   its service's shared port instead: :mod:`conch.engine.network.shared_ports`);
4. ``--link`` targets resolved to their addresses (for /etc/hosts);
5. the DNS index rebuilt: the container's name, aliases and short id now resolve on
   its user-defined networks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from conch.engine.network import sandbox, shared_ports
from conch.engine.network.records import effective_mode, network_event, pool6_key
from conch.errors import ConchError, Conflict, InvalidArgument, NotFound, PermissionDenied

log = logging.getLogger(__name__)


def _networks_of(svc, c) -> list:
    cfgs = c.networks  # planned at create; {} once disconnected from every network
    out = []
    with svc._lock:
        for name, cfg in cfgs.items():
            try:
                net = svc.store.find(cfg.get("id") or name)
            except NotFound:
                try:
                    net = svc.store.find(name)
                except NotFound as exc:
                    raise NotFound(f"network {name} not found") from exc
            out.append((net, cfg))
    return out


def setup(svc, c, image=None) -> str:
    from conch.network import netns

    mode = effective_mode(c.spec)
    if mode.startswith("container:"):
        return _join(svc, mode.partition(":")[2])
    nets = _networks_of(svc, c)
    if mode in ("host", "none") or not nets or nets[0][0].driver != "bridge":
        return ""
    teardown(svc, c.id)  # what a crash may have left of an earlier run
    path = os.path.join(svc.netns_root, c.id)
    state = {"id": c.id, "name": c.name, "netns": path, "endpoints": {}, "ports": [], "links": []}
    with svc._lock:
        svc.sandboxes[c.id] = state
        sandbox.save(svc.state_root, state)
    sock = None
    try:
        sock = netns.create(path, want_socket=True)  # reused for the first endpoint
        for index, (net, cfg) in enumerate(nets):
            _add_endpoint(svc, c, state, net, cfg, index, default_route=index == 0,
                          ns_socket=sock if index == 0 else None)
        _publish(svc, c, state, image)
        state["links"] = _links(svc, c, state)
        state["dns"] = list(c.spec.dns)  # the embedded DNS forwards this one's queries there
        with svc._lock:
            sandbox.save(svc.state_root, state)
            svc._reindex()
    except BaseException:
        # plug consumes the socket; a failure before it (no free address, a taken
        # --ip) must not leave it open: it would pin the namespace past teardown
        if sock is not None:
            sock.close()
        teardown(svc, c.id)
        raise
    for net, _cfg in nets:  # docker: a "connect" per network when the container starts
        svc.emit("connect", net, container=c.id)
    return path


def _join(svc, ref: str) -> str:
    """``--network container:<ref>``: the running target's namespace, nothing made."""
    target = svc.containers.get(ref)
    if not target.state.running or not target.state.pid:
        raise Conflict(f"cannot join network namespace of a non running container: {target.id}")
    if effective_mode(target.spec) == "host":
        raise InvalidArgument(f"cannot join the network of {target.name}: it uses the host's "
                              "network (run with --network host instead)")
    with svc._lock:
        state = svc.sandboxes.get(target.id)
    return sandbox.joined_netns(state, target.state.pid)


def _add_endpoint(svc, c, state: dict, net, cfg: dict, index: int, *, default_route: bool,
                  ns_socket=None) -> dict:
    aliases = list(cfg.get("aliases") or ())
    with svc._lock:
        pool = svc.store.pools[net.id]
        pool6 = svc.store.pools.get(pool6_key(net.id)) if getattr(net, "subnet6", "") else None
        if cfg.get("ipv6") and pool6 is None:
            raise InvalidArgument(f"invalid IPv6 address {cfg['ipv6']}: network {net.name} "
                                  "has no IPv6 (EnableIPv6)")
        ip = pool.allocate(cfg.get("ipv4") or None)
        try:
            ip6 = pool6.allocate(cfg.get("ipv6") or None) if pool6 is not None else ""
        except BaseException:
            pool.release(ip)
            raise
        svc.store.save_pool(net.id)
        if pool6 is not None:
            svc.store.save_pool(pool6_key(net.id))
        names = [c.name, *aliases, c.id[:12]] if net.dns else []
        ep = sandbox.new_endpoint(net, cid=c.id, ip=ip, index=index, aliases=aliases, dns_names=names,
                                  mac=cfg.get("mac") or "", ip6=ip6)
        if cfg.get("link_local_ips"):
            ep["link_local_ips"] = list(cfg["link_local_ips"])
        if cfg.get("links"):  # per-container DNS aliases (service._reindex)
            ep["links"] = list(cfg["links"])
        state["endpoints"][net.id] = ep
        sandbox.save(svc.state_root, state)
    try:
        sandbox.plug(state["netns"], net, ep, default_route=default_route, ns_socket=ns_socket)
    except BaseException:
        with svc._lock:
            state["endpoints"].pop(net.id, None)
            pool.release(ip)
            svc.store.save_pool(net.id)
            if ep.get("ip6"):
                pool6.release(ep["ip6"])
                svc.store.save_pool(pool6_key(net.id))
            sandbox.save(svc.state_root, state)
        raise
    return ep


def _image_exposed(image) -> list[str]:
    cfg = image.config.config if image is not None and image.config is not None else None
    return list((cfg.exposed_ports or {}).keys()) if cfg is not None else []


def _publish(svc, c, state: dict, image) -> None:
    # docker's NetworkSettings.Ports lists every exposed port ("80/tcp": null when not
    # published): the image's EXPOSE and --expose, kept with the live state
    state["exposed"] = sandbox.exposed_keys([*_image_exposed(image), *c.spec.exposed_ports])
    requests = sandbox.port_requests(c.spec, _image_exposed(image))
    if not requests:
        return
    nid, ep = next(iter(state["endpoints"].items()))
    net = svc.store.networks[nid]
    for r in requests:
        if shared_ports.is_shared(c, r):  # a replica: joins its service's shared port
            shared_ports.reserve(svc, c, r, ep, net, state)
            continue
        # The owner check, the reservation and the claim in our live state are one step:
        # PortReservation.reserve is idempotent for this daemon, so two starts racing for
        # a port must see each other's claim, or the loser's cleanup would release the
        # winner's reservation.
        with svc._lock:
            port = _reserve(svc, r)
            entry = {"proto": r["proto"], "host_ip": r["host_ip"], "host_port": port,
                     "container_port": r["container_port"], "container_ip": ep["ip"],
                     "bridge": net.bridge}
            if ep.get("ip6") and r["host_ip"] in ("0.0.0.0", "::"):
                # docker 28: a port on every address is on "::" too, to the IPv6 address
                entry["container_ip6"] = ep["ip6"]
            state["ports"].append(entry)
        try:
            svc.firewall.publish(bridge=net.bridge, proto=r["proto"], host_ip=r["host_ip"],
                                 host_port=port, container_ip=ep["ip"],
                                 container_port=r["container_port"])
            if entry.get("container_ip6"):
                try:
                    svc.firewall.v6.publish(proto=r["proto"], host_port=port,
                                            container_ip6=ep["ip6"],
                                            container_port=r["container_port"])
                except BaseException:
                    svc.firewall.unpublish(proto=r["proto"], host_ip=r["host_ip"], host_port=port)
                    raise
        except BaseException:
            with svc._lock:
                state["ports"].remove(entry)
            svc.ports.release(proto=r["proto"], host_ip=r["host_ip"], host_port=port)
            raise
        if svc.socklb is not None:  # host processes' connects: straight to the container
            svc.socklb.publish([entry])
        with svc._lock:  # a crash before this line leaves a rule the reconcile removes
            sandbox.save(svc.state_root, state)


def _owner(svc, proto: str, host_ip: str, port: int) -> str | None:
    """The container already publishing this host port (0.0.0.0 overlaps every address)."""
    with svc._lock:
        for cid, s in svc.sandboxes.items():
            for p in s.get("ports", ()):
                if p["proto"] == proto and int(p["host_port"]) == port and (
                        "0.0.0.0" in (p["host_ip"], host_ip) or p["host_ip"] == host_ip):
                    return cid
    return None


def _reserve(svc, r: dict) -> int:
    """The host port: the one asked for, the first free one of a range, or any (0)."""
    first, last = r["host_port"], r["host_port_end"]
    err: ConchError | None = None
    for port in range(first, last + 1):
        if port and _owner(svc, r["proto"], r["host_ip"], port):
            err = Conflict("published by another container")
            continue
        try:
            return svc.ports.reserve(proto=r["proto"], host_ip=r["host_ip"], host_port=port)
        except Conflict as exc:
            err = exc
    assert err is not None
    if first == last:
        raise Conflict(f"driver failed programming external connectivity: Bind for "
                       f"{r['host_ip']}:{first} failed: port is already allocated ({err})") from err
    raise Conflict(f"no free host port in {first}-{last} for {r['container_port']}/{r['proto']}") from err


def _links(svc, c, state: dict) -> list:
    """``--link name[:alias]``: (address, [alias, short id, name]) of each target, on a
    network this container shares with it (docker writes these into /etc/hosts)."""
    out = []
    for link in c.spec.links:
        name, alias = _link_parts(link)
        target = svc.containers.get(name)
        with svc._lock:
            other = svc.sandboxes.get(target.id)
        shared = [ep for nid, ep in (other or {}).get("endpoints", {}).items() if nid in state["endpoints"]]
        if not shared:
            raise InvalidArgument(f"Cannot link to /{target.name}, as it does not belong to the "
                                  f"default network" if other else
                                  f"Cannot link to a non running container: /{target.name} AS /{c.name}/{alias}")
        names = list(dict.fromkeys([alias, target.id[:12], target.name]))
        out.append([shared[0]["ip"], names])
    return out


def _link_parts(link: str) -> tuple[str, str]:
    """``--link name[:alias]`` (docker also takes ``/name:/parent/alias``): (name, alias)."""
    name, _, alias = link.lstrip("/").partition(":")
    return name, alias.lstrip("/").rpartition("/")[2] or name


def link_env(svc, c) -> list[str]:
    """docker's legacy link variables for each ``--link`` of running ``c`` (moby
    daemon/links/links.go ``ToEnv``): ``DB_NAME=/web/db``, ``DB_PORT=tcp://IP:80`` for the
    lowest exposed port, ``DB_PORT_80_TCP{,_ADDR,_PORT,_PROTO}`` for each, and
    ``DB_ENV_<k>=<v>`` for the target's environment but HOME and PATH. Docker puts them
    in the environment before the container's own variables."""
    with svc._lock:
        state = svc.sandboxes.get(c.id) or {}
    env: list[str] = []
    for (ip, _names), link in zip(state.get("links") or (), c.spec.links):
        name, alias = _link_parts(link)
        try:
            target = svc.containers.get(name)
        except NotFound:
            continue
        prefix = alias.upper().replace("-", "_")
        env.append(f"{prefix}_NAME=/{c.name}/{alias}")
        with svc._lock:
            exposed = list((svc.sandboxes.get(target.id) or {}).get("exposed") or ())
        ports = sorted((int(k.partition("/")[0]), k.partition("/")[2] or "tcp") for k in exposed)
        if ports:
            env.append(f"{prefix}_PORT={ports[0][1]}://{ip}:{ports[0][0]}")
        for port, proto in ports:
            key = f"{prefix}_PORT_{port}_{proto.upper()}"
            env += [f"{key}={proto}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PORT={port}",
                    f"{key}_PROTO={proto}"]
        for item in _config_env(svc, target):
            k, _, v = item.partition("=")
            if k not in ("HOME", "PATH"):
                env.append(f"{prefix}_ENV_{k}={v}")
    return env


def _config_env(svc, target) -> list[str]:
    """The target's Config.Env as docker keeps it: the image's, then its own -e."""
    try:
        image = svc.containers.images.get(target.image_id)
        base = list(image.config.config.env or ()) if image.config.config is not None else []
    except ConchError:
        base = []
    merged: dict[str, str] = {}
    for item in base + list(target.spec.env):
        k, sep, v = item.partition("=")
        if sep:
            merged[k] = v
    return [f"{k}={v}" for k, v in merged.items()]


def teardown(svc, cid: str) -> None:
    """Undo :func:`setup` (or what a crash left of it): idempotent."""
    from conch.network import netns

    with svc._lock:
        state = svc.sandboxes.pop(cid, None)
        if state is not None:
            svc._reindex()
    if state is not None:
        for p in state.get("ports", ()):
            _unpublish(svc, p)
    # The veths are not deleted one by one (~25 ms each in the kernel, on the path of
    # every `run --rm`): with the task gone, unbinding the netns frees it, and the
    # kernel's namespace cleanup deletes the veth pairs in the background. Only when the
    # unbind fails are they deleted here.
    try:
        netns.remove(os.path.join(svc.netns_root, cid))
        unplug = False
    except (ConchError, OSError) as exc:
        log.warning("removing the netns of %s: %s", cid[:12], exc)
        unplug = True
    if state is not None:
        for nid, ep in state.get("endpoints", {}).items():
            _drop_endpoint(svc, nid, ep, unplug=unplug)
            net = svc.store.networks.get(nid)
            if net is not None:  # docker: a "disconnect" per network when it stops
                svc.emit("disconnect", net, container=cid)
    sandbox.delete(svc.state_root, cid)


def _unpublish(svc, p: dict) -> None:
    if p.get("group"):
        shared_ports.leave(svc, p)
        return
    if svc.socklb is not None:  # first: new connects take the nft path until it goes too
        svc.socklb.unpublish([p])
    try:
        svc.firewall.unpublish(proto=p["proto"], host_ip=p["host_ip"], host_port=p["host_port"])
        if p.get("container_ip6"):
            svc.firewall.v6.unpublish(proto=p["proto"], host_port=p["host_port"])
    except ConchError as exc:
        log.warning("unpublishing %s:%s/%s: %s", p["host_ip"], p["host_port"], p["proto"], exc)
    try:
        svc.ports.release(proto=p["proto"], host_ip=p["host_ip"], host_port=p["host_port"])
    except ConchError as exc:
        log.warning("releasing %s:%s/%s: %s", p["host_ip"], p["host_port"], p["proto"], exc)


def _drop_endpoint(svc, nid: str, ep: dict, *, unplug: bool = True) -> None:
    if unplug:
        try:
            sandbox.unplug(ep)
        except ConchError as exc:
            log.warning("removing %s: %s", ep.get("veth"), exc)
    with svc._lock:
        pool = svc.store.pools.get(nid)
        if pool is not None:
            try:
                pool.release(ep["ip"])
                svc.store.save_pool(nid)
            # OSError: a full data root; the release holds in memory and is written with
            # the pool's next change (a restart before that keeps the address taken)
            except (ConchError, OSError) as exc:
                log.warning("releasing %s: %s", ep.get("ip"), exc)
        pool6 = svc.store.pools.get(pool6_key(nid))
        if pool6 is not None and ep.get("ip6"):
            try:
                pool6.release(ep["ip6"])
                svc.store.save_pool(pool6_key(nid))
            except (ConchError, OSError) as exc:
                log.warning("releasing %s: %s", ep.get("ip6"), exc)


def etc_files(svc, c, hostname: str) -> tuple[str, str]:
    """(/etc/hosts, /etc/resolv.conf) text for ``c`` as set up now; a ``container:``
    joiner gets its target's (docker shares the files with the stack)."""
    mode = effective_mode(c.spec)
    if mode.startswith("container:"):
        d = svc.containers.paths.dir(svc.containers.get(mode.partition(":")[2]).id)
        texts = []
        for name in ("hosts", "resolv.conf"):
            try:
                with open(os.path.join(d, name)) as f:
                    texts.append(f.read())
            except OSError:
                texts.append("")
        return texts[0], texts[1]
    state = svc.settings(c.id) or {}
    eps = list(state.get("endpoints", {}).values())
    # the embedded DNS of the first user-defined network, as docker's resolver serves
    # a container once it joins one (connect included)
    dns_nets = [n for n in (svc.store.networks.get(ep["network_id"]) for ep in eps) if n and n.dns]
    hosts = sandbox.hosts_text(hostname=hostname, domainname=c.spec.domainname,
                               own_ips=[ip for ep in eps for ip in (ep["ip"], ep.get("ip6")) if ip],
                               extra_hosts=c.spec.extra_hosts,
                               links=state.get("links", ()), gateway=eps[0]["gateway"] if eps else "")
    resolv = sandbox.resolv_text(dns=c.spec.dns, dns_search=c.spec.dns_search,
                                 dns_options=c.spec.dns_options,
                                 embedded=dns_nets[0].gateway if dns_nets else "")
    return hosts, resolv


def _rewrite_etc(svc, c) -> None:
    """After connect/disconnect, in place (same inode): the files are bind-mounted into
    the running container."""
    texts = etc_files(svc, c, c.spec.hostname or c.id[:12])
    d = svc.containers.paths.dir(c.id)
    for name, text in zip(("hosts", "resolv.conf"), texts):
        path = os.path.join(d, name)
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write(text)


def drop_link(svc, c, index: int) -> None:
    """``docker rm --link``: running ``c`` (already without the link in its spec) loses
    entry ``index`` of its sandbox's links, and its /etc/hosts is written again."""
    with svc._lock:
        state = svc.sandboxes.get(c.id)
        if state is None or index >= len(state.get("links") or ()):
            return
        state["links"].pop(index)
        sandbox.save(svc.state_root, state)
    _rewrite_etc(svc, c)


# -- connect / disconnect -----------------------------------------------------------------

async def connect(svc, net_ref: str, container_ref: str, *, aliases=(), ipv4: str = "",
                  settings: dict | None = None) -> None:
    cs = svc.containers
    net = svc.get(net_ref)
    c = cs.get(container_ref)
    async with cs._lock(c.id):
        c = cs.get(c.id)
        mode = effective_mode(c.spec)
        if net.driver == "host" or mode == "host":
            raise PermissionDenied("container cannot be disconnected from host network or "
                                   "connected to host network")
        if net.driver == "null" or mode == "none":
            raise PermissionDenied("container cannot be connected to multiple networks with one "
                                   "of the networks in private (none) mode")
        networks = dict(c.networks)
        if net.name in networks:
            raise PermissionDenied(f"endpoint with name {c.name} already exists in network {net.name}")
        cfg = svc._endpoint_config(net, settings if settings is not None else
                                   {"aliases": list(aliases or ()), "ipv4": ipv4})
        if c.state.running:
            await asyncio.to_thread(_attach_live, svc, c, net, cfg)
        networks[net.name] = cfg
        cs._save(dataclasses.replace(c, networks=networks))
    network_event(svc.events, "connect", net, container=c.id)


def _attach_live(svc, c, net, cfg: dict) -> None:
    with svc._lock:
        state = svc.sandboxes.get(c.id)
        if state is None:
            raise Conflict(f"container {c.id} has no network sandbox (is it running?)")
        used = {int(ep["ifname"][3:]) for ep in state["endpoints"].values()}
        index = min(set(range(len(used) + 1)) - used)
    _add_endpoint(svc, c, state, net, cfg, index, default_route=False)
    with svc._lock:
        svc._reindex()
    _rewrite_etc(svc, c)


async def disconnect(svc, net_ref: str, container_ref: str, *, force: bool = False) -> None:
    cs = svc.containers
    c = cs.get(container_ref)
    net = svc.get(net_ref)
    async with cs._lock(c.id):
        c = cs.get(c.id)
        networks = dict(c.networks)
        key = next((k for k, v in networks.items() if v.get("id") == net.id or k == net.name), None)
        if key is None:
            raise PermissionDenied(f"container {c.id} is not connected to network {net.name}")
        if net.driver == "host":
            raise PermissionDenied("container cannot be disconnected from host network or "
                                   "connected to host network")
        if c.state.running:
            await asyncio.to_thread(_detach_live, svc, c, net)
        del networks[key]
        cs._save(dataclasses.replace(c, networks=networks))
    network_event(svc.events, "disconnect", net, container=c.id)


def _detach_live(svc, c, net) -> None:
    with svc._lock:
        state = svc.sandboxes.get(c.id)
        ep = state["endpoints"].pop(net.id, None) if state else None
        ports = [p for p in state.get("ports", ()) if p.get("bridge") == net.bridge] if state else []
        if state is not None:
            state["ports"] = [p for p in state["ports"] if p not in ports]
            sandbox.save(svc.state_root, state)
            svc._reindex()
    for p in ports:
        _unpublish(svc, p)
    if ep is not None:
        _drop_endpoint(svc, net.id, ep)
        _rewrite_etc(svc, c)
