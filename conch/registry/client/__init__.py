"""Registry client: the OCI Distribution Spec (and Docker's registry API v2) from the
pulling/pushing side. asyncio + aiohttp; no on-disk state of its own (blobs go into the
content store given by the caller, through its verified ingests).

Modules:

* ``auth``      -- ``WWW-Authenticate`` parsing, scopes, :class:`~.auth.Credentials`,
  the bearer-token flow and token cache (:class:`~.auth.Authorizer`).
* ``transport`` -- :class:`~.transport.Registries` (``--insecure-registry``, timeouts)
  and :class:`~.transport.RegistryHost` (ping, scheme fallback, auth retry, redirects
  that drop Authorization off-host, registry error bodies -> conch error kinds).
* ``resolve``   -- reference -> verified manifest bytes; platform selection in an index.
* ``blobs``     -- verified, resumable downloads into the content store; uploads
  (HEAD, cross-repo mount, monolithic or chunked), manifest PUT.

Orchestration (which layers, in what order, unpacking, progress, naming the image) is
the engine's: ``conch.engine.distribution.service``.
"""
