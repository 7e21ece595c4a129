"""conch.engine.scaling.policy: the HPA formula, tolerance, windows and bounds (pure)."""

from __future__ import annotations

import pytest

from conch.engine.scaling.policy import (Policy, cpu_limit, raw_desired, stabilised, trim,
                                         utilisation)
from conch.errors import InvalidArgument

P = Policy(min_replicas=1, max_replicas=10, target_cpu_percent=50, scale_up_window=10,
           scale_down_window=60, sync_period=5)


@pytest.mark.parametrize("current,usage,want", [
    (1, 100, 2),      # ceil(1 * 100/50)
    (2, 80, 4),       # ceil(2 * 1.6) = ceil(3.2)
    (3, 50, 3),       # on target
    (4, 54, 4),       # within the 0.1 tolerance: no change
    (4, 46, 4),
    (4, 56, 5),       # just outside: ceil(4.48)
    (4, 10, 1),       # ceil(0.8)
    (2, 0, 1),        # idle: down to min
    (5, 1000, 10),    # capped by max
])
def test_formula_with_tolerance_and_bounds(current, usage, want):
    assert raw_desired(current, usage, P) == want


def test_utilisation_is_usage_over_limit_across_replicas():
    # two replicas limited to 0.25 CPU, each used 0.25 s of CPU over 1 s: 100 %
    assert utilisation([(250_000_000, 1.0, 0.25), (250_000_000, 1.0, 0.25)]) == pytest.approx(100)
    assert utilisation([(100_000_000, 2.0, 1.0)]) == pytest.approx(5)
    assert utilisation([]) is None
    assert cpu_limit(250_000_000) == 0.25 and cpu_limit(0, 50_000, 100_000) == 0.5
    assert cpu_limit(0) == 1.0


def test_scale_up_needs_the_rise_to_hold_for_the_up_window():
    # a single spike among low recommendations: the window's minimum wins (no change)
    hist = [(0, 1), (5, 1), (10, 4)]
    assert stabilised(1, 10, hist, P) == 1
    # sustained for the whole window: up to the window's lowest recommendation
    hist = [(0, 4), (5, 3), (10, 4)]
    assert stabilised(1, 10, hist, P) == 3


def test_scale_up_rate_is_bounded():
    assert stabilised(1, 0, [(0, 10)], P) == 5  # max(2 * 1, 1 + 4)
    assert stabilised(6, 0, [(0, 20)], P) == 10  # 12, then max_replicas


def test_scale_down_waits_for_the_stabilisation_window():
    hist = [(0, 4), (30, 1), (55, 1)]
    assert stabilised(4, 55, hist, P) == 4  # a recommendation of 4 is still in the window
    assert stabilised(4, 61, hist + [(61, 1)], P) == 1  # (0, 4) left it
    assert stabilised(4, 61, [(20, 2), (61, 1)], P) == 2  # highest in the window


def test_history_trimmed_to_the_windows():
    hist = [(t, 1) for t in range(0, 200, 5)]
    kept = trim(hist, 200, P)
    assert kept[0][0] >= 200 - 65 and kept[-1] == (195, 1)


def test_policy_from_labels_and_validation():
    labels = {"io.conch.autoscale.min_replicas": "1", "io.conch.autoscale.max_replicas": "4",
              "io.conch.autoscale.target_cpu_percent": "50",
              "io.conch.autoscale.scale_down_window": "8"}
    p = Policy.from_labels(labels)
    assert (p.min_replicas, p.max_replicas, p.target_cpu_percent) == (1, 4, 50.0)
    assert p.scale_down_window == 8 and p.scale_up_window == 10 and p.tolerance == 0.1
    assert Policy.from_labels({"a": "b"}) is None
    with pytest.raises(InvalidArgument):
        Policy(min_replicas=3, max_replicas=2, target_cpu_percent=50)
    with pytest.raises(InvalidArgument):
        Policy(min_replicas=1, max_replicas=2, target_cpu_percent=0)


def test_requests_per_second_target_uses_the_same_formula():
    from conch.engine.scaling.policy import raw_desired_ratio

    p = Policy(min_replicas=1, max_replicas=8, target_requests_per_second=100)
    assert p.target_cpu_percent == 0
    # 2 replicas serving 450 req/s in all: 225 each against 100 -> ceil(2 * 2.25) = 5
    assert raw_desired_ratio(2, 450 / 2 / 100, p) == 5
    assert raw_desired_ratio(2, 1.05, p) == 2  # within tolerance
    assert Policy.from_labels({"io.conch.autoscale.max_replicas": "3",
                               "io.conch.autoscale.target_requests_per_second": "50"}
                              ).target_requests_per_second == 50
    with pytest.raises(InvalidArgument):
        Policy(min_replicas=1, max_replicas=2)  # no target at all


def test_replica_names_follow_the_template():
    from conch.engine.scaling.autoscaler import _replica_name

    assert _replica_name("proj-web-1", 1, 3) == "proj-web-3"  # compose v2
    assert _replica_name("proj_web_1", 1, 4) == "proj_web_4"  # docker-compose 1.29
    assert _replica_name("custom", 0, 2) == "custom-2"
