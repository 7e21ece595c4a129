"""conch.network.ipam: reservations, explicit requests, exhaustion, persistence and the
default-subnet picker (table tests), plus a hypothesis property over allocate/release."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conch.errors import Conflict, InvalidArgument, NotFound, Unavailable
from conch.network.ipam import Pool, default_subnet_for, load_state, save_state


@pytest.mark.parametrize("args, gateway, first", [
    (("10.213.0.0/24",), "10.213.0.1", "10.213.0.2"),
    (("10.213.0.0/24", "10.213.0.254"), "10.213.0.254", "10.213.0.1"),
    (("10.213.0.0/16", None, "10.213.5.0/24"), "10.213.0.1", "10.213.5.0"),
    (("10.213.0.0/24", None, "10.213.0.0/30"), "10.213.0.1", "10.213.0.2"),
    (("10.213.0.0/31",), "10.213.0.0", "10.213.0.1"),
    (("fd00:213::/64",), "fd00:213::1", "fd00:213::2"),
])
def test_gateway_and_first_address(args, gateway, first):
    pool = Pool(*args)
    assert str(pool.gateway) == gateway
    assert pool.allocate() == first


@pytest.mark.parametrize("args", [
    ("10.213.0.1/24",),                      # host bits set
    ("not-a-subnet",),
    ("10.213.0.0/24", "10.213.1.1"),         # gateway outside
    ("10.213.0.0/24", "10.213.0.0"),         # gateway = network
    ("10.213.0.0/24", "10.213.0.255"),       # gateway = broadcast
    ("10.213.0.0/24", None, "10.213.1.0/28"),  # range outside
    ("10.213.0.0/32",),                      # nothing usable for a gateway
])
def test_invalid_pools(args):
    with pytest.raises(InvalidArgument):
        Pool(*args)


def test_reserved_addresses_never_handed_out():
    pool = Pool("10.213.0.0/29")
    got = [pool.allocate() for _ in range(5)]
    assert got == [f"10.213.0.{i}" for i in range(2, 7)]
    with pytest.raises(Unavailable, match="no available addresses"):
        pool.allocate()


@pytest.mark.parametrize("hint, kind", [
    ("10.213.0.1", Conflict),          # the gateway
    ("10.213.0.0", InvalidArgument),   # network
    ("10.213.0.255", InvalidArgument),  # broadcast
    ("10.213.1.5", InvalidArgument),   # outside the subnet
    ("fd00::5", InvalidArgument),
    ("bogus", InvalidArgument),
])
def test_requested_address_refused(hint, kind):
    with pytest.raises(kind):
        Pool("10.213.0.0/24").allocate(hint)


def test_requested_address_taken_then_released():
    pool = Pool("10.213.0.0/24", ip_range="10.213.0.128/25")
    assert pool.allocate("10.213.0.9") == "10.213.0.9"  # outside the range is fine (dockerd)
    assert pool.is_allocated("10.213.0.9")
    with pytest.raises(Conflict, match="10.213.0.9"):
        pool.allocate("10.213.0.9")
    assert pool.allocate() == "10.213.0.128"
    pool.release("10.213.0.9")
    pool.release("10.213.0.9")  # idempotent
    assert not pool.is_allocated("10.213.0.9")
    assert pool.allocate("10.213.0.9") == "10.213.0.9"
    with pytest.raises(InvalidArgument):
        pool.release("10.213.0.1")
    with pytest.raises(InvalidArgument):
        pool.release("10.9.9.9")


def test_released_address_is_reused_lowest_first():
    pool = Pool("10.213.0.0/24")
    a, b, c = pool.allocate(), pool.allocate(), pool.allocate()
    pool.release(b)
    assert pool.allocate() == b
    assert pool.cidr(c) == "10.213.0.4/24"


def test_state_round_trip(tmp_path):
    pool = Pool("10.213.0.0/16", "10.213.0.254", "10.213.7.0/24")
    for _ in range(3):
        pool.allocate()
    pool.allocate("10.213.9.9")
    state = pool.to_state()
    assert json.loads(json.dumps(state)) == state
    again = Pool.from_state(state)
    assert again.to_state() == state
    assert again.allocate() == "10.213.7.3"
    path = tmp_path / "ipam.json"
    save_state(path, pool)
    assert load_state(path).to_state() == state
    assert [p.name for p in tmp_path.iterdir()] == ["ipam.json"]  # no temp file left
    with pytest.raises(NotFound):
        load_state(tmp_path / "missing.json")
    with pytest.raises(InvalidArgument):
        Pool.from_state({"gateway": "10.0.0.1"})
    with pytest.raises(Conflict):  # a state listing the gateway as allocated is corrupt
        Pool.from_state({"subnet": "10.213.0.0/24", "allocated": ["10.213.0.1"]})


@pytest.mark.parametrize("existing, expected", [
    ([], "172.17.0.0/16"),
    (["0.0.0.0/0"], "172.17.0.0/16"),                     # default route ignored
    (["172.17.0.0/16"], "172.18.0.0/16"),
    (["172.17.0.0/16", "172.18.3.0/24"], "172.19.0.0/16"),
    (["172.16.0.0/12"], "192.168.0.0/20"),
    (["172.16.0.0/12", "192.168.0.0/24", "192.168.17.5/32"], "192.168.32.0/20"),
    (["10.0.0.0/8", "fd00::/8"], "172.17.0.0/16"),
    (["192.168.1.7/24"], "172.17.0.0/16"),                # host bits tolerated
])
def test_default_subnet_for(existing, expected):
    assert default_subnet_for(existing) == expected


def test_default_subnet_exhausted():
    with pytest.raises(Unavailable, match="non-overlapping"):
        default_subnet_for(["172.16.0.0/12", "192.168.0.0/16"])


_ops = st.lists(st.one_of(st.tuples(st.just("alloc"), st.none()),
                          st.tuples(st.just("alloc"), st.integers(0, 31)),
                          st.tuples(st.just("release"), st.integers(0, 31))),
                max_size=80)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, gw=st.integers(1, 30), use_range=st.booleans())
def test_never_hands_out_twice_nor_reserved(ops, gw, use_range):
    pool = Pool("10.213.0.0/27", f"10.213.0.{gw}", "10.213.0.8/29" if use_range else None)
    held: set[str] = set()
    for op, n in ops:
        if op == "release":
            ip = f"10.213.0.{n}"
            if ip in ("10.213.0.0", "10.213.0.31") or n == gw:
                continue
            pool.release(ip)
            held.discard(ip)
            continue
        try:
            ip = pool.allocate(None if n is None else f"10.213.0.{n}")
        except (Conflict, InvalidArgument, Unavailable):
            continue
        assert ip not in held
        assert ip not in (str(pool.gateway), "10.213.0.0", "10.213.0.31")
        held.add(ip)
        assert pool.allocated == held
    assert Pool.from_state(pool.to_state()).allocated == held
