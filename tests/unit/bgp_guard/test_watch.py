"""The watch loop on an in-memory live feed: events reach the sinks as updates arrive, the
timer resolves withdrawn events with no traffic, and latency is measured per update."""

from __future__ import annotations

import asyncio
from typing import Any

from bgp_guard.engine import Guard
from bgp_guard.feeds.live import LiveFeed
from bgp_guard.watch import run

from .helpers import guard_config, update


class Collect:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.events.append(event)


async def wait_for(condition: Any, timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def test_watch_delivers_and_resolves() -> None:
    now = [1002.0]
    guard = Guard(
        guard_config({"prefixes": {"192.0.2.0/24": {"origins": [64500]}}, "resolve_after": 5})
    )
    sink = Collect()

    async def scenario() -> None:
        feed = LiveFeed("test")
        stop = asyncio.Event()
        task = asyncio.ensure_future(run(guard, [feed], [sink], stop, clock=lambda: now[0]))
        feed._emit(update({"t": 1000, "prefix": "192.0.2.0/24", "path": [64510, 65066]}))
        feed._emit(update({"t": 1001, "prefix": "192.0.2.0/24", "withdraw": True}))
        await wait_for(lambda: len(sink.events) == 2)
        now[0] = 1010.0  # no more updates: the timer resolves it
        await wait_for(lambda: len(sink.events) == 3, timeout=5)
        stop.set()
        stats = await task
        assert stats.updates == 2 and stats.events == 3
        # the two updates (t=1000, 1001) reached the sink at clock 1002; the timer's
        # resolution is not an update's latency
        assert stats.latencies == [2.0, 1.0] and stats.percentile(0.99) == 2.0

    asyncio.run(scenario())
    assert [e["state"] for e in sink.events] == ["ongoing", "withdrawn", "resolved"]
