"""The RIS-live websocket client against a real websocket server (the `websockets` library's)
on 127.0.0.1 that replays the shared RIS-live sample, frame by frame. Nothing talks to the
real RIS. No root needed.

Covered: the subscription messages the server receives; the sample's frames through the
feed (its ris_error and its cut-short last line counted, never a traceback); more bad frames;
reconnecting and subscribing again after a clean close, a TCP reset and a refused connection;
a server that stops answering pings; and `overcast guard watch --ris-live` raising the
exact-origin alert the sample's UPDATE causes under a config that expects another origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bgp_guard.config import RisLiveWebsocket
from bgp_guard.feeds.ris_live import RisLiveFeed
from bgp_guard.feeds.ris_websocket import RisLiveClient, subscriptions
from bgp_guard.update import FeedItem
from overcast import exitcodes
from overcast.metrics import REGISTRY
from tests.conftest import shared_data
from tests.unit.bgp_guard.helpers import guard_config

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]
MONITORED = "45.161.192.0/23"  # the sample's one UPDATE announces it, from AS268481
GUARD = guard_config({"prefixes": {MONITORED: {"origins": [64496]}}})
FILTERS = subscriptions(GUARD)
FAST = {"reconnect_min": 0.01, "reconnect_max": 0.05}


def sample_lines() -> list[str]:
    return (shared_data("bgp") / "ris-live-stream.json").read_text().splitlines()


async def until(condition: Callable[[], object], timeout: float = 10) -> None:
    """Wait for `condition` to hold, polling; fail after `timeout` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


@dataclass
class Session:
    """One client connection as the server saw it."""

    ws: ServerConnection
    received: list[Any] = field(default_factory=list)

    async def subscribed(self) -> None:
        await until(lambda: len(self.received) >= len(FILTERS))

    async def send_lines(self, lines: list[str]) -> None:
        for line in lines:
            await self.ws.send(line)


Script = Callable[[Session, int], Awaitable[None]]


@dataclass
class RisServer:
    """A websocket server on 127.0.0.1 that runs `script` on each connection (the n-th one
    gets n, from 0) while recording what the client sends."""

    script: Script
    sessions: list[Session] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws/?client=overcast-test"

    async def handle(self, ws: ServerConnection) -> None:
        session = Session(ws)
        self.sessions.append(session)

        async def read() -> None:
            with contextlib.suppress(Exception):
                async for message in ws:
                    session.received.append(json.loads(message))

        reader = asyncio.ensure_future(read())
        try:
            with contextlib.suppress(ConnectionClosed):  # the client may leave first
                await self.script(session, len(self.sessions) - 1)
            await ws.wait_closed()
        finally:
            reader.cancel()

    @contextlib.asynccontextmanager
    async def running(self, port: int = 0) -> AsyncIterator[RisServer]:
        async with serve(self.handle, "127.0.0.1", port) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self
            server.close(close_connections=True)


@contextlib.asynccontextmanager
async def client(url: str, **settings: Any) -> AsyncIterator[tuple[RisLiveClient, list[FeedItem]]]:
    feed = RisLiveClient(RisLiveWebsocket(url=url, **(FAST | settings)), FILTERS)
    items: list[FeedItem] = []

    async def collect() -> None:
        async for item in feed.updates():
            items.append(item)

    collector = asyncio.ensure_future(collect())
    feed.start()
    try:
        yield feed, items
    finally:
        await feed.close()
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)


def subscribe_messages() -> list[dict[str, Any]]:
    return [{"type": "ris_subscribe", "data": f} for f in FILTERS]


def metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name, {"feed": "ris-live"})
    return 0.0 if value is None else value


def test_replays_the_sample_and_counts_its_bad_frames(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = sample_lines()
    with socket.socket() as probe:  # a proxy nobody runs: a loopback URL must not use it
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for variable in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(variable, nowhere)

    async def replay(session: Session, _: int) -> None:
        await session.subscribed()
        await session.send_lines(lines)

    async def scenario() -> None:
        async with RisServer(replay).running() as server:
            async with client(server.url) as (feed, items):
                await until(lambda: feed.stats.records == len(lines))
                check(feed, items, server)
            # closed with 1001, going away, not dropped
            await server.sessions[0].ws.wait_closed()
            assert server.sessions[0].ws.close_code == 1001

    def check(feed: RisLiveClient, items: list[FeedItem], server: RisServer) -> None:
        assert feed.connected
        # the same Updates and PeerDown as the JSON-lines parser reads from the file
        assert items == list(RisLiveFeed(lines))
        assert feed.stats.as_dict() == {
            "records": 7,
            "updates": 1,
            "peer_downs": 1,
            "errors": 2,  # the ris_error, and the last line cut short
        }
        (session,) = server.sessions
        assert session.received == subscribe_messages()
        assert session.received[0] == {
            "type": "ris_subscribe",
            "data": {
                "type": "UPDATE",
                "prefix": MONITORED,
                "moreSpecific": True,
                "lessSpecific": False,
                "socketOptions": {"includeRaw": False},
            },
        }

    with caplog.at_level(logging.INFO, "bgp_guard.feeds.ris-live"):
        asyncio.run(scenario())
    assert "RIS-live server error: this is a test error message" in caplog.text
    assert "frame 7: " in caplog.text  # the cut-short line, by its frame number
    assert not [r for r in caplog.records if r.exc_info]


def test_bad_frames_are_counted_and_the_feed_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    update = sample_lines()[0]
    bad: list[str | bytes] = [
        b"\xff\xfe not UTF-8",  # a binary frame
        "[1, 2]",
        "{}",  # no type: not a message we know, skipped without counting
        '{"type": "ris_message", "data": {"type": "UPDATE"}}',
        '{"type": "ris_error", "data": "no data object"}',
        "x" * 100_000,
    ]

    async def send(session: Session, _: int) -> None:
        await session.subscribed()
        for frame in bad:
            await session.ws.send(frame)
        await session.ws.send(update)

    async def scenario() -> None:
        async with RisServer(send).running() as server, client(server.url) as (feed, items):
            await until(lambda: feed.stats.records == len(bad) + 1)
            assert len(items) == 1 and feed.connected
            assert feed.stats.errors == len(bad) - 1
            assert feed.losses == 0

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.ris-live"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.exc_info]


def test_reconnects_and_subscribes_again(caplog: pytest.LogCaptureFixture) -> None:
    """A clean close, then a TCP reset: each time the client comes back after its backoff,
    subscribes again, and the gauge follows."""
    lines = sample_lines()

    async def flaky(session: Session, n: int) -> None:
        await session.subscribed()
        await session.send_lines(lines[n : n + 1])
        if n == 0:
            await session.ws.close(1001, "going away")
        elif n == 1:
            assert session.ws.transport is not None
            session.ws.transport.abort()

    async def scenario() -> None:
        connects, losses = (
            metric("overcast_bgp_feed_connects_total"),
            metric("overcast_bgp_feed_connection_losses_total"),
        )
        async with RisServer(flaky).running() as server, client(server.url) as (feed, items):
            await until(lambda: feed.connects == 3 and len(items) == 2)
            await until(lambda: all(len(s.received) == len(FILTERS) for s in server.sessions))
            assert [s.received for s in server.sessions] == [subscribe_messages()] * 3
            assert (feed.losses, feed.connected) == (2, True)
            assert metric("overcast_bgp_feed_connected") == 1
            assert metric("overcast_bgp_feed_connects_total") == connects + 3
            assert metric("overcast_bgp_feed_connection_losses_total") == losses + 2
            assert items == list(RisLiveFeed(lines[:2]))  # the UPDATE, then the PeerDown
        assert metric("overcast_bgp_feed_connected") == 0

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.ris-live"):
        asyncio.run(scenario())
    assert "closed by the server" in caplog.text
    assert "routes held are kept, not withdrawn" in caplog.text
    assert "reconnected and subscribed again after" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def test_waits_for_a_server_that_is_not_there_yet(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a free loopback port, nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def idle(session: Session, _: int) -> None:
        await session.subscribed()

    async def scenario() -> None:
        server = RisServer(idle)
        server.port = port
        async with client(server.url) as (feed, _):
            await until(lambda: feed.losses >= 3)  # refused, refused, refused ...
            assert not feed.connected
            async with server.running(port):
                await until(lambda: feed.connected)
                await server.sessions[0].subscribed()

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.ris-live"):
        asyncio.run(scenario())
    assert "cannot connect (" in caplog.text
    assert "connected and subscribed after" in caplog.text


def test_a_server_that_stops_answering_pings_is_left(caplog: pytest.LogCaptureFixture) -> None:
    """The first connection goes silent at the TCP level (the server reads nothing, so it
    answers no ping): the client notices by its own pings and connects again."""
    release = asyncio.Event()

    async def deaf_first(session: Session, n: int) -> None:
        await session.subscribed()
        if n == 0:
            assert session.ws.transport is not None
            session.ws.transport.pause_reading()
            await release.wait()
            session.ws.transport.abort()

    async def scenario() -> None:
        async with (
            RisServer(deaf_first).running() as server,
            client(server.url, ping_interval=0.1, ping_timeout=0.2) as (feed, _),
        ):
            await until(lambda: feed.connects == 2)
            assert feed.losses == 1
            release.set()

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.ris-live"):
        asyncio.run(scenario())
    assert "keepalive ping timeout" in caplog.text


def test_guard_watch_raises_the_alert_and_says_when_it_is_blind(tmp_path: Path) -> None:
    """`overcast guard watch --ris-live URL` subscribes to the monitored prefix, and the
    sample's UPDATE (45.161.192.0/23 from AS268481, where the config expects AS64496) is an
    exact-origin alert on stdout. The server then goes away: a feed-down event, and no
    withdrawal of the alert; it comes back: the client subscribes again and feed-down is
    resolved. SIGINT ends it with exit 3."""
    config = tmp_path / "overcast.yaml"
    config.write_text(
        f"sites: {{}}\nguard:\n  prefixes: {{{MONITORED}: {{origins: [64496]}}}}\n"
        "  feeds: {ris_live: {reconnect_min: 0.05, reconnect_max: 0.2}}\n"
    )
    lines = sample_lines()

    async def replay_once(session: Session, n: int) -> None:
        await session.subscribed()
        if n == 0:
            await session.send_lines(lines)

    async def next_event(watch: asyncio.subprocess.Process) -> dict[str, Any]:
        assert watch.stdout is not None
        line = await asyncio.wait_for(watch.stdout.readline(), 30)
        assert line, "guard watch ended early"
        return dict(json.loads(line))

    async def scenario() -> tuple[list[dict[str, Any]], str, int, RisServer]:
        server = RisServer(replay_once)
        first = contextlib.AsyncExitStack()
        await first.enter_async_context(server.running())
        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "overcast", "guard", "watch", "--config", str(config),
            "--ris-live", server.url, "--json",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            events = [await next_event(watch)]  # the alert
            await first.aclose()  # the server goes away: refused from now on
            events.append(await next_event(watch))  # blind
            async with server.running(server.port):  # back
                events.append(await next_event(watch))
                await server.sessions[1].subscribed()
        finally:
            await first.aclose()
            if watch.returncode is None:
                watch.send_signal(signal.SIGINT)
            try:
                _, err = await asyncio.wait_for(watch.communicate(), 20)
            except TimeoutError:
                watch.kill()
                _, err = await watch.communicate()
        return events, err.decode(), watch.returncode or 0, server

    events, err, code, server = asyncio.run(scenario())
    assert code == exitcodes.ALERT, err
    assert [s.received for s in server.sessions] == [subscribe_messages()] * 2
    alert, blind, back = events
    assert {k: alert[k] for k in ("type", "state", "prefix", "offending_as", "peers")} == {
        "type": "exact-origin",
        "state": "ongoing",
        "prefix": MONITORED,
        "offending_as": 268481,
        "peers": ["72.22.223.9"],
    }
    assert (blind["type"], blind["state"], blind["about"]) == ("feed-down", "ongoing", "ris-live")
    assert blind["rationale"].startswith(f"RIS-live {server.url} is not connected (since ")
    assert blind["rationale"].endswith(
        "UTC): updates to our prefixes go unseen until it is back; the routes held are kept."
    )
    assert (back["type"], back["state"]) == ("feed-down", "resolved")
    assert back["rationale"] == "ris-live is back; what it missed meanwhile is not replayed."
    assert "Traceback" not in err
    assert "RIS-live server error: this is a test error message" in err
    assert "reconnected and subscribed again after" in err
