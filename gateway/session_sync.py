"""Share server-side session state between gateway processes through a Redis stream.

Several gateway processes (or hosts behind one load balancer) must agree on revocations:
the IdP's back-channel logout reaches one of them, yet the session has to end in all. Each
process keeps its `SessionStore` in memory, so the request path never waits on the
network, and replicates every change through one Redis stream (XADD / XREAD):

- at start, the whole stream is replayed, so a new process knows every live revocation;
- then each process follows the stream and applies the other processes' events;
- the stream is capped (MAXLEN ~), old entries only describe sessions long expired.

Until the replay is done `synced` is False, and the gateway's /ready says 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.session import SessionStore

STREAM = "overcast:gateway:sessions"
MAX_EVENTS = 200_000
RETRY = 1.0
BLOCK_MS = 5000

log = logging.getLogger("overcast.gateway.sync")


@dataclass
class SessionSync:
    url: str
    store: SessionStore
    stream: str = STREAM
    synced: bool = False
    _outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _last: str = "0-0"

    def attach(self) -> None:
        """From now on, every local change is queued for the stream."""
        self.store.listener = self._outbox.put_nowait

    async def run(self) -> None:
        """Replay, then follow the stream and publish local changes; reconnects forever."""
        client = aioredis.Redis.from_url(self.url)
        try:
            while True:
                try:
                    await self._follow(client)
                except (RedisError, OSError) as exc:
                    log.warning("session store %s unreachable: %s", self.url, exc)
                await asyncio.sleep(RETRY)
        finally:
            await client.aclose()

    async def _follow(self, client: aioredis.Redis) -> None:
        if not self.synced:
            history: Any = await client.xrange(self.stream)  # redis-py's types are loose
            for entry_id, fields in history:
                self._apply(entry_id, fields)
            self.synced = True
            log.info("session store %s replayed up to %s", self.url, self._last)
        writer = asyncio.create_task(self._publish(client))
        try:
            while True:
                reply: Any = await client.xread(
                    {self.stream: self._last}, block=BLOCK_MS, count=1000
                )
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        self._apply(entry_id, fields)
                if writer.done():
                    writer.result()  # re-raise the writer's connection error here
        finally:
            writer.cancel()

    async def _publish(self, client: aioredis.Redis) -> None:
        while True:
            event = await self._outbox.get()
            try:
                await client.xadd(
                    self.stream,
                    {"event": json.dumps(event)},
                    maxlen=MAX_EVENTS,
                    approximate=True,
                )
            except BaseException:
                self._outbox.put_nowait(event)  # not lost: sent after reconnecting
                raise

    def _apply(self, entry_id: Any, fields: Any) -> None:
        self._last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        raw = fields.get(b"event") or fields.get("event")
        try:
            event = json.loads(raw) if raw else None
        except ValueError:
            event = None
        # Our own events come back too; applying them again changes nothing.
        if not isinstance(event, dict) or not self.store.apply(event):
            log.warning("ignored malformed session event %s", self._last)
