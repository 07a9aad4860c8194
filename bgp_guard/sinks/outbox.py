"""Deliver the queued notices: one task per sink, reading that sink's queue in the state file.

A sink's notices go out one at a time, oldest first, so a close never overtakes its open.
A failed attempt is retried after a backoff that doubles from retry.min to retry.max, each
wait drawn between half and all of it ("equal jitter"), so guards whose webhook came back
do not all hit it in the same second. Nothing here runs on the detection path: the engine
only writes to the queue, and a sink that hangs or is down delays only its own task. A
notice is marked delivered only once the sink accepted it, so a restart resends at most the
one notice that was in flight (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from bgp_guard.sinks.config import Retry
from bgp_guard.state import Store
from overcast.metrics import REGISTRY

log = logging.getLogger(__name__)

_DELIVERED = Counter(
    "overcast_bgp_guard_sink_deliveries",
    "Notices a sink accepted, by sink and notice (open, close, repeat, ack, silence).",
    ["sink", "notice"],
    registry=REGISTRY,
)
_FAILED = Counter(
    "overcast_bgp_guard_sink_failures",
    "Delivery attempts that failed (each is retried with backoff), by sink.",
    ["sink"],
    registry=REGISTRY,
)
_DEPTH = Gauge(
    "overcast_bgp_guard_sink_queue_depth",
    "Notices queued for a sink (kept in the state file until it accepts them).",
    ["sink"],
    registry=REGISTRY,
)


class Transport(Protocol):
    """A sink's way out: `send` returns once the receiver accepted the notice, raises
    (OSError, SinkError, ...) if it did not."""

    async def send(self, notice: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class SinkError(Exception):
    """The receiver answered, and refused (an HTTP 4xx/5xx, an SMTP error)."""


def backoff(attempts: int, retry: Retry, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempts`-th failure (1, 2, ...)."""
    ceiling: float = min(retry.max, retry.min * 2.0 ** min(attempts - 1, 32))
    return ceiling / 2 + rand() * ceiling / 2


class Outbox:
    def __init__(
        self,
        store: Store,
        transports: Mapping[str, Transport],
        retries: Mapping[str, Retry],
        clock: Callable[[], float] = time.time,
        poll: float = 1.0,
    ) -> None:
        self.store = store
        self.transports = transports
        self.retries = retries
        self.clock = clock
        self.poll = poll  # look at the queue this often anyway: `guard ack` queues from outside
        self._wake = {name: asyncio.Event() for name in transports}

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def depths(self) -> dict[str, int]:
        depths = self.store.queue_depths(list(self.transports))
        for name, n in depths.items():
            _DEPTH.labels(name).set(n)
        return depths

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then close the transports."""
        try:
            await asyncio.gather(*(self._deliver(name, stop) for name in self.transports))
        finally:
            await asyncio.gather(
                *(t.close() for t in self.transports.values()), return_exceptions=True
            )

    async def _wait(self, name: str, stop: asyncio.Event, seconds: float) -> None:
        wake = self._wake[name]
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        wake.clear()

    async def _deliver(self, name: str, stop: asyncio.Event) -> None:
        transport, retry = self.transports[name], self.retries[name]
        while not stop.is_set():
            item = self.store.next_delivery(name)
            if item is None:
                await self._wait(name, stop, self.poll)
                continue
            now = self.clock()
            if item.next_try > now:  # backing off after a failure
                await self._wait(name, stop, min(item.next_try - now, self.poll))
                continue
            try:
                await asyncio.wait_for(transport.send(item.payload), retry.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff(item.attempts + 1, retry)
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, TimeoutError):
                    reason = f"no answer within {retry.timeout:g} s"
                self.store.failed(item.id, reason, self.clock() + delay)
                _FAILED.labels(name).inc()
                log.warning(
                    "sink %s: %s notice not delivered (attempt %d): %s; retrying in %.1f s",
                    name, item.notice, item.attempts + 1, reason, delay,
                )  # fmt: skip
            else:
                self.store.delivered(item.id, self.clock())
                _DELIVERED.labels(name, item.notice).inc()
