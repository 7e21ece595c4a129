"""The classic builder: ``docker build`` of a parsed Dockerfile.

Contract: ``builder.Builder`` runs a build (``BuildOptions``) and yields docker's
build stream; ``steps`` are the config-only instructions (ENV, LABEL, CMD, ...),
``copying`` is COPY/ADD (sources, chown, archives), ``step_images`` snapshots and
commits a step's layer and holds the step cache. RUN steps are containers run through
the engine's container service. Parsing the Dockerfile is ``conch.build``'s job.
"""
