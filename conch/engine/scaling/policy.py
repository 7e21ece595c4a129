"""The autoscaling policy, pure (no I/O, no clock): the Kubernetes HorizontalPodAutoscaler's
formula with a tolerance, and its stabilisation windows.

A service opts in with compose's ``x-autoscale`` (conch compose writes it as
``io.conch.autoscale.*`` labels on every replica, so it is in the records):

    x-autoscale: {min_replicas: 1, max_replicas: 5, target_cpu_percent: 50,
                  tolerance: 0.1, sync_period: 5s, scale_up_window: 10s,
                  scale_down_window: 60s}

- utilisation = the replicas' CPU time over the last period / (their CPU limit × period)
  (the limit is ``deploy.resources.limits.cpus``; without one, reservations, else one CPU:
  HPA measures against requests, compose's nearest is the limit a replica may use);
- desired = ceil(current × utilisation / target), left at ``current`` while
  |utilisation / target − 1| ≤ tolerance (HPA's rule, so noise does not flap);
- optionally ``target_requests_per_second`` (per replica, for a service that publishes a
  port): the shared port's new connections per second (its nft counter) over the
  replicas, through the same formula; with both targets the larger count wins (HPA's rule
  for several metrics);
- stabilisation: each period's desired count is a *recommendation*; a scale-up takes the
  lowest recommendation of the last ``scale_up_window`` (the rise must hold that long), a
  scale-down the highest of the last ``scale_down_window`` (HPA's behaviour fields);
- rate: at most ``max(2 × current, current + 4)`` per step (HPA's default scale-up policy:
  100 % or 4 pods), always within [min_replicas, max_replicas].

Defaults, and why they differ from Kubernetes' (15 s sync, 0 s up, 300 s down): a replica
here starts in a fraction of a second on the same host and reading a cgroup counter costs
microseconds, so a 5 s period reacts quickly at no cost; 10 s of scale-up window (two
samples) ignores a single spike (a GC, a burst) that HPA absorbs with its slower pod
start; 60 s of scale-down stabilisation keeps replicas through short lulls between bursts
while giving the host its CPU and memory back within a minute, where a cluster's 5 minutes
mostly protects against the cost of rescheduling pods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conch.errors import InvalidArgument

__all__ = ["Policy", "PREFIX", "raw_desired", "raw_desired_ratio", "stabilised", "utilisation",
           "cpu_limit"]

PREFIX = "io.conch.autoscale."
DEFAULT_TOLERANCE = 0.1
DEFAULT_SYNC_PERIOD = 5.0
DEFAULT_SCALE_UP_WINDOW = 10.0
DEFAULT_SCALE_DOWN_WINDOW = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    min_replicas: int
    max_replicas: int
    target_cpu_percent: float = 0.0  # 0: not a target
    target_requests_per_second: float = 0.0  # per replica; 0: not a target
    tolerance: float = DEFAULT_TOLERANCE
    sync_period: float = DEFAULT_SYNC_PERIOD
    scale_up_window: float = DEFAULT_SCALE_UP_WINDOW
    scale_down_window: float = DEFAULT_SCALE_DOWN_WINDOW

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise InvalidArgument("autoscale: need 1 <= min_replicas <= max_replicas")
        if self.target_cpu_percent < 0 or self.target_requests_per_second < 0 or not (
                self.target_cpu_percent or self.target_requests_per_second):
            raise InvalidArgument("autoscale: target_cpu_percent (or "
                                  "target_requests_per_second) must be positive")
        if self.tolerance < 0 or self.sync_period <= 0:
            raise InvalidArgument("autoscale: tolerance >= 0 and sync_period > 0")
        if self.scale_up_window < 0 or self.scale_down_window < 0:
            raise InvalidArgument("autoscale: windows must not be negative")

    @classmethod
    def from_labels(cls, labels: dict) -> Policy | None:
        """The policy in a replica's labels, or None when it has none (or a bad one:
        the caller logs and leaves the service alone)."""
        if PREFIX + "max_replicas" not in labels:
            return None

        def num(key: str, default, kind=float):
            value = labels.get(PREFIX + key)
            return default if value in (None, "") else kind(value)

        return cls(min_replicas=num("min_replicas", 1, int),
                   max_replicas=num("max_replicas", 1, int),
                   target_cpu_percent=num("target_cpu_percent", 0.0),
                   target_requests_per_second=num("target_requests_per_second", 0.0),
                   tolerance=num("tolerance", DEFAULT_TOLERANCE),
                   sync_period=num("sync_period", DEFAULT_SYNC_PERIOD),
                   scale_up_window=num("scale_up_window", DEFAULT_SCALE_UP_WINDOW),
                   scale_down_window=num("scale_down_window", DEFAULT_SCALE_DOWN_WINDOW))


def cpu_limit(nano_cpus: int, cpu_quota: int = 0, cpu_period: int = 0) -> float:
    """CPUs a replica may use: NanoCpus, else quota/period, else 1."""
    if nano_cpus:
        return nano_cpus / 1e9
    if cpu_quota > 0 and cpu_period > 0:
        return cpu_quota / cpu_period
    return 1.0


def utilisation(samples: list[tuple[int, float, float]]) -> float | None:
    """Percent of the limit used, over replicas: ``samples`` are (cpu ns used in the
    period, period seconds, limit in CPUs) per replica with a full period measured;
    None when there is none (HPA: sum of usage over sum of requests)."""
    used = sum(ns / 1e9 for ns, _, _ in samples)
    allowed = sum(period * limit for _, period, limit in samples)
    if not samples or allowed <= 0:
        return None
    return 100.0 * used / allowed


def raw_desired(current: int, usage_percent: float, policy: Policy) -> int:
    """HPA's formula with its tolerance, clamped to the policy's bounds (CPU)."""
    return raw_desired_ratio(current, usage_percent / policy.target_cpu_percent, policy)


def raw_desired_ratio(current: int, ratio: float, policy: Policy) -> int:
    """HPA's formula for any metric: ``ratio`` is its value over its target."""
    if current <= 0:
        return policy.min_replicas
    if abs(ratio - 1.0) <= policy.tolerance:
        want = current
    else:
        want = math.ceil(current * ratio - 1e-9)  # ceil, robust to float dust
    return _clamp(want, policy)


def _clamp(n: int, policy: Policy) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, n))


def stabilised(current: int, now: float, history: list[tuple[float, int]],
               policy: Policy) -> int:
    """The replica count to go to now, from the recommendations ``history`` ((time,
    desired), the newest last, including this period's)."""
    if not history:
        return _clamp(current, policy)
    up = [r for t, r in history if t >= now - policy.scale_up_window] or [history[-1][1]]
    down = [r for t, r in history if t >= now - policy.scale_down_window] or [history[-1][1]]
    latest = history[-1][1]
    if latest > current:
        target = max(current, min(up))
        target = min(target, max(2 * current, current + 4))
    elif latest < current:
        target = min(current, max(down))
    else:
        target = current
    return _clamp(target, policy)


def trim(history: list[tuple[float, int]], now: float, policy: Policy) -> list[tuple[float, int]]:
    """What the windows still need of ``history``."""
    keep = max(policy.scale_up_window, policy.scale_down_window) + policy.sync_period
    return [(t, r) for t, r in history if t >= now - keep]
