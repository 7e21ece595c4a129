"""The classic builder: ``docker build`` of a parsed Dockerfile.

Contract: ``builder.Builder`` runs a build (``BuildOptions``) and yields docker's
build stream (``messages``: ``BuildMessage``, ``StepFailed``). ``stages`` is the stage
graph (what the target needs); ``steps`` are the config-only instructions (ENV, LABEL,
CMD, ...); ``run_step`` is RUN (a container run through the engine's container service,
with its ``--mount``s); ``file_steps`` is COPY/ADD and WORKDIR, with ``copying`` (sources,
chown, archives); ``step_images`` and ``layers`` snapshot and commit a step's layer and
hold the step cache; ``buildkit_syntax`` is BuildKit's Dockerfile additions (RUN
--mount, heredocs, COPY --chmod/--link, ADD --checksum and URLs) as this builder runs them. Parsing the Dockerfile is ``conch.build``'s job.
"""
