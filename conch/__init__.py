"""conch: a Docker-compatible container engine written in Python.

See DESIGN.md (shared) for the layering: errors/oci/kernel/metadata at the bottom,
then content, snapshots, archive, cgroups, runtime, shim, then the engine.
Nothing here runs at import time.
"""
