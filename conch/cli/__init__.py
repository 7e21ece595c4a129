"""The ``conch`` command: docker's verbs, flags, output formats and exit codes.

``main`` parses the global flags and dispatches to one verb module (``container_run``,
``container_lifecycle``, ``container_views``, ``container_fs``, ``images``, ``system``, ...),
importing only that module; ``verb_common`` holds what they share. Verbs talk to conchd
only through ``conch.client`` (the Docker Engine API); ``run_flags``, ``flag_values`` and
``create_body`` turn run/create flags into the API's create body, ``format`` renders tables and ``--format`` templates, ``tty`` handles raw mode,
resize and the stdin pump for attached terminals.
"""
