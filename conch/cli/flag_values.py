"""Values of docker's ``run``/``create`` flags, parsed as docker/cli's ``opts/`` and
``container/opts.go`` do, with docker's units and error texts: ``-m 512m`` is base 1024
(``units.RAMInBytes``), ``--cpus 1.5`` becomes ``NanoCpus``, durations are Go durations in
nanoseconds, ``-p`` follows ``nat.ParsePortSpec``; ``-v``, ``--mount``, ``--device``,
``--ulimit``, ``--add-host``, env and label lists. Pure functions; a bad value raises
:class:`OptionError` (exit 125).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any

from conch.cli.main import UsageError


ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


class OptionError(UsageError):
    """An invalid flag value; exits 125 like docker's ``invalid argument`` errors."""


# -- units -------------------------------------------------------------------------------

_RAM = r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$"


_RAM_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """``units.RAMInBytes``: '512m' -> 536870912, binary multiples, 'b' optional."""
    import re  # only with -m & co: `re` costs ~10 ms of start-up (re.compile caches)

    m = re.match(_RAM, text.strip())
    if not m:
        raise OptionError(f"invalid size: '{text}'")
    try:
        number = float(m.group(1))
    except ValueError as exc:
        raise OptionError(f"invalid size: '{text}'") from exc
    return int(number * _RAM_MULT[(m.group(2) or "").lower()])


def memory_swap(text: str) -> int:
    return -1 if text == "-1" else ram_in_bytes(text)


def nano_cpus(text: str) -> int:
    """``--cpus 1.5`` -> 1500000000 (docker's ``NanoCPUs.Set``)."""
    try:
        value = float(text)
    except ValueError as exc:
        raise OptionError(f'invalid argument "{text}" for "--cpus" flag: failed to parse '
                          f"{text} as a rational number") from exc
    nano = round(value * 1e9)
    if value < 0 or (value and nano == 0) or not value == value:
        raise OptionError(f'invalid argument "{text}" for "--cpus" flag: value is too precise')
    return nano


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}


_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"


def go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` -> nanoseconds ('1m30s', '500ms', '0')."""
    s = text.strip()
    neg = s.startswith("-")
    s = s.lstrip("+-")
    if s == "0":
        return 0
    import re  # only for duration flags (see ram_in_bytes)

    part = re.compile(_DURATION_PART)
    total = 0.0
    pos = 0
    while pos < len(s):
        m = part.match(s, pos)
        if not m:
            raise OptionError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise OptionError(f'time: invalid duration "{text}"')
    return -int(total) if neg else int(total)


def positive_duration(flag: str, text: str) -> int:
    ns = go_duration(text)
    if ns < 0:
        raise OptionError(f"{flag} cannot be negative")
    return ns


# -- key/value lists ----------------------------------------------------------------------


def read_kv_file(path: str) -> list[str]:
    """docker's ``--env-file``/``--label-file``: one KEY=value a line, '#' comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise OptionError(f"open {path}: {exc.strerror.lower()}") from exc
    out = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        out.append(line)
    return out


def env_list(values: list[str]) -> list[str]:
    """``KEY=value`` kept; a bare ``KEY`` takes the value from our environment, if set."""
    out = []
    for v in values:
        key, eq, _ = v.partition("=")
        if not key:
            raise OptionError(f"invalid environment variable: {v}")
        if eq:
            out.append(v)
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def labels(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        key, _, value = v.partition("=")
        if not key:
            raise OptionError(f'invalid argument "{v}" for "-l, --label" flag: invalid label')
        out[key] = value
    return out


def kv_map(flag: str, values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key:
            raise OptionError(f'invalid argument "{v}" for "{flag}" flag: {v} must be key=value')
        out[key] = value
    return out


# -- single-value parsers --------------------------------------------------------------------


def restart_policy(text: str) -> dict[str, Any]:
    """``no|always|unless-stopped|on-failure[:N]`` -> RestartPolicy (``ParseRestartPolicy``)."""
    name, colon, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise OptionError(f"invalid restart policy: unknown policy '{name}'; use one of "
                          "'no', 'always', 'on-failure', or 'unless-stopped'")
    policy: dict[str, Any] = {"Name": name}
    if colon:
        if name != "on-failure":
            raise OptionError(f"invalid restart policy: maximum retry count can only be "
                              f"used with 'on-failure'")
        try:
            policy["MaximumRetryCount"] = int(count)
        except ValueError as exc:
            raise OptionError(f"invalid restart policy: maximum retry count must be an "
                              f"integer") from exc
    return policy


def ulimit(text: str) -> dict[str, Any]:
    """``name=soft[:hard]`` -> {Name, Soft, Hard} (go-units ``ParseUlimit``)."""
    name, eq, limits = text.partition("=")
    if not eq:
        raise OptionError(f'invalid argument "{text}" for "--ulimit" flag: invalid ulimit '
                          f"argument: {text}")
    if name not in ULIMIT_NAMES:
        raise OptionError(f'invalid argument "{text}" for "--ulimit" flag: invalid ulimit '
                          f"type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError as exc:
        raise OptionError(f'invalid argument "{text}" for "--ulimit" flag: invalid ulimit '
                          f"argument: {text}") from exc
    if soft > hard:
        raise OptionError(f'invalid argument "{text}" for "--ulimit" flag: ulimit soft limit '
                          f"must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


def tmpfs(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        path, _, opts = v.partition(":")
        if not path.startswith("/"):
            raise OptionError(f"invalid tmpfs mount: {path} is not an absolute path")
        out[path] = opts
    return out


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    try:
        start = int(lo)
        end = int(hi) if dash else start
    except ValueError as exc:
        raise OptionError(f"invalid {what}: {text}") from exc
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise OptionError(f"invalid {what}: {text}")
    return start, end


def publish(spec: str) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    """``nat.ParsePortSpec``: ``[ip:][hostPort:]containerPort[/proto]`` (ranges allowed).

    Returns (ExposedPorts, PortBindings).
    """
    rest, slash, proto = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise OptionError(f"invalid proto: {proto}")
    ip = host = ""
    if rest.startswith("["):  # [ipv6]:host:container
        close = rest.find("]")
        ip, rest = rest[1:close], rest[close + 2 :]
        host, _, container = rest.rpartition(":")
    else:
        parts = rest.split(":")
        if len(parts) == 1:
            container = parts[0]
        elif len(parts) == 2:
            host, container = parts
        elif len(parts) == 3:
            ip, host, container = parts
        else:  # bare IPv6 without brackets: the last two fields are the ports
            ip, host, container = ":".join(parts[:-2]), parts[-2], parts[-1]
    if not container:
        raise OptionError(f"no port specified: {spec}<empty>")
    c_lo, c_hi = _port_range(container, "containerPort")
    h_lo = h_hi = None
    if host:
        h_lo, h_hi = _port_range(host, "hostPort")
        if (h_hi - h_lo) != (c_hi - c_lo) and h_lo != h_hi and c_lo != c_hi:
            raise OptionError(f"invalid ranges specified for container and host Ports: "
                              f"{container} and {host}")
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for i, port in enumerate(range(c_lo, c_hi + 1)):
        key = f"{port}/{proto}"
        exposed[key] = {}
        if h_lo is None:
            host_port = ""
        elif c_lo == c_hi and h_lo != h_hi:
            host_port = f"{h_lo}-{h_hi}"  # a host range for one container port
        else:
            host_port = str(h_lo + i)
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})
    return exposed, bindings


def expose(spec: str) -> list[str]:
    port, _, proto = spec.partition("/")
    lo, hi = _port_range(port, "range format for --expose specified")
    return [f"{p}/{proto or 'tcp'}" for p in range(lo, hi + 1)]


def volume(spec: str, binds: list[str], volumes: dict[str, dict]) -> None:
    """``-v``: ``src:dst[:mode]`` is a bind or named volume, a lone ``dst`` is anonymous."""
    parts = spec.split(":")
    if len(parts) == 1:
        if not spec.startswith("/"):
            raise OptionError(f"invalid volume specification: '{spec}': invalid mount config "
                              "for type \"volume\": invalid mount path: "
                              f"'{spec}' mount path must be absolute")
        volumes[spec] = {}
        return
    src = parts[0]
    if src.startswith("."):  # docker/cli makes relative host paths absolute
        parts[0] = os.path.abspath(src)
    if len(parts) > 3:
        raise OptionError(f"invalid volume specification: '{spec}'")
    binds.append(":".join(parts))


def _mount_bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise OptionError(f'invalid value for {key}: {value}')


def mount(spec: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b,readonly`` -> a HostConfig.Mounts entry."""
    m: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    tmp: dict[str, Any] = {}
    for field_ in spec.split(","):
        key, eq, value = field_.partition("=")
        key = key.strip().lower()
        val = value if eq else None
        if key == "type":
            m["Type"] = value
        elif key in ("source", "src"):
            m["Source"] = value
        elif key in ("target", "destination", "dst"):
            m["Target"] = value
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = _mount_bool(key, val)
        elif key == "consistency":
            m["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _mount_bool(key, val)
        elif key == "volume-nocopy":
            vol["NoCopy"] = _mount_bool(key, val)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            vol.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-subpath":
            vol["Subpath"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            vol.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            tmp["SizeBytes"] = ram_in_bytes(value)
        elif key == "tmpfs-mode":
            try:
                tmp["Mode"] = int(value, 8)
            except ValueError as exc:
                raise OptionError(f"invalid value for {key}: {value}") from exc
        else:
            raise OptionError(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                              f"unexpected key '{key}' in '{field_}'")
    if m["Type"] not in ("bind", "volume", "tmpfs", "npipe", "cluster", "image"):
        raise OptionError(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid type: "
                          f"{m['Type']}")
    if "Target" not in m:
        raise OptionError(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    if bind:
        m["BindOptions"] = bind
    if vol:
        m["VolumeOptions"] = vol
    if tmp:
        m["TmpfsOptions"] = tmp
    return m


def device(spec: str) -> dict[str, str]:
    """``--device /dev/x[:/dev/y][:rwm]`` -> a HostConfig.Devices entry."""
    parts = spec.split(":")
    host = parts[0]
    target = host
    perms = "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm"):
            perms = parts[1]
        else:
            target = parts[1]
    elif len(parts) == 3:
        target, perms = parts[1], parts[2]
    elif len(parts) > 3:
        raise OptionError(f"invalid device specification: {spec}")
    if not set(perms) <= set("rwm"):
        raise OptionError(f"invalid device mode: {perms}")
    return {"PathOnHost": host, "PathInContainer": target, "CgroupPermissions": perms}


def add_host(spec: str) -> str:
    """``host:ip`` or ``host=ip`` -> 'host:ip' (docker/cli ``ValidateExtraHost``)."""
    name, sep, ip = spec.partition("=")
    if not sep:
        name, sep, ip = spec.partition(":")
    if not sep or not name or not ip:
        raise OptionError(f'invalid argument "{spec}" for "--add-host" flag: bad format for '
                          f"add-host: \"{spec}\"")
    if ip != "host-gateway":
        import ipaddress

        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError as exc:
            raise OptionError(f'invalid argument "{spec}" for "--add-host" flag: invalid IP '
                              f'address in add-host: "{ip}"') from exc
    return f"{name}:{ip}"
