"""The engine's values and records: what a container is asked to be (``CreateSpec``),
what it is (``Container`` with its ``State``), and how that is stored.

Records are frozen; the engine makes a new one with ``dataclasses.replace`` and stores it
(``to_dict``/``from_dict`` give the JSON the metadata store keeps). ``api_config`` is the
create request exactly as the API received it: the engine never reads it, the API hands
it back in ``inspect`` (Docker echoes the config it was given).
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field

from conch.errors import Conflict


class Status(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"

    def check_transition(self, to: "Status") -> None:
        if to not in _TRANSITIONS[self]:
            raise Conflict(f"container cannot go from {self.value} to {to.value}")


_TRANSITIONS = {
    Status.CREATED: {Status.RUNNING, Status.REMOVING, Status.EXITED, Status.DEAD},
    Status.RUNNING: {Status.PAUSED, Status.EXITED, Status.RESTARTING, Status.DEAD, Status.RUNNING},
    Status.PAUSED: {Status.RUNNING, Status.EXITED, Status.DEAD},
    Status.RESTARTING: {Status.RUNNING, Status.EXITED, Status.REMOVING, Status.DEAD},
    Status.EXITED: {Status.RUNNING, Status.RESTARTING, Status.REMOVING, Status.DEAD},
    Status.REMOVING: {Status.DEAD, Status.EXITED},
    Status.DEAD: {Status.REMOVING},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    name: str = "no"  # no | on-failure | always | unless-stopped
    max_retry: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    test: tuple[str, ...] = ()  # ["NONE"] | ["CMD", ...] | ["CMD-SHELL", "cmd"]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSpec:
    image: str
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    healthcheck: HealthConfig | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    # host config
    binds: tuple[str, ...] = ()
    auto_remove: bool = False
    restart_policy: RestartPolicy = RestartPolicy()
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None
    init: bool = False
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    security_opt: tuple[str, ...] = ()
    tmpfs: dict = field(default_factory=dict)
    shm_size: int = 0
    ulimits: tuple[tuple[str, int, int], ...] = ()
    network_mode: str = ""
    pid_mode: str = ""   # "" (private) | "host"
    ipc_mode: str = ""   # "" | "private" | "shareable" | "host"
    uts_mode: str = ""   # "" | "host"
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    sysctls: dict = field(default_factory=dict)
    oom_score_adj: int = 0
    console_size: tuple[int, int] | None = None  # HostConfig.ConsoleSize (height, width)
    log_driver: str = "json-file"  # json-file | local | none (engine.containers.log_drivers)
    log_opts: dict = field(default_factory=dict)  # json-file: max-size, max-file
    port_bindings: dict = field(default_factory=dict)
    mounts: tuple[dict, ...] = ()
    publish_all: bool = False
    links: tuple[str, ...] = ()    # "name[:alias]" (default bridge only, as docker)
    volumes_from: tuple[str, ...] = ()  # "container[:ro|:rw]" (HostConfig.VolumesFrom)
    # NetworkingConfig.EndpointsConfig: network name -> {"aliases": [...], "ipv4": ""}
    endpoints: dict = field(default_factory=dict)
    # as the request gave them; ociconfig derives what is applied (and inspect shows)
    cgroupns_mode: str = ""   # "host" | "private"
    memory_swappiness: int | None = None  # None: the kernel's (docker shows null)
    masked_paths: tuple[str, ...] | None = None  # None: docker's defaults (none when privileged)
    readonly_paths: tuple[str, ...] | None = None
    group_add: tuple[str, ...] = ()  # supplementary groups: names (the container's /etc/group) or gids
    runtime: str = ""  # "" = the daemon's default runtime
    # the builder's only: a committed snapshot the rootfs starts from instead of the image's
    # layers (a RUN in a stage the build does not export: its parent step is a snapshot,
    # never tarred into an image; conch.engine.build.step_results)
    rootfs_parent: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    status: str = "starting"  # starting | healthy | unhealthy
    failing_streak: int = 0
    log: tuple[dict, ...] = ()  # {"start", "end", "exit_code", "output"}, the last 5


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    health: Health | None = None

    @property
    def running(self) -> bool:
        return self.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    id: str
    name: str
    created: str
    image: str                 # the reference as given
    image_id: str
    spec: CreateSpec
    path: str                  # the resolved command: path + args
    args: tuple[str, ...]
    api_config: dict = field(default_factory=dict)
    state: State = State()
    restart_count: int = 0
    manually_stopped: bool = False
    shim_pid: int = 0
    shim_start: int = 0
    mounts: tuple[dict, ...] = ()  # {type, source, destination, mode, rw, propagation, name?}
    # the networks it is attached to (config, kept while stopped; the live endpoint —
    # address, MAC, veth — is conch.engine.network.service' state): name -> {"id", "aliases",
    # "ipv4"} in attach order, the first one is NetworkMode's
    networks: dict = field(default_factory=dict)

    def with_state(self, **changes) -> "Container":
        new = dataclasses.replace(self.state, **changes)
        if new.status != self.state.status:
            self.state.status.check_transition(new.status)
        return dataclasses.replace(self, state=new)


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


# -- storage ------------------------------------------------------------------------

def to_dict(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _build(cls, data: dict):
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        f = hints.get(name)
        if f is None:
            continue  # a field of a newer conch: dropped, not fatal
        kwargs[name] = _convert(f.type, value)
    return cls(**kwargs)


_NESTED = {"RestartPolicy": RestartPolicy, "HealthConfig": HealthConfig, "Health": Health,
           "State": State, "CreateSpec": CreateSpec}


def _convert(annotation, value):
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    for name, cls in _NESTED.items():
        if text.startswith(name) and isinstance(value, dict):
            return _build(cls, value)
    if text == "Status":
        return Status(value)
    if text.startswith("tuple") and isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def container_from_dict(data: dict) -> Container:
    return _build(Container, data)
