"""OCI linux.resources parsing and the v1→v2 conversions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conch.cgroups.resources import (
    ALLOW_ALL,
    DEFAULT_DEVICE_RULES,
    DENY_ALL,
    DeviceRule,
    Resources,
    allows_everything,
    blkio_weight_to_io_weight,
    parse_resources,
    shares_to_weight,
    swap_to_v2,
    within_defaults,
)
from conch.errors import InvalidArgument


def test_none_and_empty_mean_nothing_requested():
    assert parse_resources(None) == Resources()
    assert parse_resources({}) == Resources()
    # Unsupported fields that are present but empty are not "set".
    assert parse_resources({"network": {}, "rdma": None, "hugepageLimits": []}) == Resources()


def test_full_document():
    res = parse_resources(
        {
            "memory": {"limit": 1 << 25, "reservation": 1 << 24, "swap": 1 << 26, "swappiness": 10,
                       "disableOOMKiller": True},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 5},
            "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}],
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
            "unified": {"memory.high": "max"},
        }
    )
    assert res.memory.limit == 1 << 25 and res.memory.swap == 1 << 26 and res.memory.disable_oom_killer
    assert res.cpu.shares == 512 and res.cpu.cpus == "0-1"
    assert res.pids_limit == 5
    assert res.devices == (DENY_ALL, DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"))
    assert res.block_io.weight == 500 and res.block_io.throttle_read_bps[0].rate == 1024
    assert res.hugepage_limits[0].page_size == "2MB"
    assert res.unified == (("memory.high", "max"),)


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"network": {"classID": 1}}, "linux.resources.network"),
        ({"rdma": {"mlx": {"hcaHandles": 1}}}, "linux.resources.rdma"),
        ({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime"),
        ({"cpu": {"realtimePeriod": 1000}}, "linux.resources.cpu.realtimePeriod"),
        ({"memory": {"bogus": 1}}, "linux.resources.memory.bogus"),
        ({"blockIO": {"leafWeight": 100}}, "linux.resources.blockIO.leafWeight"),
        ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}}, "blockIO.weightDevice"),
        ({"memory": {"checkBeforeUpdate": True}}, "checkBeforeUpdate"),
        ({"memory": {"useHierarchy": False}}, "useHierarchy"),
    ],
)
def test_unsupported_fields_that_are_set_name_the_field(doc, field):
    with pytest.raises(InvalidArgument, match=field.replace(".", r"\.")):
        parse_resources(doc)


@pytest.mark.parametrize(
    "doc",
    [
        {"memory": {"limit": "1g"}},
        {"memory": {"limit": True}},
        {"memory": {"limit": -2}},
        {"memory": {"limit": 100, "swap": 50}},
        {"memory": {"swappiness": 101}},
        {"cpu": {"shares": 1}},
        {"cpu": {"shares": 300000}},
        {"cpu": {"cpus": 3}},
        {"devices": [{"type": "c"}]},
        {"devices": [{"allow": True, "type": "x"}]},
        {"devices": [{"allow": True, "access": "rwx"}]},
        {"devices": {"allow": True}},
        {"blockIO": {"weight": 5}},
        {"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]},
        {"unified": {"../memory.max": "1"}},
        {"unified": {"cgroup.procs": "1"}},
        {"unified": {"memory.max": 1}},
        {"pids": {"limit": "5"}},
        [],
    ],
)
def test_invalid_values(doc):
    with pytest.raises(InvalidArgument):
        parse_resources(doc)


def test_zero_means_unset_and_negative_pids_is_unlimited():
    res = parse_resources({"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0}, "pids": {"limit": 0}})
    assert res.memory.limit is None and res.memory.swap is None
    assert res.cpu.shares is None and res.cpu.quota is None
    assert res.pids_limit is None
    assert parse_resources({"pids": {"limit": -5}}).pids_limit == -1
    assert parse_resources({"memory": {"swappiness": -1}}).memory.swappiness is None


def test_device_wildcards_and_v1_lines():
    res = parse_resources({"devices": [{"allow": True, "type": "c", "major": -1, "minor": None, "access": "mr"}]})
    (rule,) = res.devices
    assert rule.major is None and rule.minor is None and rule.access == "rm"
    assert rule.v1_line() == "c *:* rm"
    assert DENY_ALL.v1_line() == "a"


def test_allow_everything_and_defaults():
    assert allows_everything(())
    assert allows_everything((ALLOW_ALL,))
    assert allows_everything((DENY_ALL, ALLOW_ALL))
    assert not allows_everything((DENY_ALL,))
    assert not allows_everything((ALLOW_ALL, DeviceRule(allow=False, type="c", major=1, minor=3)))
    assert within_defaults(DEFAULT_DEVICE_RULES)
    assert within_defaults(DEFAULT_DEVICE_RULES[:4])
    assert not within_defaults(DEFAULT_DEVICE_RULES[1:])
    assert not within_defaults((DENY_ALL, DeviceRule(allow=True, type="b", major=8, minor=0)))


@pytest.mark.parametrize("shares, weight", [(2, 1), (1024, 39), (262144, 10000), (1, 1), (10**6, 10000)])
def test_shares_to_weight_table(shares, weight):
    assert shares_to_weight(shares) == weight


@given(st.integers(min_value=2, max_value=262144), st.integers(min_value=2, max_value=262144))
def test_shares_to_weight_is_monotonic_and_in_range(a, b):
    wa, wb = shares_to_weight(a), shares_to_weight(b)
    assert 1 <= wa <= 10000
    if a <= b:
        assert wa <= wb


def test_blkio_weight_conversion():
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(1000) == 10000


def test_swap_to_v2():
    assert swap_to_v2(None, 100) is None
    assert swap_to_v2(-1, 100) == -1
    assert swap_to_v2(300, 100) == 200
    with pytest.raises(InvalidArgument):
        swap_to_v2(300, None)
    with pytest.raises(InvalidArgument):
        swap_to_v2(50, 100)


# ---- records: what frozen, slotted, keyword-only dataclasses used to give ---------------


def test_records_compare_hash_and_repr_by_field():
    from conch.cgroups import Write
    from conch.cgroups.resources import Memory

    a = DeviceRule(allow=True, type="c", major=1, minor=3)
    assert a == DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm")
    assert a != DeviceRule(allow=False, type="c", major=1, minor=3)
    assert a != Write(dir="d", name="n", value="v")  # other record types never compare equal
    assert len({a, DeviceRule(allow=True, type="c", major=1, minor=3)}) == 1
    assert repr(Memory(limit=5)) == (
        "Memory(limit=5, reservation=None, swap=None, kernel=None, kernel_tcp=None, "
        "swappiness=None, disable_oom_killer=None)"
    )


def test_records_are_immutable_keyword_only_and_replace_makes_a_copy():
    import copy
    import pickle

    from conch.cgroups.resources import Memory

    memory = Memory(limit=1 << 20, swappiness=10)
    with pytest.raises(AttributeError):
        memory.limit = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del memory.limit
    with pytest.raises(AttributeError):
        memory.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        Memory(1 << 20)  # type: ignore[misc]
    with pytest.raises(TypeError):
        DeviceRule(type="c")  # type: ignore[call-arg]  # allow is required
    changed = memory.replace(swappiness=None)
    assert changed == Memory(limit=1 << 20) and memory.swappiness == 10
    with pytest.raises(TypeError):
        memory.replace(bogus=1)
    assert copy.deepcopy(DENY_ALL) == DENY_ALL
    assert pickle.loads(pickle.dumps(Resources(devices=DEFAULT_DEVICE_RULES))) == Resources(devices=DEFAULT_DEVICE_RULES)
