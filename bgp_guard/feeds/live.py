"""What the live feeds (BGP session, BMP) share: TCP servers and tasks on one asyncio loop,
a queue their Updates (and PeerDowns) come out of, and the limits that keep one misbehaving
client from taking the listener's memory: connections in all and per source address (past
either, a new connection is closed at once and counted), and a bounded read buffer per
connection (each feed also bounds the message it waits for)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from bgp_guard.feeds.stats import CONNECTIONS, FeedStats
from bgp_guard.update import FeedItem, PeerDown, Update

Handler = Coroutine[Any, Any, None]
BACKLOG = 100  # asyncio.start_server's default
# StreamReader limit: reading pauses once this much is buffered and unread (asyncio pauses at
# twice the limit), so a client sending faster than we decode cannot grow the buffer.
READ_LIMIT = 1 << 16
MAX_CONNECTIONS = 64
PUBLISH_EVERY = 1.0  # seconds between pushes of the feed's counters to Prometheus
MAX_CONNECTIONS_PER_SOURCE = 2  # a router's new connection overlaps its old one briefly


def tcp_listener(
    host: str, port: int, configure: Callable[[socket.socket], None] | None = None
) -> socket.socket:
    """A listening TCP socket on `host`, as asyncio.start_server would make it; `configure`
    runs before bind(), so no connection is accepted before it (TCP-MD5 keys)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if configure is not None:
            configure(sock)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class LiveFeed:
    def __init__(
        self,
        kind: str,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_source: int = MAX_CONNECTIONS_PER_SOURCE,
    ) -> None:
        self.stats = FeedStats(kind)
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self._sources: dict[str, int] = {}  # open connections per source address
        self._publishing = False
        self._queue: asyncio.Queue[FeedItem] = asyncio.Queue()
        self._peers_down: dict[str, str] = {}  # peer (or router) -> why it is down
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[Any]] = set()  # accepted connections
        self._writers: set[asyncio.StreamWriter] = set()

    async def updates(self) -> AsyncIterator[FeedItem]:
        """Updates and PeerDowns in arrival order, for as long as the feed runs."""
        while True:
            yield await self._queue.get()

    def outage(self) -> str | None:
        """Why what this feed would report is unknown now, or None. A listening feed (BGP,
        BMP) has no such state: a quiet router is no outage, a lost session is a PeerDown."""
        return None

    def peers_down(self) -> dict[str, str]:
        """Peers (BGP neighbours, a BMP router's peers) whose session is down, each with
        why; `guard watch` turns each into a peer-down event until `_peer_up` clears it."""
        return dict(self._peers_down)

    def _peer_up(self, subject: str) -> None:
        self._peers_down.pop(subject, None)

    def _peer_failed(self, subject: str, why: str) -> None:
        """`subject` (e.g. "BGP neighbour 192.0.2.1") is down, or cannot be reached."""
        self._peers_down[subject] = why

    async def close(self) -> None:
        """Stop listening, end every connection, flush the counters."""
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()  # the connection's handler ends on its next read
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)
        self.stats.flush()

    async def _serve(
        self, host: str, port: int, configure: Callable[[socket.socket], None] | None = None
    ) -> None:
        self._publish_counters()
        sock = tcp_listener(host, port, configure)
        try:
            self._servers.append(
                await asyncio.start_server(self._accepted, sock=sock, limit=READ_LIMIT)
            )
        except BaseException:
            sock.close()
            raise

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Not cancelled by close() (asyncio's server logs cancelled handlers as errors):
        # close() closes the transport instead and waits for the handler.
        task = asyncio.current_task()
        assert task is not None
        source = writer.get_extra_info("peername")[0]
        open_here = self._sources.get(source, 0)
        if len(self._writers) >= self.max_connections:
            self.stats.refused(
                "connection-limit", source, f"{self.max_connections} connections open"
            )
            writer.close()
            return
        if open_here >= self.max_connections_per_source:
            self.stats.refused(
                "source-limit", source, f"{open_here} connections open from this address"
            )
            writer.close()
            return
        self._sources[source] = open_here + 1
        self._handlers.add(task)
        self._writers.add(writer)
        connections = CONNECTIONS.labels(self.stats.kind)
        connections.inc()
        try:
            await self._connection(reader, writer)
        finally:
            connections.dec()
            self._writers.discard(writer)
            self._handlers.discard(task)
            left = self._sources.pop(source) - 1
            if left:
                self._sources[source] = left

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _publish_counters(self) -> None:
        """Push the counters to Prometheus every PUBLISH_EVERY seconds while the feed runs,
        so they move while a router is connected, not only when it leaves."""
        if self._publishing:
            return
        self._publishing = True

        async def publish() -> None:
            while True:
                await asyncio.sleep(PUBLISH_EVERY)
                self.stats.flush()

        self._spawn(publish())

    def _spawn(self, coro: Handler) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, update: Update) -> None:
        self._queue.put_nowait(update)
        self.stats.updates += 1

    def _emit_event(self, item: FeedItem) -> None:
        """A peer event other than PeerDown (graceful restart, End-of-RIB)."""
        self._queue.put_nowait(item)

    def _emit_peer_down(self, down: PeerDown, subject: str | None = None) -> None:
        """The peer's session is gone, and with it every route it announced: the guard
        withdraws them all, so the feed need not remember what each peer announced. With a
        `subject`, the peer counts as down (`peers_down`) until `_peer_up(subject)`."""
        if subject is not None:  # our own peer, not a collector's (RIS-live)
            why = f"{subject} (AS{down.peer_asn}) left Established; its routes are withdrawn."
            self._peers_down.setdefault(subject, why)
        self._queue.put_nowait(down)
        self.stats.peer_downs += 1
