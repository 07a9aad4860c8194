"""The status page `guard watch --status-port` serves on loopback: open and recent events
with their rationale, AS path, peers and acknowledgement, and the feeds' health, kept live
by Server-Sent Events (no reload, no JavaScript framework).

- GET /             the page (page.html)
- GET /api/status   the same data as JSON, for scripts
- GET /events       an SSE stream: the status again whenever it changes (looked at twice a
                    second; an unchanged status is not resent), a comment every 15 s so
                    proxies keep the stream open
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bgp_guard.feeds.live import LiveFeed
from bgp_guard.state import Store, StoredEvent

PAGE = Path(__file__).with_name("page.html")
RECENT = 50  # closed events shown
POLL = 0.5
KEEPALIVE = 15.0


def _event(stored: StoredEvent, now: float) -> dict[str, Any]:
    event = stored.event
    return {
        "key": stored.key,
        "open": stored.open,
        "state": stored.state,
        "type": event["type"],
        "artemis": event.get("artemis"),
        "prefix": event.get("prefix"),
        "about": event.get("about"),
        "offending_as": event.get("offending_as"),
        "rationale": event["rationale"],
        "peers": event.get("peers", []),
        "example_path": event.get("example_path", []),
        "first_seen": stored.first_seen,
        "changed_at": stored.changed_at,
        "acked_by": stored.acked_by,
        "ack_note": stored.ack_note,
        "silenced_until": stored.silenced_until if stored.silenced(now) else None,
    }


class StatusBoard:
    """What the page shows, read from the state file and the running feeds."""

    def __init__(
        self, store: Store, feeds: Sequence[LiveFeed], clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.feeds = feeds
        self.clock = clock

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        events = self.store.events(limit=RECENT + 500)
        return {
            "ongoing": [_event(e, now) for e in events if e.open],
            "recent": [_event(e, now) for e in events if not e.open][:RECENT],
            "feeds": [
                {
                    "kind": feed.stats.kind,
                    "updates": feed.stats.updates,
                    "outage": feed.outage(),
                    "peers_down": feed.peers_down(),
                }
                for feed in self.feeds
            ],
        }


def app(board: StatusBoard, stop: asyncio.Event) -> web.Application:
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def status(_: web.Request) -> web.Response:
        return web.json_response({**board.snapshot(), "time": board.clock()})

    async def events(request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await stream.prepare(request)
        sent, quiet = "", 0.0
        while not stop.is_set():
            body = json.dumps(board.snapshot(), sort_keys=True)
            if body != sent:
                await stream.write(f"data: {body}\n\n".encode())
                sent, quiet = body, 0.0
            elif quiet >= KEEPALIVE:
                await stream.write(b": keepalive\n\n")
                quiet = 0.0
            try:
                await asyncio.wait_for(stop.wait(), POLL)
            except TimeoutError:
                quiet += POLL
        return stream

    application = web.Application()
    application.router.add_get("/", page)
    application.router.add_get("/api/status", status)
    application.router.add_get("/events", events)
    return application


async def serve(board: StatusBoard, port: int, stop: asyncio.Event) -> web.AppRunner:
    """Serve on 127.0.0.1:`port` until the runner is cleaned up; OSError if the port is
    taken."""
    runner = web.AppRunner(app(board, stop), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
