"""Registries, both sides of the OCI Distribution Spec.

- ``client/``: resolve references, authenticate (Docker token flow), fetch and push
  manifests and blobs for ``pull``/``push``.
- ``server/``: ``conch registry serve``, an OCI Distribution Spec 1.1 registry with a
  filesystem store, htpasswd + token auth, and ``conch registry gc``.

The two halves share nothing but the specs (and ``conch.oci``): the server is a separate
process, exec'd by the CLI, never imported by conchd.
"""
