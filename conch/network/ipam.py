"""IP address management: one :class:`Pool` per network, plus the default-subnet picker.

Pure: no I/O except :func:`save_state`, which writes a pool's JSON state atomically
(temp file in the same directory, fsync, ``os.replace``).

Reservations follow Docker's default IPAM (libnetwork ``ipams/defaultipam``):

- the network address and, for IPv4 prefixes shorter than /31, the broadcast address are
  never handed out;
- the gateway (the first usable address unless given) is reserved from the start;
- automatic allocations come from ``ip_range`` (the whole subnet when none is given),
  lowest free address first;
- a requested address (``docker run --ip``) may be anywhere in the subnet, inside the
  range or not, as with dockerd: the usual pattern is a small dynamic ``--ip-range`` with
  static addresses outside it. It is refused when taken (Conflict) or reserved / outside
  the subnet (InvalidArgument).
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from conch.errors import Conflict, InvalidArgument, NotFound, Unavailable

__all__ = ["Pool", "DEFAULT_POOLS", "default_subnet_for", "save_state", "load_state"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# dockerd's default address pools (daemon/config: 172.17-31.0.0/16, then 192.168.0.0/16
# cut into /20s); the first free one goes to the default bridge.
DEFAULT_POOLS: tuple[str, ...] = tuple(
    [f"172.{n}.0.0/16" for n in range(17, 32)]
    + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]
)


def _network(text: str, what: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {text!r}: {exc}") from exc


def _address(text: str, what: str) -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {text!r}: {exc}") from exc


class Pool:
    """The addresses of one subnet: which are reserved, which are allocated.

    Not thread-safe: the engine serialises changes to a network.
    """

    __slots__ = ("subnet", "gateway", "ip_range", "_allocated")

    def __init__(self, subnet: str, gateway: str | None = None, ip_range: str | None = None):
        self.subnet: Network = _network(subnet, "subnet")
        if self.subnet.num_addresses < 2:
            raise InvalidArgument(f"subnet {subnet} has no room for a gateway and a container")
        self.ip_range: Network = self.subnet
        if ip_range is not None:
            rng = _network(ip_range, "ip range")
            if rng.version != self.subnet.version or not rng.subnet_of(self.subnet):
                raise InvalidArgument(f"ip range {ip_range} is not within subnet {subnet}")
            self.ip_range = rng
        if gateway is None:
            self.gateway: Address = next(iter(self.subnet.hosts()))
        else:
            gw = _address(gateway, "gateway")
            if gw not in self.subnet or self._is_edge(gw):
                raise InvalidArgument(f"gateway {gateway} is not a usable address of {subnet}")
            self.gateway = gw
        self._allocated: set[Address] = set()

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def cidr(self, ip: str) -> str:
        """``ip`` with the subnet's prefix length, as interfaces are configured."""
        return f"{ip}/{self.subnet.prefixlen}"

    @property
    def allocated(self) -> frozenset[str]:
        return frozenset(str(a) for a in self._allocated)

    def _is_edge(self, addr: Address) -> bool:
        """Network or broadcast address (neither exists as such in /31 and /32)."""
        if self.subnet.version == 4 and self.subnet.prefixlen >= 31:
            return False
        if addr == self.subnet.network_address:
            return True
        return self.subnet.version == 4 and addr == self.subnet.broadcast_address

    def _reserved(self, addr: Address) -> bool:
        return addr == self.gateway or self._is_edge(addr)

    def is_allocated(self, ip: str) -> bool:
        return _address(ip, "address") in self._allocated

    def allocate(self, hint: str | None = None) -> str:
        """Reserve and return an address: ``hint`` exactly, or the lowest free one."""
        if hint is not None:
            return self._allocate_exact(_address(hint, "address"))
        rng = self.ip_range
        first, last = int(rng.network_address), int(rng.broadcast_address)
        for value in range(first, last + 1):
            addr = ipaddress.ip_address(value) if rng.version == 4 else ipaddress.IPv6Address(value)
            if addr not in self._allocated and not self._reserved(addr):
                self._allocated.add(addr)
                return str(addr)
        # libnetwork: ErrNoAvailableIPs, an "unavailable" error.
        raise Unavailable(f"no available addresses on pool {self.subnet} (range {rng})")

    def _allocate_exact(self, addr: Address) -> str:
        if addr.version != self.subnet.version or addr not in self.subnet:
            raise InvalidArgument(f"address {addr} is not in subnet {self.subnet}")
        if self._is_edge(addr):
            raise InvalidArgument(f"address {addr} is reserved in subnet {self.subnet}")
        if addr == self.gateway or addr in self._allocated:
            raise Conflict(f"address {addr} is already in use in subnet {self.subnet}")
        self._allocated.add(addr)
        return str(addr)

    def release(self, ip: str) -> None:
        """Give ``ip`` back. Idempotent: releasing a free address is a no-op, so cleanup
        after a crash can release everything it might have held."""
        addr = _address(ip, "address")
        if addr.version != self.subnet.version or addr not in self.subnet:
            raise InvalidArgument(f"address {ip} is not in subnet {self.subnet}")
        if addr == self.gateway:
            raise InvalidArgument(f"address {ip} is the gateway of {self.subnet}")
        self._allocated.discard(addr)

    def to_state(self) -> dict[str, Any]:
        return {
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "ip_range": None if self.ip_range == self.subnet else str(self.ip_range),
            "allocated": sorted((str(a) for a in self._allocated),
                                key=lambda s: int(ipaddress.ip_address(s))),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Pool":
        try:
            pool = cls(state["subnet"], state.get("gateway"), state.get("ip_range"))
            for ip in state.get("allocated", ()):
                pool._allocate_exact(_address(ip, "address"))
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"malformed IPAM state: {exc!r}") from exc
        return pool

    def __repr__(self) -> str:
        return (f"Pool(subnet={str(self.subnet)!r}, gateway={str(self.gateway)!r}, "
                f"ip_range={str(self.ip_range)!r}, allocated={len(self._allocated)})")


def default_subnet_for(existing: Iterable[str], pools: Iterable[str] = DEFAULT_POOLS) -> str:
    """The first of ``pools`` overlapping none of ``existing`` (the host's routes and the
    other networks' subnets, as the caller reads them). Default routes (prefix length 0)
    overlap everything and are ignored, as dockerd does."""
    taken = []
    for text in existing:
        net = ipaddress.ip_network(text, strict=False)
        if net.prefixlen:
            taken.append(net)
    for text in pools:
        candidate = ipaddress.ip_network(text)
        if not any(candidate.version == t.version and candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool "
                      "among the defaults to assign to the network")


def save_state(path: str | os.PathLike, pool: Pool) -> None:
    """Write ``pool``'s state to ``path`` atomically: readers see old or new, never half."""
    path = Path(path)
    data = json.dumps(pool.to_state(), indent=1, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_state(path: str | os.PathLike) -> Pool:
    try:
        state = json.loads(Path(path).read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(f"IPAM state {path}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"IPAM state {path}: {exc}") from exc
    return Pool.from_state(state)
