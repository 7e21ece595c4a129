"""One container's network sandbox: its netns file, a veth per network, its published
ports, and the text of its /etc/hosts and /etc/resolv.conf.

The kernel side (used by :mod:`conch.engine.network.service`, which holds the records and the
lock):

- :func:`plug`: a veth pair whose host end (``v<id:12><n:02x>``, so that a leak check can
  tell ours) joins the network's bridge and whose other end is created straight inside
  the container's netns as ``eth<n>`` with docker's MAC ``02:42:<ip>``, then configured
  there: the address, up, and for the first network the default route via its gateway
  (not on ``--internal`` networks, which have no way out).
- :func:`unplug`: delete the host end (the kernel deletes its peer).

Live state, one JSON file a running container (:func:`save`/:func:`load_all`)::

    {"id": cid, "netns": path, "order": [network ids],
     "endpoints": {network_id: {network_id, name, endpoint_id, ip, prefixlen, gateway,
                                mac, ifname, veth, aliases, dns_names, links}},
     "ports": [{proto, host_ip, host_port, container_port, container_ip, bridge}]}
"""

from __future__ import annotations

import json
import os
import secrets

from conch.engine.durable import write_json
from conch.errors import AlreadyExists, Conflict, InvalidArgument
from conch.network import netlink

__all__ = ["veth_name", "plug", "unplug", "port_requests", "hosts_text", "resolv_text",
           "save", "delete", "load_all", "new_endpoint", "exposed_keys"]


def check_joining(spec) -> None:
    """``--network container:<name>`` shares that container's stack: what would configure
    a stack of its own is refused with docker's messages."""
    conflicts = [(spec.port_bindings or spec.publish_all, "port publishing"),
                 (spec.hostname, "hostname"), (spec.dns, "dns"),
                 (spec.extra_hosts, "custom host-to-IP mapping"), (spec.links, "links"),
                 (spec.exposed_ports and spec.publish_all, "port exposing")]
    for value, what in conflicts:
        if value:
            raise InvalidArgument(f"conflicting options: {what} and the container type network mode")
    if len(spec.endpoints or {}) > 1:
        raise InvalidArgument("container sharing network namespace with another container "
                              "cannot be connected to networks")


def joined_netns(target_state: dict | None, pid: int) -> str:
    """The namespace a ``container:`` joiner enters: the target's netns file when conch
    made one (bridge networks), else its task's (``none``)."""
    if target_state and target_state.get("netns"):
        return target_state["netns"]
    return f"/proc/{pid}/ns/net"


def veth_name(cid: str, index: int) -> str:
    return f"v{cid[:12]}{index:02x}"


def new_endpoint(net, *, cid: str, ip: str, index: int, aliases, dns_names, links=(),
                 mac: str = "", ip6: str = "") -> dict:
    """``mac``: the endpoint's MacAddress (docker's own ``02:42:<ip>`` when "");
    ``ip6``: its IPv6 address on an EnableIPv6 network ("" otherwise)."""
    v6 = {"ip6": ip6, "prefixlen6": ipaddress_prefix(net.subnet6), "gateway6": net.gateway6} \
        if ip6 else {}
    return {**v6, "network_id": net.id, "name": net.name, "endpoint_id": secrets.token_hex(32),
            "ip": ip, "prefixlen": ipaddress_prefix(net.subnet), "gateway": net.gateway,
            "mac": mac.replace("-", ":").lower() if mac else netlink.mac_for_ip(ip), "ifname": f"eth{index}", "veth": veth_name(cid, index),
            "aliases": list(aliases), "dns_names": list(dns_names), "links": list(links)}


def ipaddress_prefix(subnet: str) -> int:
    return int(subnet.partition("/")[2] or 0)


def plug(netns_path: str, net, ep: dict, *, default_route: bool, ns_socket=None) -> None:
    """Kernel side of one endpoint (:func:`conch.network.netlink.plug_veth`, which
    deletes the pair again when a step fails). ``ns_socket``: a netlink socket already
    open in the namespace (consumed)."""
    kw = dict(host_name=ep["veth"], peer_name=ep["ifname"], bridge=net.bridge,
              netns_path=netns_path, address_cidr=f"{ep['ip']}/{ep['prefixlen']}",
              gateway=net.gateway if default_route and not net.internal else None,
              mac=ep["mac"], hairpin=True)  # hairpin: its own published ports
    if ep.get("ip6"):
        kw.update(address6_cidr=f"{ep['ip6']}/{ep['prefixlen6']}",
                  gateway6=ep["gateway6"] if default_route and not net.internal else None)
    if ep.get("link_local_ips"):
        # IPAMConfig.LinkLocalIPs: extra addresses on the interface (libnetwork adds them)
        kw["extra_cidrs"] = [f"{a}/{64 if ':' in a else 16}" for a in ep["link_local_ips"]]
    try:
        netlink.plug_veth(**kw, ns_socket=ns_socket)
    except AlreadyExists:
        # the previous run's pair, still queued for the kernel's namespace cleanup
        # (see netsetup.teardown): a quick restart reuses the name
        netlink.delete_link(ep["veth"])
        netlink.plug_veth(**kw)


def unplug(ep: dict) -> None:
    netlink.delete_link(ep["veth"])


def port_requests(spec, image_exposed=()) -> list[dict]:
    """What to publish: ``-p`` bindings (HostConfig.PortBindings) and, with ``-P``, every
    exposed port (the image's and ``--expose``) not bound otherwise, on a random port.
    Items: {proto, host_ip, host_port (0 = pick), host_port_end, container_port}."""
    out = []
    bound = set()
    for key, bindings in (spec.port_bindings or {}).items():
        port, proto = _port_key(key)
        bound.add((port, proto))
        for b in bindings or [{}]:
            host_ip = (b or {}).get("HostIp") or "0.0.0.0"
            text = str((b or {}).get("HostPort") or "")
            lo, _, hi = text.partition("-")
            try:
                start = int(lo) if lo else 0
                end = int(hi) if hi else start
            except ValueError as exc:
                raise InvalidArgument(f"invalid host port {text!r} for {key}") from exc
            if not (0 <= start <= end <= 65535):
                raise InvalidArgument(f"invalid host port {text!r} for {key}")
            out.append({"proto": proto, "host_ip": host_ip, "host_port": start,
                        "host_port_end": end, "container_port": port})
    if spec.publish_all:
        for key in list(image_exposed) + list(spec.exposed_ports):
            port, proto = _port_key(key)
            if (port, proto) not in bound:
                bound.add((port, proto))
                out.append({"proto": proto, "host_ip": "0.0.0.0", "host_port": 0,
                            "host_port_end": 0, "container_port": port})
    return out


def exposed_keys(keys) -> list[str]:
    """``"80"``, ``"80/TCP"``, ``"53/udp"`` -> docker's ``"80/tcp"`` form, deduplicated in
    order; a key that is not a port is skipped (it was refused at create already)."""
    out: list[str] = []
    for key in keys:
        try:
            port, proto = _port_key(key)
        except InvalidArgument:
            continue
        if f"{port}/{proto}" not in out:
            out.append(f"{port}/{proto}")
    return out


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"publishing {proto} ports is not supported: use tcp or udp")
    try:
        value = int(port)
    except ValueError as exc:
        raise InvalidArgument(f"invalid container port {key!r}") from exc
    if not 0 < value <= 65535:
        raise InvalidArgument(f"invalid container port {key!r}")
    return value, proto


_LOCAL_HOSTS = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
                "ff02::2\tip6-allrouters"]


def hosts_text(*, hostname: str, domainname: str, own_ips, extra_hosts, links,
               gateway: str = "") -> str:
    """docker's /etc/hosts: localhost lines, ``--add-host`` entries (``host-gateway`` is
    the first network's gateway), ``--link`` entries ``ip alias name``, then the
    container's own addresses with its hostname."""
    lines = list(_LOCAL_HOSTS)
    for entry in extra_hosts:
        host, _, ip = entry.partition(":")
        if ip == "host-gateway":
            if not gateway:
                continue
            ip = gateway
        lines.append(f"{ip.strip('[]')}\t{host}")
    for ip, names in links:
        lines.append(f"{ip}\t{' '.join(names)}")
    full = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for ip in own_ips:
        lines.append(f"{ip}\t{full}")
    return "\n".join(lines) + "\n"


def host_resolv(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of the host."""
    servers, search, options = [], [], []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if not fields or fields[0].startswith(("#", ";")):
                    continue
                if fields[0] == "nameserver" and len(fields) > 1:
                    servers.append(fields[1])
                elif fields[0] in ("search", "domain"):
                    search = fields[1:]
                elif fields[0] == "options":
                    options += fields[1:]
    except OSError:
        pass
    return servers, search, options


def resolv_text(*, dns, dns_search, dns_options, embedded: str = "") -> str:
    """docker's /etc/resolv.conf. On a user-defined network the embedded server (the
    network's gateway here) is the only nameserver and the others it forwards to are
    listed as a comment, as docker writes ``# ExtServers``; otherwise the ``--dns``
    servers, or the host's without its loopback ones (unreachable from the container's
    netns, as docker drops them)."""
    servers, search, options = host_resolv()
    ext = list(dns) or [s for s in servers if not s.startswith("127.") and s != "::1"]
    search = list(dns_search) or search
    options = list(dns_options) or options
    lines = []
    if embedded:
        lines.append(f"nameserver {embedded}")
        if ext:
            lines.append(f"# ExtServers: [{' '.join(ext)}]")
    else:
        lines += [f"nameserver {s}" for s in ext]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


# -- live state files ----------------------------------------------------------------

def _path(root: str, cid: str) -> str:
    return os.path.join(root, f"{cid}.json")


def save(root: str, state: dict) -> None:
    os.makedirs(root, mode=0o700, exist_ok=True)
    write_json(_path(root, state["id"]), state, mode=0o644)


def delete(root: str, cid: str) -> None:
    try:
        os.unlink(_path(root, cid))
    except FileNotFoundError:
        pass


def load_all(root: str) -> dict[str, dict]:
    out = {}
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(root, name)) as f:
                state = json.load(f)
            out[state["id"]] = state
        except (OSError, ValueError, KeyError):
            os.unlink(os.path.join(root, name))
    return out


def taken_error(proto: str, host_ip: str, port: int) -> Conflict:
    return Conflict(f"driver failed programming external connectivity on endpoint: Bind for "
                    f"{host_ip}:{port} failed: port is already allocated ({proto})")
