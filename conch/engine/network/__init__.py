"""Networks: Docker's networks and each container's network sandbox.

Contract: ``service.NetworkService`` holds the network records and is the only thing the
container service calls (its container hooks: attach at start, release at stop);
``records`` are the durable records and pure rules (filters, predefined networks),
``sandbox`` is the kernel side of one container (netns, veths, addresses, routes, DNS
files) and ``netsetup`` the steps that wire a container into its networks. The kernel
primitives themselves live below, in ``conch.network``.
"""
