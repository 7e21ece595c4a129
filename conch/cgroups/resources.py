"""OCI ``linux.resources`` parsed once into an immutable, validated value.

The runtime-spec object (config-linux.md, "Control groups") is a loose JSON dict; the
managers only ever see :class:`Resources`. Parsing is strict in one direction: a field
that conch does not implement is an :class:`InvalidArgument` *if it is set* (present and
not null/empty), naming the field by its JSON path. Silently ignoring a limit the user
asked for would be worse than refusing to start.

Conventions kept from the spec and runc:

* ``None`` means "not requested, leave the kernel's value alone".
* ``-1`` means "unlimited" for memory limit/swap/reservation, cpu quota and pids limit.
* A ``0`` in fields where runc reads 0 as "unset" (memory.limit, memory.swap, cpu.shares,
  cpu.quota, cpu.period, pids.limit) is normalised to ``None`` here, so the managers need
  no second rule.
* ``memory.swap`` is memory+swap, as in cgroup v1 (``memory.memsw.limit_in_bytes``);
  :func:`swap_to_v2` converts it to v2's swap-only ``memory.swap.max``.
"""

# Records are _Record subclasses, not dataclasses: see the import-cost note in __init__.py.
from conch.cgroups.record import _Record
from conch.errors import InvalidArgument

UNLIMITED = -1

# cgroup v1 cpu.shares range enforced by the kernel (sched.h MIN_SHARES/MAX_SHARES).
MIN_SHARES = 2
MAX_SHARES = 262144


class Memory(_Record):
    __slots__ = ("limit", "reservation", "swap", "kernel", "kernel_tcp", "swappiness", "disable_oom_killer")
    limit: int | None
    reservation: int | None
    swap: int | None  # memory + swap, as OCI and v1 define it
    kernel: int | None
    kernel_tcp: int | None
    swappiness: int | None
    disable_oom_killer: bool | None

    def __init__(
        self,
        *,
        limit: int | None = None,
        reservation: int | None = None,
        swap: int | None = None,
        kernel: int | None = None,
        kernel_tcp: int | None = None,
        swappiness: int | None = None,
        disable_oom_killer: bool | None = None,
    ) -> None:
        self._set(
            limit=limit, reservation=reservation, swap=swap, kernel=kernel, kernel_tcp=kernel_tcp,
            swappiness=swappiness, disable_oom_killer=disable_oom_killer,
        )


class Cpu(_Record):
    __slots__ = ("shares", "quota", "period", "burst", "idle", "cpus", "mems")
    shares: int | None
    quota: int | None
    period: int | None
    burst: int | None
    idle: int | None
    cpus: str | None
    mems: str | None

    def __init__(
        self,
        *,
        shares: int | None = None,
        quota: int | None = None,
        period: int | None = None,
        burst: int | None = None,
        idle: int | None = None,
        cpus: str | None = None,
        mems: str | None = None,
    ) -> None:
        self._set(shares=shares, quota=quota, period=period, burst=burst, idle=idle, cpus=cpus, mems=mems)


class DeviceRule(_Record):
    __slots__ = ("allow", "type", "major", "minor", "access")
    allow: bool
    type: str  # "a" (all), "b" (block) or "c" (char)
    major: int | None  # None is the wildcard "*"
    minor: int | None
    access: str

    def __init__(
        self, *, allow: bool, type: str = "a", major: int | None = None, minor: int | None = None, access: str = "rwm"
    ) -> None:
        self._set(allow=allow, type=type, major=major, minor=minor, access=access)

    def v1_line(self) -> str:
        """The line written to v1 devices.allow / devices.deny."""
        if self.type == "a":
            # "a" alone is the kernel's spelling of "every device, every access".
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


class DeviceRate(_Record):
    __slots__ = ("major", "minor", "rate")
    major: int
    minor: int
    rate: int

    def __init__(self, *, major: int, minor: int, rate: int) -> None:
        self._set(major=major, minor=minor, rate=rate)


class BlockIO(_Record):
    __slots__ = ("weight", "throttle_read_bps", "throttle_write_bps", "throttle_read_iops", "throttle_write_iops")
    weight: int | None
    throttle_read_bps: tuple[DeviceRate, ...]
    throttle_write_bps: tuple[DeviceRate, ...]
    throttle_read_iops: tuple[DeviceRate, ...]
    throttle_write_iops: tuple[DeviceRate, ...]

    def __init__(
        self,
        *,
        weight: int | None = None,
        throttle_read_bps: tuple[DeviceRate, ...] = (),
        throttle_write_bps: tuple[DeviceRate, ...] = (),
        throttle_read_iops: tuple[DeviceRate, ...] = (),
        throttle_write_iops: tuple[DeviceRate, ...] = (),
    ) -> None:
        self._set(
            weight=weight, throttle_read_bps=throttle_read_bps, throttle_write_bps=throttle_write_bps,
            throttle_read_iops=throttle_read_iops, throttle_write_iops=throttle_write_iops,
        )


class HugepageLimit(_Record):
    __slots__ = ("page_size", "limit")
    page_size: str  # as the kernel names it in file names: "2MB", "1GB"
    limit: int

    def __init__(self, *, page_size: str, limit: int) -> None:
        self._set(page_size=page_size, limit=limit)


class Resources(_Record):
    __slots__ = ("memory", "cpu", "pids_limit", "devices", "block_io", "hugepage_limits", "unified")
    memory: Memory | None
    cpu: Cpu | None
    pids_limit: int | None
    devices: tuple[DeviceRule, ...] | None
    block_io: BlockIO | None
    hugepage_limits: tuple[HugepageLimit, ...]
    unified: tuple[tuple[str, str], ...]  # (file name, raw value), v2 only

    def __init__(
        self,
        *,
        memory: Memory | None = None,
        cpu: Cpu | None = None,
        pids_limit: int | None = None,
        devices: tuple[DeviceRule, ...] | None = None,
        block_io: BlockIO | None = None,
        hugepage_limits: tuple[HugepageLimit, ...] = (),
        unified: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._set(
            memory=memory, cpu=cpu, pids_limit=pids_limit, devices=devices, block_io=block_io,
            hugepage_limits=hugepage_limits, unified=unified,
        )


def _rule(type_: str, major: int | None, minor: int | None, access: str = "rwm") -> DeviceRule:
    return DeviceRule(allow=True, type=type_, major=major, minor=minor, access=access)


DENY_ALL = DeviceRule(allow=False, type="a", access="rwm")
ALLOW_ALL = DeviceRule(allow=True, type="a", access="rwm")

# What an unprivileged container may touch: runc's specconv AllowedDevices, which the
# engine sends after a leading deny-all. Listed here because the v2 manager accepts
# exactly this set (or a subset) without eBPF; see v2.py.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    DENY_ALL,
    _rule("c", None, None, "m"),
    _rule("b", None, None, "m"),
    _rule("c", 1, 3),  # /dev/null
    _rule("c", 1, 8),  # /dev/random
    _rule("c", 1, 7),  # /dev/full
    _rule("c", 5, 0),  # /dev/tty
    _rule("c", 1, 5),  # /dev/zero
    _rule("c", 1, 9),  # /dev/urandom
    _rule("c", 5, 1),  # /dev/console (runc appends it too: runtime.create's list has it)
    _rule("c", 136, None),  # /dev/pts/*
    _rule("c", 5, 2),  # /dev/ptmx
    _rule("c", 10, 200),  # /dev/net/tun
)


def allows_everything(rules: tuple[DeviceRule, ...]) -> bool:
    """True when the rule list leaves every device accessible (or asks for nothing)."""
    for index in range(len(rules) - 1, -1, -1):
        rule = rules[index]
        if rule.type == "a" and set(rule.access) == set("rwm"):
            return rule.allow and all(r.allow for r in rules[index + 1 :])
    return all(r.allow for r in rules)


def within_defaults(rules: tuple[DeviceRule, ...]) -> bool:
    """True for deny-all followed only by allow rules from DEFAULT_DEVICE_RULES."""
    if not rules or rules[0] != DENY_ALL:
        return False
    return all(rule.allow and rule in DEFAULT_DEVICE_RULES for rule in rules[1:])


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000], as runc and crun do."""
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight [10, 1000] → v2 io.weight [1, 10000] (runc's conversion)."""
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """OCI memory+swap → v2 memory.swap.max (swap alone); -1 stays unlimited.

    Mirrors runc's ConvertMemorySwapToCgroupV2Value: a swap limit needs a memory limit.
    """
    if swap is None:
        return None
    if swap == UNLIMITED:
        return UNLIMITED
    if limit is None or limit == UNLIMITED:
        raise InvalidArgument("linux.resources.memory.swap: a swap limit needs memory.limit too")
    if swap < limit:
        raise InvalidArgument(
            f"linux.resources.memory.swap ({swap}) must be >= memory.limit ({limit}): "
            "OCI swap counts memory plus swap"
        )
    return swap - limit


# ---- parsing ---------------------------------------------------------------------------


def _is_set(value: object) -> bool:
    return value is not None and value != {} and value != []


def _reject_unknown(doc: dict, known: set[str], where: str) -> None:
    for key, value in doc.items():
        if key not in known and _is_set(value):
            raise InvalidArgument(f"{where}.{key} is not supported by conch")


def _object(doc: dict, key: str, where: str) -> dict | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}.{key} must be an object")
    return value


def _int(doc: dict, key: str, where: str, *, zero_unset: bool = False, minimum: int = -1) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{where}.{key} must be an integer, got {value!r}")
    if zero_unset and value == 0:
        return None
    if value < minimum:
        raise InvalidArgument(f"{where}.{key} must be >= {minimum}, got {value}")
    return value


def _str(doc: dict, key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}.{key} must be a string")
    return value


def _bool(doc: dict, key: str, where: str) -> bool | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidArgument(f"{where}.{key} must be a boolean")
    return value


def _list(doc: dict, key: str, where: str) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}.{key} must be an array")
    return value


def _memory(doc: dict) -> Memory:
    w = "linux.resources.memory"
    _reject_unknown(
        doc,
        {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
         "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"},
        w,
    )
    # Kernel 5.x+ memcg is always hierarchical; only the value that changes nothing is fine.
    if doc.get("useHierarchy") is False:
        raise InvalidArgument(f"{w}.useHierarchy=false is not supported (memory is always hierarchical)")
    if doc.get("checkBeforeUpdate"):
        raise InvalidArgument(f"{w}.checkBeforeUpdate is not supported by conch")
    memory = Memory(
        limit=_int(doc, "limit", w, zero_unset=True),
        reservation=_int(doc, "reservation", w),
        swap=_int(doc, "swap", w, zero_unset=True),
        kernel=_int(doc, "kernel", w, zero_unset=True),
        kernel_tcp=_int(doc, "kernelTCP", w, zero_unset=True),
        swappiness=_int(doc, "swappiness", w),
        disable_oom_killer=_bool(doc, "disableOOMKiller", w),
    )
    # runc treats swappiness -1 (and nil) as "use the default".
    if memory.swappiness == -1:
        memory = memory.replace(swappiness=None)
    if memory.swappiness is not None and memory.swappiness > 100:
        raise InvalidArgument(f"{w}.swappiness must be in [0, 100], got {memory.swappiness}")
    if memory.limit not in (None, UNLIMITED) and memory.swap not in (None, UNLIMITED):
        if memory.swap < memory.limit:
            raise InvalidArgument(
                f"{w}.swap ({memory.swap}) must be >= limit ({memory.limit}): OCI swap is memory+swap"
            )
    return memory


def _cpu(doc: dict) -> Cpu:
    w = "linux.resources.cpu"
    _reject_unknown(doc, {"shares", "quota", "period", "burst", "idle", "cpus", "mems"}, w)
    shares = _int(doc, "shares", w, zero_unset=True, minimum=0)
    if shares is not None and not MIN_SHARES <= shares <= MAX_SHARES:
        raise InvalidArgument(f"{w}.shares must be in [{MIN_SHARES}, {MAX_SHARES}], got {shares}")
    return Cpu(
        shares=shares,
        quota=_int(doc, "quota", w, zero_unset=True),
        period=_int(doc, "period", w, zero_unset=True, minimum=1),
        burst=_int(doc, "burst", w, minimum=0),
        idle=_int(doc, "idle", w, minimum=0),
        cpus=_str(doc, "cpus", w),
        mems=_str(doc, "mems", w),
    )


def _device(doc: object, index: int) -> DeviceRule:
    w = f"linux.resources.devices[{index}]"
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{w} must be an object")
    _reject_unknown(doc, {"allow", "type", "major", "minor", "access"}, w)
    allow = _bool(doc, "allow", w)
    if allow is None:
        raise InvalidArgument(f"{w}.allow is required")
    type_ = _str(doc, "type", w) or "a"
    if type_ not in ("a", "b", "c"):
        raise InvalidArgument(f"{w}.type must be 'a', 'b' or 'c', got {type_!r}")
    access = _str(doc, "access", w) or "rwm"
    if not set(access) <= set("rwm"):
        raise InvalidArgument(f"{w}.access must be letters from 'rwm', got {access!r}")
    # -1 is runc's other spelling of the wildcard.
    major = _int(doc, "major", w)
    minor = _int(doc, "minor", w)
    return DeviceRule(
        allow=allow,
        type=type_,
        major=None if major == -1 else major,
        minor=None if minor == -1 else minor,
        access="".join(c for c in "rwm" if c in access),
    )


def _rates(doc: dict, key: str, w: str) -> tuple[DeviceRate, ...]:
    rates = []
    for index, entry in enumerate(_list(doc, key, w)):
        where = f"{w}.{key}[{index}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be an object")
        _reject_unknown(entry, {"major", "minor", "rate"}, where)
        values = [_int(entry, k, where, minimum=0) for k in ("major", "minor", "rate")]
        if None in values:
            raise InvalidArgument(f"{where} needs major, minor and rate")
        rates.append(DeviceRate(major=values[0], minor=values[1], rate=values[2]))
    return tuple(rates)


def _block_io(doc: dict) -> BlockIO:
    w = "linux.resources.blockIO"
    throttles = ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                 "throttleReadIOPSDevice", "throttleWriteIOPSDevice")
    _reject_unknown(doc, {"weight", *throttles}, w)
    weight = _int(doc, "weight", w, minimum=0)
    if weight is not None and not 10 <= weight <= 1000:
        raise InvalidArgument(f"{w}.weight must be in [10, 1000], got {weight}")
    read_bps, write_bps, read_iops, write_iops = (_rates(doc, k, w) for k in throttles)
    return BlockIO(
        weight=weight,
        throttle_read_bps=read_bps,
        throttle_write_bps=write_bps,
        throttle_read_iops=read_iops,
        throttle_write_iops=write_iops,
    )


def _hugepages(entries: list) -> tuple[HugepageLimit, ...]:
    limits = []
    for index, entry in enumerate(entries):
        w = f"linux.resources.hugepageLimits[{index}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{w} must be an object")
        _reject_unknown(entry, {"pageSize", "limit"}, w)
        size = _str(entry, "pageSize", w)
        limit = _int(entry, "limit", w, minimum=0)
        if size is None or limit is None or "/" in size:
            raise InvalidArgument(f"{w} needs a pageSize like '2MB' and a limit")
        limits.append(HugepageLimit(page_size=size, limit=limit))
    return tuple(limits)


def _unified(doc: dict) -> tuple[tuple[str, str], ...]:
    pairs = []
    for name, value in doc.items():
        w = f"linux.resources.unified[{name!r}]"
        # A key is a file name in the container's cgroup directory, nothing else.
        if not name or "/" in name or name.startswith(".") or "." not in name:
            raise InvalidArgument(f"{w}: not a cgroup interface file name")
        if name.startswith("cgroup."):
            raise InvalidArgument(f"{w}: cgroup.* core files may not be set through unified")
        if not isinstance(value, str):
            raise InvalidArgument(f"{w}: value must be a string")
        pairs.append((name, value))
    return tuple(pairs)


def parse_resources(doc: dict | None) -> Resources:
    """Validate an OCI ``linux.resources`` object; raise InvalidArgument naming the field."""
    if doc is None:
        return Resources()
    w = "linux.resources"
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{w} must be an object")
    _reject_unknown(doc, {"memory", "cpu", "pids", "devices", "blockIO", "hugepageLimits", "unified"}, w)
    memory = _object(doc, "memory", w)
    cpu = _object(doc, "cpu", w)
    pids = _object(doc, "pids", w)
    block_io = _object(doc, "blockIO", w)
    unified = _object(doc, "unified", w)
    devices = doc.get("devices")
    if devices is not None and not isinstance(devices, list):
        raise InvalidArgument(f"{w}.devices must be an array")
    pids_limit = None
    if pids is not None:
        _reject_unknown(pids, {"limit"}, f"{w}.pids")
        pids_limit = _int(pids, "limit", f"{w}.pids", zero_unset=True, minimum=-(2**63))
        if pids_limit is not None and pids_limit < 0:
            pids_limit = UNLIMITED  # runc: any negative limit means "max"
    return Resources(
        memory=None if memory is None else _memory(memory),
        cpu=None if cpu is None else _cpu(cpu),
        pids_limit=pids_limit,
        devices=None if devices is None else tuple(_device(d, i) for i, d in enumerate(devices)),
        block_io=None if block_io is None else _block_io(block_io),
        hugepage_limits=_hugepages(_list(doc, "hugepageLimits", w)),
        unified=() if unified is None else _unified(unified),
    )
