"""The NATS JetStream side of the scale-out (see bgp_guard.scale): streams, the collector
that publishes, and the worker that holds shards and publishes alerts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamConfig
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from bgp_guard.config import GuardConfig
from bgp_guard.engine import Guard
from bgp_guard.monitored import entries, index
from bgp_guard.scale import (
    ALERTS,
    BUCKET,
    DUPLICATE_WINDOW,
    SHARDS,
    UPDATES,
    alert_id,
    decode,
    encode,
    shard_of,
)
from bgp_guard.update import FeedItem, PeerDown, Update

log = logging.getLogger(__name__)
BATCH = 200  # updates per message: one NATS message per update would cost more than the work


async def connect(url: str) -> tuple[NATS, JetStreamContext, KeyValue]:
    """Connect, and make the streams and the shard bucket if they are not there yet."""
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    js = nc.jetstream()
    for config in (
        StreamConfig(name=UPDATES, subjects=["bgp.updates.*"]),
        StreamConfig(name=ALERTS, subjects=["bgp.alerts"], duplicate_window=DUPLICATE_WINDOW),
    ):
        with contextlib.suppress(BadRequestError):  # already there
            await js.add_stream(config)
    try:
        kv = await js.key_value(BUCKET)
    except Exception:
        kv = await js.create_key_value(bucket=BUCKET)
    return nc, js, kv


async def publish(url: str, config: GuardConfig, items: Iterable[FeedItem]) -> int:
    """Publish `items` to their shards, in order per shard; returns how many were."""
    monitored = index(entries(config))
    nc, js, _ = await connect(url)
    pending: dict[int, list[FeedItem]] = {}
    sent = 0

    async def flush(shard: int) -> None:
        batch = pending.pop(shard, [])
        if batch:
            await nc.publish(f"bgp.updates.{shard}", encode(batch))

    try:
        for item in items:
            if type(item) is PeerDown:
                for shard in range(SHARDS):
                    pending.setdefault(shard, []).append(item)
                    await flush(shard)
                sent += 1
                continue
            assert isinstance(item, Update)
            found = monitored.longest(item.prefix)
            if found is None:
                continue
            shard = shard_of(found[1][0].name)
            batch = pending.setdefault(shard, [])
            batch.append(item)
            sent += 1
            if len(batch) >= BATCH:
                await flush(shard)
        for shard in list(pending):
            await flush(shard)
        await nc.flush()
        # Core publishes are not acknowledged one by one: one acknowledged publish after
        # them says the stream has stored everything before it.
        await js.publish("bgp.updates.sync", b"[]", stream=UPDATES)
    finally:
        await nc.close()
    return sent


class Worker:
    """Holds a fair share of the shards, each with its own Guard fed from the stream."""

    def __init__(
        self,
        url: str,
        config: GuardConfig,
        name: str,
        lease: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.config, self.name = url, config, name
        self.lease, self.clock = lease, clock
        self.processed = 0
        self.alerts = 0
        self.shards: dict[int, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        nc, js, kv = await connect(self.url)
        try:
            while not stop.is_set():
                await self._hold(js, kv)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.lease / 3)
        finally:
            for task in self.shards.values():
                task.cancel()
            await asyncio.gather(*self.shards.values(), return_exceptions=True)
            with contextlib.suppress(Exception):  # let the others take over at once
                for shard in list(self.shards):
                    await kv.delete(str(shard))
                await kv.delete(f"worker-{self.name}")
            await nc.close()

    async def _hold(self, js: JetStreamContext, kv: KeyValue) -> None:
        now = self.clock()
        await kv.put(f"worker-{self.name}", orjson.dumps({"at": now, "done": self.processed}))
        alive = 0
        for key in await _keys(kv):
            if key.startswith("worker-"):
                entry = await kv.get(key)
                if entry.value and now - orjson.loads(entry.value)["at"] < self.lease:
                    alive += 1
        share = -(-SHARDS // max(alive, 1))
        for shard in range(SHARDS):
            key = str(shard)
            try:
                entry = await kv.get(key)
                holder, at = orjson.loads(entry.value or b'["", 0]')
                revision = entry.revision
            except KeyNotFoundError:
                holder, at, revision = "", 0.0, None
            mine = shard in self.shards
            try:
                if mine and holder == self.name:
                    if len(self.shards) > share:  # another worker came: give this one up
                        await kv.delete(key, last=revision)
                        self._drop(shard)
                    else:
                        await kv.update(key, orjson.dumps([self.name, now]), last=revision)
                elif mine:  # someone else holds it now (we were too slow to renew)
                    self._drop(shard)
                elif len(self.shards) < share and (not holder or now - at >= self.lease):
                    value = orjson.dumps([self.name, now])
                    if revision is None:
                        await kv.create(key, value)
                    else:
                        await kv.update(key, value, last=revision)
                    task = asyncio.ensure_future(self._decide(js, shard))
                    task.add_done_callback(self._ended)
                    self.shards[shard] = task
                    log.info("worker %s holds shard %d", self.name, shard)
            except (KeyWrongLastSequenceError, BadRequestError):
                continue  # another worker changed it first

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("worker %s: a shard stopped: %r", self.name, task.exception())

    def _drop(self, shard: int) -> None:
        self.shards.pop(shard).cancel()
        log.info("worker %s gave up shard %d", self.name, shard)

    async def _decide(self, js: JetStreamContext, shard: int) -> None:
        """Replay the shard from its first update, then follow it."""
        guard = Guard(self.config)
        sub = await js.subscribe(
            f"bgp.updates.{shard}", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        log.info("worker %s replays shard %d", self.name, shard)
        try:
            async for msg in sub.messages:
                for item in decode(msg.data):
                    self.processed += 1
                    for event in guard.process(item):
                        await self._alert(js, event)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _alert(self, js: JetStreamContext, event: dict[str, Any]) -> None:
        ack = await js.publish(
            "bgp.alerts", orjson.dumps(event), headers={"Nats-Msg-Id": alert_id(event)}
        )
        if not ack.duplicate:
            self.alerts += 1


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return list(await kv.keys())
    except Exception:  # NoKeysError: an empty bucket
        return []
