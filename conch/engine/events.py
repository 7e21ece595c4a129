"""The engine's event stream (``docker events``): a bounded history plus live fan-out.

Events are Docker's shape in snake_case: type (container, image, network, volume),
action (create, start, die, stop, kill, destroy, pause, unpause, rename, exec_start, ...),
actor id and attributes, and a nanosecond timestamp. Subscribers get a queue; a slow
subscriber loses events rather than slowing the engine (its queue is bounded).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: str
    action: str
    actor_id: str
    attributes: dict = field(default_factory=dict, hash=False)
    time_nano: int = 0
    scope: str = "local"

    @property
    def time(self) -> int:
        return self.time_nano // 1_000_000_000


class EventBus:
    def __init__(self, history: int = 1000):
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._subscribers: set[asyncio.Queue] = set()

    def publish(self, type: str, action: str, actor_id: str, **attributes) -> Event:
        return self.publish_event(Event(
            type=type, action=action, actor_id=actor_id,
            attributes={k: str(v) for k, v in attributes.items() if v is not None},
            time_nano=time.time_ns()))

    def publish_event(self, event: Event) -> Event:
        self._history.append(event)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                pass
        return event

    def history(self, since_ns: int = 0, until_ns: int | None = None) -> list[Event]:
        return [e for e in self._history
                if e.time_nano >= since_ns and (until_ns is None or e.time_nano <= until_ns)]

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, *, since: int | None = None, until: int | None = None,
                        filters: dict[str, list[str]] | None = None):
        """Past events from ``since`` (ns), then live ones, until ``until`` (or forever),
        with Docker's filters (type, event, container, image, label, ...)."""
        filters = filters or {}
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            if since is not None or until is not None:
                for ev in self.history(since or 0, until):
                    if matches(ev, filters):
                        yield ev
            while True:
                timeout = None
                if until is not None:
                    timeout = (until - time.time_ns()) / 1e9
                    if timeout <= 0:
                        return
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout)
                except asyncio.TimeoutError:
                    return
                if matches(ev, filters):
                    yield ev
        finally:
            self._subscribers.discard(queue)


def matches(ev: Event, filters: dict[str, list[str]]) -> bool:
    """Docker's events filter semantics (daemon/events/filter.go), the common keys:
    values of one key are OR'ed, keys AND'ed, every label listed must match; an event
    filter matches "health_status" for "health_status: healthy"."""
    def any_of(key: str, *values: str) -> bool:
        wanted = filters.get(key)
        return not wanted or any(v in wanted for v in values if v)

    labels = [f"{k}={v}" for k, v in ev.attributes.items()] + list(ev.attributes)
    return (any_of("type", ev.type) and any_of("event", ev.action, ev.action.split(":")[0])
            and (ev.type != "container" or any_of("container", ev.actor_id, ev.attributes.get("name", "")))
            and any_of("image", ev.attributes.get("image", ""),
                       ev.actor_id if ev.type == "image" else "")
            and (not filters.get("label") or all(w in labels for w in filters["label"])))
