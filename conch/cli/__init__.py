"""The ``conch`` command: docker's verbs, flags, output formats and exit codes.

``main`` parses the global flags and dispatches to one verb module (``containers``,
``images``, ``system``), importing only that module. Verbs talk to conchd only through
``conch.client`` (the Docker Engine API); ``runopts`` turns run/create flags into the API's
create body, ``format`` renders tables and ``--format`` templates, ``tty`` handles raw mode,
resize and the stdin pump for attached terminals.
"""
