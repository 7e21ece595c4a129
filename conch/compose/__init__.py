"""``conch compose``: the Compose Specification over the Engine API (like ``conch.cli``).

Contract: talks to conchd only through ``conch.client``; a project is loaded
(:mod:`~conch.compose.loader`: files, ``.env``, interpolation, merge, ``extends``,
validation against the shipped JSON schema in ``schema/``, profiles), turned into Engine
API bodies (:mod:`~conch.compose.convert`: docker compose v2's names and labels, config
hash) and converged on the engine (:mod:`~conch.compose.project`). The command line is
:mod:`~conch.compose.commands`, reached from ``conch compose`` (``conch.cli.compose``).
Nothing is imported at package import time.
"""
