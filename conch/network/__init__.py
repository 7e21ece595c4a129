"""Container networking: IPAM, persistent network namespaces, bridge/veth plumbing over
netlink, NAT/isolation/published ports in nftables, and the embedded DNS server.

Contract:

- :mod:`.ipam` (pure): ``Pool(subnet, gateway=None, ip_range=None)`` hands out and takes
  back addresses (``allocate(hint=None)``, ``release``, ``is_allocated``), reserving the
  network, broadcast and gateway addresses as dockerd does; ``to_state``/``from_state``
  and ``save_state``/``load_state`` persist it; ``default_subnet_for(existing)`` picks
  dockerd's next default pool (172.17.0.0/16, 172.18.0.0/16, ..., then 192.168.x.0/20)
  that overlaps none of the host's routes / other networks the caller passes in.
- :mod:`.netns`: ``create(path)`` / ``remove(path)`` a network namespace bound at a path
  (like ``ip netns add/del``), done by exec'd util-linux tools: the daemon itself never
  enters a namespace.
- :mod:`.netlink`: ``ensure_bridge``, ``delete_link``, ``create_veth`` (peer created
  straight inside the namespace), ``attach_to_bridge``, ``configure`` (rename to eth0,
  docker MAC ``02:42:<ipv4 bytes>``, address, up, default route), ``plug_veth`` (all of
  that in one go), ``link_exists``, ``list_links``, ``mac_for_ip``. Work inside a
  namespace goes through a netlink socket opened there by an exec'd helper.
- :mod:`.rtnl`: ``Rtnl``, our standard-library rtnetlink client (requests, acks, dumps,
  the few link/address/route messages above); errors are ``NetlinkError`` (errno).
- :mod:`.firewall`: ``Firewall(table)`` owns one nftables ``ip`` table per daemon:
  ``ensure``/``destroy``, ``add_network``/``remove_network`` (isolation, forwarding,
  masquerade), ``publish``/``unpublish`` (+ ``_many``: one transaction) DNAT in
  prerouting and output, ``networks``/``published`` read back from the kernel for
  reconcile. Each change is one ``nft -f -`` transaction; state is only set/map
  elements (parsed back by :mod:`.firewall_state`).
- :mod:`.ports`: ``PortReservation`` holds published host ports as bound sockets.
- :mod:`.socklb`: ``SocketLB`` rewrites host processes' connects to published ports
  straight to the container (cgroup sock_addr eBPF at the cgroup2 root, held by a link
  fd; :mod:`.socklb_prog` the programs): ``start`` (probe; False: nft only),
  ``publish``/``unpublish``/``sync``, ``refresh_addresses``, ``close``.
- :mod:`.dns`: ``DnsServer`` (asyncio) answers containers' queries on each network's
  gateway address from an engine ``lookup``/``reverse`` callback and forwards the rest
  upstream (:mod:`.dnsanswer` sans-IO answers, :mod:`.dnsforward` the upstream client).

Errors are :mod:`conch.errors` kinds naming the interface, subnet or path concerned.

On-disk layout (the engine chooses the root; suggested)::

    <exec-root>/netns/<container-id>          nsfs bind mount: the container's network
                                              namespace (empty regular file underneath)
    <data-root>/network/<network-id>/ipam.json
                                              Pool.to_state(): {"subnet", "gateway",
                                              "ip_range", "allocated": [...]}, written
                                              to a temp file, fsynced, os.replace'd

Nothing here writes anywhere else; kernel objects (bridges, veths) are named by the
caller and found again with ``list_links(prefix)`` after a daemon restart.
"""
