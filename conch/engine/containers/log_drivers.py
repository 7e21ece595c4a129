"""Docker's logging drivers that conch has: ``json-file`` (the default), ``local`` and
``none``; what each accepts and where the shim writes.

``json-file`` and ``local`` both keep the container's output in the shim's JSON-lines
file (conch's reader serves ``docker logs`` from it); they differ as in dockerd in their
options and their rotation defaults (json-file: unbounded unless ``max-size``; local:
``max-size=20m``, ``max-file=5``, moby daemon/logger/local). ``none`` keeps nothing: the
shim writes to ``/dev/null`` and reading is refused with dockerd's words. Any other name
is refused at create with dockerd's plugin-lookup error (moby daemon/logger/plugin.go).
"""

from __future__ import annotations

from conch.errors import ConchError, InvalidArgument


class NotImplementedByDriver(ConchError):
    """dockerd's ErrReadLogsNotSupported is a NotImplemented error: HTTP 501."""

    http_status = 501

DEFAULT = "json-file"
DRIVERS = ("json-file", "local", "none")
# every driver also takes the generic mode/max-buffer-size (moby logger.ValidateLogOpts)
_GENERIC = {"mode", "max-buffer-size"}
_OPTS = {
    "json-file": {"max-size", "max-file", "compress", "labels", "labels-regex", "env",
                  "env-regex", "tag"},
    "local": {"max-size", "max-file", "compress"},
    "none": set(),
}
_DEFAULTS = {"json-file": {}, "local": {"max-size": "20m", "max-file": "5"}, "none": {}}
NO_READING = "configured logging driver does not support reading"


def validate(driver: str, opts: dict) -> None:
    """Docker's create-time checks of ``HostConfig.LogConfig``."""
    name = driver or DEFAULT
    if name not in _OPTS:
        raise InvalidArgument(f'error looking up logging plugin {name}: plugin "{name}" not found')
    for key in opts:
        if key not in _OPTS[name] | _GENERIC:
            raise InvalidArgument(f"unknown log opt '{key}' for {name} log driver")
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidArgument(f"logger: logging mode not supported: {mode}")


def effective_opts(driver: str, opts: dict) -> dict:
    """The options the shim applies: the driver's defaults under the given ones."""
    return {**_DEFAULTS.get(driver or DEFAULT, {}), **opts}


def keeps_logs(driver: str) -> bool:
    return (driver or DEFAULT) != "none"


def check_readable(driver: str) -> None:
    """``docker logs`` of a ``none`` container: dockerd's 501."""
    if not keeps_logs(driver):
        raise NotImplementedByDriver(NO_READING)
