"""Pre-started shims for the next container start (conch-runtime only).

A container start spends ~20 ms of its time in conch-runtime's interpreter start-up and
imports before ``create`` does any work. :class:`WarmPool` keeps one shim started ahead
of time in warm mode (``conch-shim --warm``, see shim/conch-shim.c): its runtime has
already paid that and waits for its argv. A start takes it (:meth:`take`) and a
replacement is started in the background (:meth:`refill`), off the start's path.

The pool holds only the engine's end of each warm shim's socket: when conchd stops or
dies, the sockets close and the warm shims and their runtimes exit by themselves, so
there is nothing to reconcile at the next start. A warm shim that died meanwhile is
noticed at :meth:`take` (or by the caller when activation gets no answer), and the
caller falls back to a cold spawn.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

__all__ = ["WarmPool"]


class WarmPool:
    def __init__(self, *, runtime: str, runtime_root: str, shim: str, size: int = 1):
        self.runtime = runtime
        self.runtime_root = runtime_root
        self.shim = shim
        self.size = size
        self._ready: list = []  # conch.shim.client.WarmShim
        self._lock = threading.Lock()
        self._closed = False
        self._filling = False

    def take(self):
        """A live warm shim, or None (the caller spawns a cold one)."""
        while True:
            with self._lock:
                if not self._ready:
                    return None
                warm = self._ready.pop()
            if warm.alive():
                return warm
            warm.close()

    def refill(self) -> None:
        """Top the pool up (blocking, ~3 ms per shim: call from a worker thread)."""
        from conch.shim import client as shim

        with self._lock:
            if self._filling or self._closed:
                return
            self._filling = True
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._ready) >= self.size:
                        return
                try:
                    warm = shim.spawn_warm(runtime=self.runtime, runtime_root=self.runtime_root,
                                           binary=self.shim)
                except OSError as exc:
                    log.warning("starting a warm shim: %s", exc)
                    return
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._ready.append(warm)
                if closed:  # conchd is stopping: this one goes, and is waited for, too
                    warm.discard(3.0)
                    return
        finally:
            with self._lock:
                self._filling = False

    def close(self, timeout: float = 3.0) -> None:
        """Discard the warm shims and wait (at most ``timeout`` s in all) until they and
        their runtimes have exited, so none outlives conchd's stop."""
        import time

        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        deadline = time.monotonic() + timeout
        for warm in ready:
            if not warm.discard(max(0.0, deadline - time.monotonic())):
                log.warning("a warm shim did not exit within %.0f s of its discard", timeout)
