"""``run``/``create`` flags -> the Engine API's create body (Config + HostConfig +
NetworkingConfig), parsed as docker/cli's ``opts/`` and ``container/opts.go`` do.

Values keep docker's units and error texts: ``-m 512m`` is base 1024 (``units.RAMInBytes``),
``--cpus 1.5`` becomes ``NanoCpus``, health durations are Go durations in nanoseconds,
``-p`` follows ``nat.ParsePortSpec``.
"""

from __future__ import annotations

import os
TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    import argparse
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


# -- the flag set --------------------------------------------------------------------------


def add_flags(p: argparse.ArgumentParser, *, run: bool) -> None:
    """Register docker's run/create flags on ``p``."""
    A = p.add_argument
    L = dict(action="append", default=[])
    if run:
        A("-d", "--detach", action="store_true", help="Run container in background and print container ID")
        A("--sig-proxy", action="store_true", default=True, help="Proxy received signals to the process (default true)")
        A("--rm", action="store_true", help="Automatically remove the container when it exits")
    else:
        A("--rm", action="store_true", help="Automatically remove the container when it exits")
    A("--detach-keys", help="Override the key sequence for detaching a container")
    A("-a", "--attach", **L, help="Attach to STDIN, STDOUT or STDERR")
    A("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    A("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    A("--name", help="Assign a name to the container")
    A("-e", "--env", **L, help="Set environment variables")
    A("--env-file", **L, help="Read in a file of environment variables")
    A("-w", "--workdir", help="Working directory inside the container")
    A("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    A("--group-add", **L, help="Add additional groups to join")
    A("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    A("-h", "--hostname", help="Container host name")
    A("--domainname", help="Container NIS domain name")
    A("--help", action="help", help="Print usage")
    A("--restart", default="no", help="Restart policy to apply when a container exits (default \"no\")")
    A("-m", "--memory", help="Memory limit")
    A("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    A("--memory-reservation", help="Memory soft limit")
    A("--memory-swappiness", type=int, help="Tune container memory swappiness (0 to 100)")
    A("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    A("--oom-score-adj", type=int, help="Tune host's OOM preferences (-1000 to 1000)")
    A("--cpus", help="Number of CPUs")
    A("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    A("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    A("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    A("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    A("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    A("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    A("--init", action="store_true", help="Run an init inside the container that forwards signals and reaps processes")
    A("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    A("--cap-add", **L, help="Add Linux capabilities")
    A("--cap-drop", **L, help="Drop Linux capabilities")
    A("--privileged", action="store_true", help="Give extended privileges to this container")
    A("--security-opt", **L, help="Security Options")
    A("--tmpfs", **L, help="Mount a tmpfs directory")
    A("--shm-size", help="Size of /dev/shm")
    A("-l", "--label", **L, help="Set meta data on a container")
    A("--label-file", **L, help="Read in a line delimited file of labels")
    A("--stop-signal", help="Signal to stop the container")
    A("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    A("--ulimit", **L, help="Ulimit options")
    A("--health-cmd", help="Command to run to check health")
    A("--health-interval", help="Time between running the check (ms|s|m|h) (default 0s)")
    A("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
    A("--health-retries", type=int, help="Consecutive failures needed to report unhealthy")
    A("--health-start-period", help="Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)")
    A("--health-start-interval", help="Time between running the check during the start period (ms|s|m|h) (default 0s)")
    A("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    A("--network", "--net", help="Connect a container to a network")
    A("--network-alias", "--net-alias", **L, help="Add network-scoped alias for the container")
    A("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    A("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    A("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    A("-p", "--publish", **L, help="Publish a container's port(s) to the host")
    A("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    A("--expose", **L, help="Expose a port or a range of ports")
    A("--add-host", **L, help="Add a custom host-to-IP mapping (host:ip)")
    A("--dns", **L, help="Set custom DNS servers")
    A("--dns-search", **L, help="Set custom DNS search domains")
    A("--dns-option", **L, help="Set DNS options")
    A("-v", "--volume", **L, help="Bind mount a volume")
    A("--mount", **L, help="Attach a filesystem mount to the container")
    A("--volumes-from", **L, help="Mount volumes from the specified container(s)")
    A("--link", **L, help="Add link to another container")
    A("--log-driver", help="Logging driver for the container")
    A("--log-opt", **L, help="Log driver options")
    A("--platform", help="Set platform if server is multi-platform capable")
    A("--pull", default="missing", choices=("always", "missing", "never"),
      help='Pull image before running ("always", "missing", "never") (default "missing")')
    A("-q", "--quiet", action="store_true", help="Suppress the pull output")
    A("--sysctl", **L, help="Sysctl options")
    A("--device", **L, help="Add a host device to the container")
    A("--ipc", help="IPC mode to use")
    A("--pid", help="PID namespace to use")
    A("--uts", help="UTS namespace to use")
    A("--userns", help="User namespace to use")
    A("--cgroupns", help='Cgroup namespace to use (host|private)')
    A("--cgroup-parent", help="Optional parent cgroup for the container")
    A("--runtime", help="Runtime to use for this container")
    A("image", metavar="IMAGE")


class CreateRequest:
    """What ``POST /containers/create`` needs: the body and the query parameters.
    (A plain class: ``dataclasses`` would add ~10 ms to every ``conch run``.)"""

    __slots__ = ("body", "name", "platform", "pull", "warnings")

    def __init__(self, body: dict[str, Any], name: str | None = None,
                 platform: str | None = None, pull: str = "missing",
                 warnings: list[str] | None = None) -> None:
        self.body = body
        self.name = name
        self.platform = platform
        self.pull = pull
        self.warnings = warnings if warnings is not None else []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CreateRequest) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return "CreateRequest(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _healthcheck(ns) -> dict[str, Any] | None:
    any_health = any(getattr(ns, k) not in (None,) for k in (
        "health_cmd", "health_interval", "health_timeout", "health_retries",
        "health_start_period", "health_start_interval"))
    if ns.no_healthcheck:
        if any_health:
            raise OptionError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not any_health:
        return None
    hc: dict[str, Any] = {}
    if ns.health_cmd:
        hc["Test"] = ["CMD-SHELL", ns.health_cmd]
    for attr, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod"),
                      ("health_start_interval", "StartInterval")):
        value = getattr(ns, attr)
        if value is not None:
            hc[key] = positive_duration("--" + attr.replace("_", "-"), value)
    if ns.health_retries is not None:
        if ns.health_retries < 0:
            raise OptionError("--health-retries cannot be negative")
        hc["Retries"] = ns.health_retries
    return hc


def build(ns: argparse.Namespace, command: list[str], *, run: bool) -> CreateRequest:
    """Turn parsed flags into the create request, validating as docker/cli does."""
    attach = [a.lower() for a in ns.attach]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise OptionError(f'invalid argument "{a}" for "-a, --attach" flag: valid streams '
                              "are STDIN, STDOUT and STDERR")
    detach = getattr(ns, "detach", False)
    if run and detach and attach:
        raise OptionError("Conflicting options: -a and -d")
    attach_stdin = "stdin" in attach or ns.interactive
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach
    if run and detach:
        attach_stdin = attach_stdout = attach_stderr = False
    if not run:  # docker create: attach flags are recorded, nothing is attached now
        attach_stdin = "stdin" in attach or ns.interactive

    env = env_list([line for path in ns.env_file for line in read_kv_file(path)] + ns.env)
    label_map = labels([line for path in ns.label_file for line in read_kv_file(path)] + ns.label)

    config: dict[str, Any] = {
        "Hostname": ns.hostname or "",
        "Domainname": ns.domainname or "",
        "User": ns.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr,
        "Tty": ns.tty,
        "OpenStdin": ns.interactive,
        "StdinOnce": bool(run and not detach and ns.interactive and attach_stdin),
        "Env": env,
        "Cmd": command or None,
        "Image": ns.image,
        "Volumes": {},
        "WorkingDir": ns.workdir or "",
        "Entrypoint": None,
        "Labels": label_map,
    }
    if ns.entrypoint is not None:
        config["Entrypoint"] = [ns.entrypoint] if ns.entrypoint else [""]
    if ns.stop_signal:
        config["StopSignal"] = ns.stop_signal
    if ns.stop_timeout is not None:
        config["StopTimeout"] = ns.stop_timeout
    if ns.mac_address:
        config["MacAddress"] = ns.mac_address
    health = _healthcheck(ns)
    if health is not None:
        config["Healthcheck"] = health

    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in ns.publish:
        e, b = publish(spec)
        exposed.update(e)
        for k, v in b.items():
            bindings.setdefault(k, []).extend(v)
    for spec in ns.expose:
        for key in expose(spec):
            exposed[key] = {}
    if exposed:
        config["ExposedPorts"] = exposed

    binds: list[str] = []
    for spec in ns.volume:
        volume(spec, binds, config["Volumes"])

    restart = restart_policy(ns.restart) if ns.restart else {"Name": "no"}
    if ns.rm and restart["Name"] != "no":
        raise OptionError("Conflicting options: --restart and --rm")

    host: dict[str, Any] = {
        "Binds": binds or None,
        "NetworkMode": ns.network or "default",
        "PortBindings": bindings,
        "RestartPolicy": restart,
        "AutoRemove": ns.rm,
        "VolumesFrom": ns.volumes_from or None,
        "CapAdd": ns.cap_add or None,
        "CapDrop": ns.cap_drop or None,
        "Dns": ns.dns,
        "DnsOptions": ns.dns_option,
        "DnsSearch": ns.dns_search,
        "ExtraHosts": [add_host(h) for h in ns.add_host] or None,
        "GroupAdd": ns.group_add or None,
        "Links": ns.link or None,
        "Privileged": ns.privileged,
        "PublishAllPorts": ns.publish_all,
        "ReadonlyRootfs": ns.read_only,
        "SecurityOpt": ns.security_opt or None,
        "Tmpfs": tmpfs(ns.tmpfs) or None,
        "Sysctls": kv_map("--sysctl", ns.sysctl) or None,
        "Mounts": [mount(m) for m in ns.mount] or None,
        "Ulimits": [ulimit(u) for u in ns.ulimit] or None,
        "Devices": [device(d) for d in ns.device] or None,
    }
    if ns.init:
        host["Init"] = True
    if ns.log_driver or ns.log_opt:
        host["LogConfig"] = {"Type": ns.log_driver or "", "Config": kv_map("--log-opt", ns.log_opt)}
    if ns.memory is not None:
        host["Memory"] = ram_in_bytes(ns.memory)
    if ns.memory_swap is not None:
        host["MemorySwap"] = memory_swap(ns.memory_swap)
    if ns.memory_reservation is not None:
        host["MemoryReservation"] = ram_in_bytes(ns.memory_reservation)
    if ns.memory_swappiness is not None:
        host["MemorySwappiness"] = ns.memory_swappiness
    if ns.oom_kill_disable:
        host["OomKillDisable"] = True
    if ns.oom_score_adj is not None:
        if not -1000 <= ns.oom_score_adj <= 1000:
            raise OptionError("Invalid value: {}, range for oom score adj is [-1000, 1000]"
                              .format(ns.oom_score_adj))
        host["OomScoreAdj"] = ns.oom_score_adj
    if ns.cpus is not None:
        host["NanoCpus"] = nano_cpus(ns.cpus)
    for attr, key in (("cpu_shares", "CpuShares"), ("cpu_period", "CpuPeriod"),
                      ("cpu_quota", "CpuQuota"), ("cpuset_cpus", "CpusetCpus"),
                      ("cpuset_mems", "CpusetMems"), ("pids_limit", "PidsLimit"),
                      ("ipc", "IpcMode"), ("pid", "PidMode"), ("uts", "UTSMode"),
                      ("userns", "UsernsMode"), ("cgroupns", "CgroupnsMode"),
                      ("cgroup_parent", "CgroupParent"), ("runtime", "Runtime")):
        value = getattr(ns, attr)
        if value is not None:
            host[key] = value
    if ns.shm_size is not None:
        host["ShmSize"] = ram_in_bytes(ns.shm_size)
    host = {k: v for k, v in host.items() if v is not None}

    networking: dict[str, Any] = {}
    if ns.network_alias or ns.ip or ns.ip6:
        if not ns.network or ns.network in ("default", "bridge", "host", "none"):
            if ns.network_alias:
                raise OptionError("network-scoped aliases are only supported for user-defined "
                                  "networks")
        endpoint: dict[str, Any] = {}
        if ns.network_alias:
            endpoint["Aliases"] = ns.network_alias
        if ns.ip or ns.ip6:
            ipam = {}
            if ns.ip:
                ipam["IPv4Address"] = ns.ip
            if ns.ip6:
                ipam["IPv6Address"] = ns.ip6
            endpoint["IPAMConfig"] = ipam
        networking = {"EndpointsConfig": {ns.network or "default": endpoint}}

    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = networking
    return CreateRequest(body=body, name=ns.name, platform=ns.platform, pull=ns.pull)
