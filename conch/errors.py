"""The error kinds every conch layer raises.

Each kind knows the HTTP status the API layer maps it to; only ``api/`` does that
mapping. Library code raises a kind with context and never returns a sentinel to mean
failure. Foreign exceptions (OSError, json errors) are translated once, at the boundary
where they are caught, with ``raise Kind(...) from exc``.
"""


class ConchError(Exception):
    """Root of all conch errors."""

    http_status = 500


class NotFound(ConchError):
    http_status = 404


class AlreadyExists(ConchError):
    http_status = 409


class Conflict(ConchError):
    http_status = 409


class NotModified(ConchError):
    """Docker answers 304 when starting a running (or stopping a stopped) container."""

    http_status = 304


class InvalidArgument(ConchError):
    http_status = 400


class FailedPrecondition(ConchError):
    http_status = 412


class PermissionDenied(ConchError):
    http_status = 403


class Unavailable(ConchError):
    http_status = 503


class SystemCallError(ConchError):
    """A system call failed: carries the syscall name, errno and the path involved.

    The runtime reports these back to the caller of ``create`` with the setup step that
    failed, so a user sees e.g. ``mount /proc: EPERM (Operation not permitted)``.
    """

    def __init__(self, syscall: str, errno: int, path: str = "", detail: str = ""):
        import os

        self.syscall = syscall
        self.errno = errno
        self.path = path
        self.detail = detail
        msg = f"{syscall}"
        if path:
            msg += f" {path}"
        msg += f": {os.strerror(errno)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
