"""A RIPE RIS-live websocket client (https://ris-live.ripe.net/manual/) as a live feed.

On each connection it sends one `ris_subscribe` per filter (`subscriptions`), then turns
every `ris_message` frame into Updates with the JSON-lines parser (`ris_live.decode`). A
`ris_error` is logged with the server's words and counted; a frame that is not a valid
message is counted and logged with its number, and the feed goes on.

A proxy set in the environment (https_proxy, all_proxy, ...) is used, as by browsers,
except for a loopback URL.

Keepalive: websocket pings (RFC 6455 section 5.5.2) every `ping_interval` seconds; no pong
within `ping_timeout` ends the connection. Silence alone is no failure: a few monitored
prefixes may see no UPDATE for hours.

A lost connection (closed, refused, timed out, no pong) is retried after a delay that doubles
from `reconnect_min` to `reconnect_max`, drawn at random from the upper half of that
interval so that many guards cut off together do not come back in step. Each new connection
subscribes again (the server forgets subscriptions with the connection).

While disconnected the guard's visibility is *unknown*, and it says so: a warning in the log,
the `overcast_bgp_feed_connected` gauge at 0, `overcast_bgp_feed_connection_losses` counted,
and (`outage`, read by `guard watch` every second) a `feed-down` event to the sinks, resolved
when the feed is back.
It does not turn the loss into withdrawals: RIS peers did not withdraw anything, and
withdrawing every held route would report hijacks as over (a false all-clear) and every
monitored prefix as invisible (a false alarm). The routes held stay as they were; only a
RIS_PEER_STATE "down" from the collector, a real session loss, withdraws a peer's routes.
RIS-live does not replay what was missed, so after a reconnect the held routes are as fresh
as the messages that arrive; the log says how long the feed was blind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.frames import CloseCode

from bgp_guard.config import GuardConfig, RisLiveWebsocket
from bgp_guard.feeds.live import LiveFeed
from bgp_guard.feeds.ris_live import ServerError, decode
from bgp_guard.update import PeerDown, Prefix, Update
from overcast.metrics import REGISTRY

KIND = "ris-live"
MAX_FRAME = 16 * 2**20  # one UPDATE's JSON; long withdrawal lists make some large

_CONNECTED = Gauge(
    "overcast_bgp_feed_connected",
    "1 while a websocket BGP feed (RIS-live) is connected and subscribed; 0 while it is "
    "not, and what it would report is unknown.",
    ["feed"],
    registry=REGISTRY,
)
_CONNECTS = Counter(
    "overcast_bgp_feed_connects",
    "Connections a websocket BGP feed opened and subscribed on.",
    ["feed"],
    registry=REGISTRY,
)
_LOSSES = Counter(
    "overcast_bgp_feed_connection_losses",
    "Connections a websocket BGP feed lost or failed to open; each is retried after a backoff.",
    ["feed"],
    registry=REGISTRY,
)


def subscriptions(guard: GuardConfig) -> list[dict[str, Any]]:
    """The `ris_subscribe` messages that bring every update the guard's detectors judge.

    One per monitored prefix, with `moreSpecific` (sub-prefix hijacks, too-specific
    announcements) unless the prefix ignores its more-specifics; a prefix inside another
    subscribed with its more-specifics is left out. `lessSpecific` is off: no detector judges
    a covering prefix. One per ASN of ours (`path`: the ASN anywhere in the path) for the
    neighbour checks, one for RIS_PEER_STATE (a collector's session loss withdraws that
    peer's routes). Leak detection on all routes (leak_scope: all) needs every UPDATE.
    """
    options = {"socketOptions": {"includeRaw": False}}  # the JSON fields are all we read
    peer_state = {"type": "RIS_PEER_STATE", **options}
    if guard.leak_scope == "all" and guard.asrel_file:
        return [{"type": "UPDATE", **options}, peer_state]
    out: list[dict[str, Any]] = []
    with_more_specifics: set[Prefix] = set()
    ordered = sorted(
        ((Prefix.parse(str(net)), spec) for net, spec in guard.prefixes.items()),
        key=lambda item: item[0].length,
    )
    for prefix, spec in ordered:
        # `ignore` carves a sub-prefix out of a monitored one, which is subscribed already
        if spec.ignore or any(p in with_more_specifics for p in _supernets(prefix)):
            continue
        more = not spec.ignore_more_specifics
        if more:
            with_more_specifics.add(prefix)
        out.append(
            {
                "type": "UPDATE",
                "prefix": str(prefix),
                "moreSpecific": more,
                "lessSpecific": False,
                **options,
            }
        )
    out += [{"type": "UPDATE", "path": str(asn), **options} for asn in guard.own_asns]
    return [*out, peer_state]


def _supernets(prefix: Prefix) -> Iterator[Prefix]:
    bits = 32 if prefix.version == 4 else 128
    for length in range(prefix.length):
        host = bits - length
        yield Prefix(prefix.version, prefix.value >> host << host, length)


def _loopback(url: str) -> bool:
    """A loopback URL never goes through a proxy: the proxy's loopback is not ours."""
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reconnect_delays(
    first: float, most: float, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """Exponential backoff with jitter: the n-th delay lies in [d/2, d), d = min(most,
    first * 2**n)."""
    delay = first
    while True:
        yield delay * (1 + rng()) / 2
        delay = min(most, delay * 2)


class RisLiveClient(LiveFeed):
    """Updates from a RIS-live websocket, kept connected until `close()`.

    >>> feed = RisLiveClient(RisLiveWebsocket(), subscriptions(guard_config))  # doctest: +SKIP
    >>> feed.start(); async for update in feed.updates(): ...                   # doctest: +SKIP
    """

    def __init__(
        self,
        config: RisLiveWebsocket,
        filters: list[dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(KIND)
        self.config = config
        self.filters = filters
        self.clock = clock
        self.connected = False
        self.connects = 0  # connections opened and subscribed
        self.losses = 0  # connections lost or failed to open
        self._frames = 0  # frames received since start, to name a bad one
        self._ws: ClientConnection | None = None
        self._closing = False
        self._blind_since: float | None = time.time()  # wall clock; None while connected
        _CONNECTED.labels(KIND).set(0)

    def start(self) -> None:
        """Connect, and stay connected, in the background."""
        self._spawn(self._keep_connected())

    async def _keep_connected(self) -> None:
        config, log = self.config, self.stats.log
        delays = reconnect_delays(config.reconnect_min, config.reconnect_max)
        lost_at: float | None = None
        while True:
            opened: float | None = None
            try:
                async with connect(
                    config.url,
                    ping_interval=config.ping_interval,
                    ping_timeout=config.ping_timeout,
                    open_timeout=config.ping_interval + config.ping_timeout,
                    close_timeout=config.ping_timeout,
                    max_size=MAX_FRAME,
                    proxy=None if _loopback(config.url) else True,
                ) as ws:
                    self._ws = ws
                    for message in self.filters:
                        await ws.send(json.dumps({"type": "ris_subscribe", "data": message}))
                    opened = self.clock()
                    self._up(lost_at, opened)
                    await self._receive(ws)
                reason = "closed by the server"
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._ws = None
            if self._closing:
                return
            now = self.clock()
            if opened is not None and now - opened >= config.reconnect_max:
                delays = reconnect_delays(config.reconnect_min, config.reconnect_max)
            if lost_at is None or opened is not None:
                lost_at = now
            delay = next(delays)
            self._down()
            log.warning(
                "RIS-live %s: %s; what it would report is unknown until it is back (routes "
                "held are kept, not withdrawn); reconnecting in %.1f s",
                config.url,
                reason if opened is not None else f"cannot connect ({reason})",
                delay,
            )
            await asyncio.sleep(delay)

    def outage(self) -> str | None:
        if self._blind_since is None:
            return None
        since = datetime.fromtimestamp(self._blind_since, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return (
            f"RIS-live {self.config.url} is not connected (since {since} UTC): updates to "
            "our prefixes go unseen until it is back; the routes held are kept."
        )

    def _up(self, lost_at: float | None, now: float) -> None:
        self._blind_since = None
        self.connected = True
        self.connects += 1
        _CONNECTED.labels(KIND).set(1)
        _CONNECTS.labels(KIND).inc()
        url, log = self.config.url, self.stats.log
        if lost_at is None:
            log.info("RIS-live %s connected; %d subscription(s) sent", url, len(self.filters))
        elif self.connects == 1:
            log.warning("RIS-live %s connected and subscribed after %.1f s", url, now - lost_at)
        else:
            log.warning(
                "RIS-live %s reconnected and subscribed again after %.1f s; messages in that "
                "time are missed (RIS-live does not replay them)",
                url,
                now - lost_at,
            )

    def _down(self) -> None:
        if self._blind_since is None:
            self._blind_since = time.time()
        self.connected = False
        self.losses += 1
        _CONNECTED.labels(KIND).set(0)
        _LOSSES.labels(KIND).inc()
        self.stats.flush()

    async def _receive(self, ws: ClientConnection) -> None:
        stats = self.stats
        flushed = self.clock()
        async for frame in ws:
            self._frames += 1
            stats.records += 1
            try:
                items = decode(frame)
            except ServerError as exc:
                stats.errors += 1
                stats.log.warning("RIS-live %s: %s", self.config.url, exc)
                continue
            except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is one too
                stats.bad_record(f"{self.config.url} frame {self._frames}", exc)
                continue
            for item in items:
                if type(item) is Update:
                    self._emit(item)
                elif isinstance(item, PeerDown):
                    self._emit_peer_down(item)
            now = self.clock()
            if now - flushed >= 1.0:  # Prometheus sees the counters within a second
                stats.flush()
                flushed = now

    async def close(self) -> None:
        """Say goodbye to the server (close code 1001, going away: RFC 6455 section 7.4.1),
        then stop."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close(CloseCode.GOING_AWAY, "overcast guard stopping")
        await super().close()
        self.connected = False
        _CONNECTED.labels(KIND).set(0)
