"""How a command line fails: :class:`UsageError` (a bad command line, printed with a
pointer to ``--help``) and :class:`CommandError` (a verb failed, printed as is), each
with the exit status docker uses. Below ``main`` and the parsers, which all raise them.
"""


class UsageError(Exception):
    """A bad command line: printed with a pointer to ``--help``; exit 125 by default."""

    def __init__(self, message: str, status: int = 125):
        super().__init__(message)
        self.status = status


class CommandError(Exception):
    """A verb failed; the message is printed as is and the command exits with ``status``."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status
