"""Horizontal scaling on one host: the autoscaler (issue 12).

Contract: :mod:`.policy` is the pure HorizontalPodAutoscaler-style policy (formula,
tolerance, stabilisation windows, defaults and why); :mod:`.autoscaler` is the control loop
conchd runs as one owned task, reading replicas' CPU from their cgroups, scaling compose
services that carry ``io.conch.autoscale.*`` labels, with its stabilisation history in
``<data-root>/scaling/`` and its visible state in the replicas' labels. Replicas share
their published port through ``conch.engine.network.shared_ports``.
"""
