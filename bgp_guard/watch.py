"""Run the guard on live feeds: every update from every feed goes through one `Guard` on one
asyncio loop, events go to the sinks at once, and a one-second timer resolves events even
when no update arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bgp_guard.config import Feeds
from bgp_guard.engine import Guard
from bgp_guard.feeds.bmp import BmpListener
from bgp_guard.feeds.live import LiveFeed
from bgp_guard.feeds.session import BgpSpeaker
from bgp_guard.sinks import Sink


@dataclass
class WatchStats:
    updates: int = 0
    events: int = 0
    # seconds from an update's receipt (its `time`) to its events reaching the sinks
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_feeds(config: Feeds) -> list[LiveFeed]:
    """Open the configured feeds' sockets; raises OSError if one cannot listen."""
    feeds: list[LiveFeed] = []
    try:
        if config.bgp is not None:
            bgp = config.bgp
            speaker = BgpSpeaker(
                bgp.local_asn,
                str(bgp.router_id),
                peers={str(a): asn for a, asn in bgp.neighbours.items()},
                hold_time=bgp.hold_time,
            )
            feeds.append(speaker)
            if bgp.listen is not None:
                await speaker.listen(str(bgp.listen), bgp.port)
            for neighbour in bgp.connect:
                local = None if bgp.local_address is None else str(bgp.local_address)
                speaker.connect(str(neighbour), bgp.port, local_address=local)
        if config.bmp is not None:
            bmp = BmpListener()
            feeds.append(bmp)
            await bmp.listen(str(config.bmp.listen), config.bmp.port)
    except BaseException:
        await asyncio.gather(*(f.close() for f in feeds))
        raise
    return feeds


async def run(
    guard: Guard,
    feeds: Sequence[LiveFeed],
    sinks: Sequence[Sink],
    stop: asyncio.Event,
    clock: Callable[[], float] = time.time,
) -> WatchStats:
    """Process the feeds' updates until `stop` is set."""
    stats = WatchStats()

    def deliver(events: list[dict[str, Any]], received: float | None) -> None:
        for event in events:
            for sink in sinks:
                sink.write(event)
        stats.events += len(events)
        if received is not None:
            stats.latencies.append(clock() - received)

    async def pump(feed: LiveFeed) -> None:
        async for update in feed.updates():
            stats.updates += 1
            events = guard.process(update)
            if events:
                deliver(events, update.time)

    async def timer() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                deliver(guard.finish(clock()), None)

    tasks = [asyncio.ensure_future(pump(f)) for f in feeds]
    try:
        await timer()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats
