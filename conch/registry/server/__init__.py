"""``conch registry serve``: an OCI Distribution Spec 1.1 registry on a local filesystem.

Contract: the endpoints of distribution-spec 1.1 (pull, push with monolithic, chunked and
cross-repo-mount uploads, tags/list and _catalog with pagination, the referrers API with
``artifactType`` filtering, deletes), the spec's error bodies and codes, Docker's token
auth over an htpasswd file, optional TLS, and ``conch registry gc``. Manifests accepted:
OCI image manifest/index and Docker v2 schema 2 manifest/manifest list. Blobs stream in
and out (sendfile on GET); no blob is ever held in memory.

On-disk layout under ``--root``::

    blobs/<alg>/<hex[:2]>/<hex>          verified content (blobs and manifests), 0444
    uploads/<uuid>/                      one upload session
      data                               the bytes received so far
      startedat                          time.time() the session began
      repo                               the repository that owns it (written last)
    repositories/<name>/                 <name> may contain '/'; never a '_' component
      _layers/<alg>/<hex>                this repo may read blob <hex> (upload or mount)
      _manifests/revisions/<alg>/<hex>   manifest <hex> is in this repo; content: media type
      _manifests/tags/<tag>              content: the digest the tag points at
      _referrers/<alg>/<subject hex>/<alg>-<hex>
                                         descriptor (JSON) of a manifest whose subject is
                                         <subject hex>, as the referrers API lists it
    auth/token.key                       HMAC key for tokens (0600), with --htpasswd
    gc.lock                              flock: shared by writers, exclusive by gc's unlinks

Atomicity: blob bytes go to ``uploads/<uuid>/data``, are hashed while they stream,
verified against the client's digest, fsynced and only then ``os.replace``\\ d into
``blobs/``; a crash at any point leaves an upload directory (swept by gc), never a bad
blob. Links, tags and referrer entries are temp file + fsync + ``os.replace``.

Modules: ``names`` (grammars and header parsing), ``errors`` (spec error codes),
``manifests`` (what a manifest references), ``storage`` (the layout above), ``uploads``
(sessions), ``auth`` (htpasswd, tokens, scopes), ``routes_blobs``/``routes_manifests``
(handlers), ``app`` (routing, auth checks, token endpoint), ``gc`` (mark and sweep, with
the online-safety rule in its docstring), ``__main__`` (the command line).

This is a separate process: the conch CLI execs ``python -m conch.registry.server``;
conchd never imports it.
"""
