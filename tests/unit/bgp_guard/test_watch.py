"""The watch loop on an in-memory live feed: events reach the sinks as updates arrive, the
timer resolves withdrawn events with no traffic, and latency is measured per update."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

from bgp_guard.engine import Guard
from bgp_guard.feeds.live import LiveFeed
from bgp_guard.rib import prefix_key
from bgp_guard.rpki import load_vrps
from bgp_guard.update import PeerDown, Prefix
from bgp_guard.watch import VrpFile, run

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


def test_start_feeds_opens_and_closes_bmp() -> None:
    from bgp_guard.config import Feeds
    from bgp_guard.watch import start_feeds

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        config = Feeds.model_validate({"bmp": {"listen": "127.0.0.1", "port": port}})
        feeds = await start_feeds(config)
        try:
            assert [f.stats.kind for f in feeds] == ["bmp"]
            _, writer = await asyncio.open_connection("127.0.0.1", port)  # it listens
            writer.close()
        finally:
            await asyncio.gather(*(f.close() for f in feeds))

    asyncio.run(scenario())


def test_vrp_file_reload_reports_roa_changes(tmp_path: Path) -> None:
    vrp_path = tmp_path / "vrps.json"
    roa = {"asn": 64500, "prefix": "192.0.2.0/24", "maxLength": 24, "ta": "t"}
    vrp_path.write_text(json.dumps({"roas": [roa]}))
    vrp_file = VrpFile(vrp_path)
    guard = Guard(
        guard_config({"prefixes": {"192.0.2.0/24": {"origins": [64500]}}}),
        vrps=load_vrps(vrp_path),
    )
    sink = Collect()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(run(guard, [], [sink], stop, vrp_file=vrp_file))
        vrp_path.write_text("not a VRP file")  # a bad rewrite is skipped, not fatal
        os.utime(vrp_path, (1, 1))
        await asyncio.sleep(1.5)
        vrp_path.write_text(json.dumps({"roas": []}))
        os.utime(vrp_path, (2, 2))
        await wait_for(lambda: sink.events, timeout=5)
        stop.set()
        await task

    asyncio.run(scenario())
    (event,) = sink.events
    assert event["type"] == "roa-change"
    assert event["rationale"] == (
        "ROA AS64500 192.0.2.0/24 max-length 24 was removed: 192.0.2.0/24 from AS64500 goes "
        "from valid to not-found."
    )


class Blinkable(LiveFeed):
    def __init__(self) -> None:
        super().__init__("test")
        self.why: str | None = None

    def outage(self) -> str | None:
        return self.why


def test_a_feed_outage_is_an_event_until_it_is_over() -> None:
    """The timer asks each feed whether it can see: an outage is a feed-down event, ongoing
    while it lasts and resolved after; held routes and their events are left alone."""
    guard = Guard(guard_config({"prefixes": {"192.0.2.0/24": {"origins": [64500]}}}))
    sink = Collect()

    async def scenario() -> None:
        feed = Blinkable()
        stop = asyncio.Event()
        task = asyncio.ensure_future(run(guard, [feed], [sink], stop, clock=lambda: 1000.0))
        feed._emit(update({"t": 999, "prefix": "192.0.2.0/24", "path": [64510, 65066]}))
        await wait_for(lambda: len(sink.events) == 1)
        feed.why = "the test feed is cut off."
        await wait_for(lambda: len(sink.events) == 2)
        feed.why = None
        await wait_for(lambda: len(sink.events) == 3)
        stop.set()
        await task

    asyncio.run(scenario())
    hijack, down, up = sink.events
    assert (hijack["type"], hijack["state"]) == ("exact-origin", "ongoing")
    assert (down["type"], down["state"], down["about"]) == ("feed-down", "ongoing", "test")
    assert down["rationale"] == "the test feed is cut off."
    assert (up["type"], up["state"]) == ("feed-down", "resolved")
    assert up["rationale"] == "test is back; what it missed meanwhile is not replayed."
    assert guard.rib.holders(prefix_key(Prefix.parse("192.0.2.0/24")))  # still held


def test_a_peer_down_and_a_silent_feed_are_events_until_they_recover() -> None:
    """A BGP neighbour whose session ends is a peer-down event until it is Established
    again; a feed with no update for silent_after seconds is feed-silent until the next."""
    config = {"prefixes": {"192.0.2.0/24": {"origins": [64500]}}, "feeds": {"silent_after": 30}}
    guard = Guard(guard_config(config))
    sink = Collect()
    now = [1000.0]

    async def scenario() -> None:
        feed = Blinkable()
        stop = asyncio.Event()
        task = asyncio.ensure_future(run(guard, [feed], [sink], stop, clock=lambda: now[0]))
        feed._emit_peer_down(PeerDown(999, "192.0.2.1", 64500), "BGP neighbour 192.0.2.1")
        await wait_for(lambda: len(sink.events) == 1)
        feed._peer_up("BGP neighbour 192.0.2.1")
        await wait_for(lambda: len(sink.events) == 2)
        now[0] = 1031.0  # the PeerDown was the last item, at 1000
        await wait_for(lambda: len(sink.events) == 3)
        feed._emit(update({"t": 1031, "prefix": "192.0.2.0/24", "path": [64510, 64500]}))
        await wait_for(lambda: len(sink.events) == 4)
        stop.set()
        await task

    asyncio.run(scenario())
    down, up, silent, loud = sink.events
    assert (down["type"], down["state"], down["about"]) == (
        "peer-down",
        "ongoing",
        "BGP neighbour 192.0.2.1",
    )
    assert down["rationale"] == (
        "BGP neighbour 192.0.2.1 (AS64500) left Established; its routes are withdrawn."
    )
    assert (up["state"], up["rationale"]) == (
        "resolved",
        "BGP neighbour 192.0.2.1 is Established again.",
    )
    assert (silent["type"], silent["state"], silent["about"]) == ("feed-silent", "ongoing", "test")
    assert silent["rationale"] == "test delivered no update for 30 s (guard.feeds.silent_after)."
    assert (loud["type"], loud["state"]) == ("feed-silent", "resolved")
