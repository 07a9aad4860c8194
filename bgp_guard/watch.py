"""Run the guard on live feeds: every update from every feed goes through one `Guard` on one
asyncio loop, events go to the sinks at once, and a one-second timer resolves events even
when no update arrives and reloads the VRP file when it changes (rpki-client and Routinator
rewrite it every few minutes), reporting the ROA changes that touch our prefixes and
re-validating the routes already held that a changed ROA covers (`Guard.replace_vrps`); the
ASPA file likewise (`Guard.replace_aspas`).
The timer also checks the feeds' health: a RIS-live feed that lost its connection
(`LiveFeed.outage`) is a `feed-down` event until it is back; a BGP neighbour or a BMP
router's peer whose session is down (`LiveFeed.peers_down`) is a `peer-down` event until it
is Established again; a feed with no update for guard.feeds.silent_after seconds is a
`feed-silent` event until the next one.

With a `Notifier`, every transition also goes through the state file (dedup, thresholds,
repeats: bgp_guard/notify.py) into the sinks' queues, which an `Outbox` task delivers
(bgp_guard/sinks/outbox.py) without ever holding up the feeds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client import Histogram

from bgp_guard.aspa import AspaSet
from bgp_guard.config import BgpFeed, Feeds, GuardConfig
from bgp_guard.engine import Guard
from bgp_guard.errors import InputError
from bgp_guard.feeds.bmp import BmpListener
from bgp_guard.feeds.live import LiveFeed
from bgp_guard.feeds.ris_websocket import RisLiveClient, subscriptions
from bgp_guard.feeds.session import BgpSpeaker
from bgp_guard.feeds.tcp_md5 import TcpMd5Key, read_password_file
from bgp_guard.notify import Notifier
from bgp_guard.rpki import VrpSet, load_vrps
from bgp_guard.sinks import Sink
from bgp_guard.sinks.outbox import Outbox
from overcast.metrics import REGISTRY

log = logging.getLogger(__name__)
T = TypeVar("T")

_LAG = Histogram(
    "overcast_bgp_guard_processing_lag_seconds",
    "From an update's feed timestamp (receipt for BGP and BMP, the collector's time for "
    "RIS-live) to the events it raised being handed to the sinks' queues.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
    registry=REGISTRY,
)


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


class DataFile(Generic[T]):
    """An RPKI data file to reload, with `load`, when its modification time changes."""

    def __init__(self, path: str | Path, load: Callable[[Path], T]) -> None:
        self.path = Path(path)
        self.load = load
        self.mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return None

    def reload(self) -> T | None:
        """The new contents if the file changed and reads cleanly, else None."""
        mtime = self._mtime()
        if mtime is None or mtime == self.mtime:
            return None
        self.mtime = mtime
        try:
            return self.load(self.path)
        except InputError as exc:
            log.warning("%s; keeping the previous contents", exc)
            return None


class VrpFile(DataFile[VrpSet]):
    """A VRP file to reload when it changes."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, load_vrps)


def bgp_passwords(bgp: BgpFeed, config_dir: Path) -> dict[str, TcpMd5Key]:
    """The neighbours' TCP-MD5 passwords, read from their password files (relative to the
    config file's directory); raises InputError naming a missing, open or bad file."""
    return {
        str(address): read_password_file(config_dir / neighbour.password_file)
        for address, neighbour in bgp.neighbours.items()
        if neighbour.password_file is not None
    }


async def start_feeds(
    config: Feeds, watched: GuardConfig | None = None, config_dir: Path = Path()
) -> list[LiveFeed]:
    """Open the configured feeds' sockets; raises InputError for a bad password file (paths
    relative to `config_dir`), TcpMd5Error if the kernel refuses a password, OSError if a
    socket cannot listen. A RIS-live feed subscribes to what `watched` monitors, and
    connects (and reconnects) by itself."""
    feeds: list[LiveFeed] = []
    try:
        if config.bgp is not None:
            bgp = config.bgp
            speaker = BgpSpeaker(
                bgp.local_asn,
                str(bgp.router_id),
                peers={str(a): n.asn for a, n in bgp.neighbours.items()},
                hold_time=bgp.hold_time,
                passwords=bgp_passwords(bgp, config_dir),
            )
            feeds.append(speaker)
            if bgp.listen is not None:
                await speaker.listen(str(bgp.listen), bgp.port)
            for neighbour in bgp.connect:
                local = None if bgp.local_address is None else str(bgp.local_address)
                speaker.connect(str(neighbour), bgp.port, local_address=local)
        if config.bmp is not None:
            b = config.bmp
            bmp = BmpListener(
                b.max_routers,
                b.max_connections_per_router,
                b.initiation_timeout,
                b.message_timeout,
                b.idle_timeout,
            )
            feeds.append(bmp)
            await bmp.listen(str(config.bmp.listen), config.bmp.port)
        if config.ris_live is not None:
            filters = subscriptions(watched or GuardConfig())
            ris = RisLiveClient(config.ris_live, filters)
            feeds.append(ris)
            ris.start()
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
    vrp_file: VrpFile | None = None,
    notifier: Notifier | None = None,
    outbox: Outbox | None = None,
    aspa_file: DataFile[AspaSet] | None = None,
) -> WatchStats:
    """Process the feeds' updates until `stop` is set."""
    stats = WatchStats()

    def deliver(events: list[dict[str, Any]], received: float | None) -> None:
        if not events:
            return
        for event in events:
            for sink in sinks:
                sink.write(event)
        if notifier is not None:
            notifier.handle(events, clock())
        stats.events += len(events)
        if received is not None:
            lag = clock() - received
            stats.latencies.append(lag)
            _LAG.observe(lag)

    last_update = dict.fromkeys(feeds, clock())

    async def pump(feed: LiveFeed) -> None:
        async for update in feed.updates():
            stats.updates += 1
            last_update[feed] = clock()
            events = guard.process(update)
            if events:
                deliver(events, update.time)

    outages: dict[LiveFeed, str | None] = dict.fromkeys(feeds)
    peers_down: dict[str, str] = {}
    silent: set[LiveFeed] = set()
    silent_after = guard.policy.silent_after

    def health(now: float) -> None:
        down = {p: why for feed in feeds for p, why in feed.peers_down().items()}
        for peer in peers_down.keys() - down.keys():
            back = f"{peer} is Established again."
            deliver(guard.feed_health("peer-down", peer, None, back, now), None)
        for peer in down.keys() - peers_down.keys():
            deliver(guard.feed_health("peer-down", peer, down[peer], "", now), None)
        peers_down.clear()
        peers_down.update(down)
        if silent_after is None:
            return
        for feed, last in last_update.items():
            quiet = now - last >= silent_after
            if quiet == (feed in silent):
                continue
            kind = feed.stats.kind
            why = f"{kind} delivered no update for {silent_after:g} s (guard.feeds.silent_after)."
            back = f"{kind} delivers updates again."
            deliver(guard.feed_health("feed-silent", kind, why if quiet else None, back, now), None)
            (silent.add if quiet else silent.discard)(feed)

    async def timer() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                deliver(guard.finish(clock()), None)
                if notifier is not None:
                    notifier.tick(clock())
                if outbox is not None:
                    outbox.depths()
                for feed, known in outages.items():
                    outage = feed.outage()
                    if (outage is None) != (known is None):
                        outages[feed] = outage
                        deliver(guard.feed_outage(feed.stats.kind, outage, clock()), None)
                health(clock())
                vrps = None if vrp_file is None else vrp_file.reload()
                if vrps is not None:
                    deliver(guard.replace_vrps(vrps, clock()), None)
                aspas = None if aspa_file is None else aspa_file.reload()
                if aspas is not None:
                    deliver(guard.replace_aspas(aspas, clock()), None)

    tasks = [asyncio.ensure_future(pump(f)) for f in feeds]
    delivering = None if outbox is None else asyncio.ensure_future(outbox.run(stop))
    try:
        await timer()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if delivering is not None:  # stop is set: it closes its transports and ends
            await asyncio.gather(delivering, return_exceptions=True)
    return stats
