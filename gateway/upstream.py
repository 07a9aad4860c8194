"""A lean HTTP/1.1 client for the gateway's upstreams: pooled keep-alive connections.

The gateway forwards every allowed request, so this client is its hot path; a general client
(aiohttp) cost more per request than all of the gateway's own logic. This one does only what
a reverse proxy needs: asyncio Protocols, httptools (llhttp) to parse responses, one request
at a time per connection (no pipelining), bodies streamed both ways with back-pressure.

Framing (RFC 9112 section 6): a request body of known length goes with its Content-Length,
any other body chunked; responses end by Content-Length, chunked coding, or the connection
closing (section 6.3 rule 8). A connection goes back to the pool only when its response was
read to the end, the request body was sent whole, and both ends allow keep-alive (section
9.3); everything else is closed. A request without a body that fails on a reused connection
before any byte of response came back is retried once on a new one (section 9.3.1: the
upstream may have closed the idle connection as we wrote).

Two ways to use a connection: `UpstreamPool.request` awaits the response (the ASGI path),
or `Connection.watch` has the parser report to a callback (`gateway.express`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

Headers = list[tuple[bytes, bytes]]

MAX_HEAD = 64 * 1024  # response status line + header fields, like nginx's proxy buffers
HIGH_WATER = 256 * 1024  # buffered response body before reading from the upstream pauses


class UpstreamError(Exception):
    """The upstream refused, broke the connection, or answered something unparseable."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: `host`:`port`, over TLS with `tls` (None only for plain tests).

    `authority` is the Host header the upstream gets (RFC 9110 section 7.2)."""

    host: str
    port: int
    authority: bytes
    tls: ssl.SSLContext | None

    @property
    def server_hostname(self) -> str | None:
        return self.host if self.tls is not None else None


class Connection(asyncio.Protocol):
    """One upstream connection and the response being read from it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        # Set: parser news goes to this callback instead of waking a waiting coroutine
        # (`gateway.express` drives a whole exchange from these callbacks, without a task).
        self.listener: Callable[[], None] | None = None
        self._watch_timeout = 0.0
        self.reset(head_request=False)

    def reset(self, *, head_request: bool) -> None:
        self.head_request = head_request
        self.status = 0
        self.headers: Headers = []
        self.head_size = 0
        self.head_done = False
        self.interim = False
        self.until_close = False
        self.length: int | None = None
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: Exception | None = None
        self._read_paused = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.listener is not None:
            self._deadline = self.loop.time() + self._watch_timeout  # still talking
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # An upgrade (101) was never asked for: the gateway strips Upgrade.
            self.fail(UpstreamError(f"unparseable response: {exc!r}"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.head_done and self.until_close and not self.complete:
            self._finish(keep_alive=False)  # RFC 9112 section 6.3 rule 8: close ends it
        elif not self.complete and self.error is None:
            when = "mid-body" if self.head_done else "before answering"
            self.error = UpstreamError(f"upstream closed the connection {when}")
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(self.error or UpstreamError("upstream closed"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD:
            self.fail(UpstreamError(f"response header section over {MAX_HEAD} bytes"))
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # Interim responses (RFC 9110 section 15.2) are not forwarded; the final follows.
            self.interim = True
            self.headers, self.head_size = [], 0
            return
        self.status = status
        self.head_done = True
        chunked = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                self.length = int(value)  # llhttp refused anything but digits
            elif lowered == b"transfer-encoding":
                chunked = True
        if self.head_request or status in (204, 304):
            # No body whatever the fields say (RFC 9112 section 6.3 rules 1-2). llhttp cannot
            # know a HEAD's answer is bodiless: the next response gets a fresh parser.
            self.length = 0
            self._finish(keep_alive=self.parser.should_keep_alive())
            if self.head_request:
                self.parser = httptools.HttpResponseParser(self)
            return
        self.until_close = not chunked and self.length is None
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif not self.complete:
            self._finish(keep_alive=self.parser.should_keep_alive())

    # -- used by UpstreamResponse and UpstreamPool ---------------------------------------

    def _finish(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._wake()

    def _wake(self) -> None:
        if self.listener is not None:
            self.listener()
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    async def wait(self, timeout: float) -> None:
        """Until the parser has news (or the connection ends); TimeoutError after `timeout`.

        One timer per connection, moved only when it would fire late, instead of one per
        wait: a wait is one or more per request, and most end long before any timeout."""
        waiter = self._waiter = self.loop.create_future()
        self._arm(timeout)
        try:
            await waiter
        finally:
            self._waiter = None

    def watch(self, listener: Callable[[], None], timeout: float) -> None:
        """Send parser news to `listener` until `unwatch`; `timeout` seconds without any
        byte from the upstream fail the connection with TimeoutError (it reaches
        `listener` like any other failure)."""
        self.listener = listener
        self._watch_timeout = timeout
        self._arm(timeout)

    def unwatch(self) -> None:
        self.listener = None

    def _arm(self, timeout: float) -> None:
        self._deadline = self.loop.time() + timeout
        if self._timer is None or self._timer.when() > self._deadline:
            self._disarm()
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        waiting = waiter is not None and not waiter.done()
        if self.closed or not (waiting or self.listener is not None):
            return  # idle: the next wait or watch arms it again
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
        elif waiting:
            assert waiter is not None
            waiter.set_exception(TimeoutError())
        else:
            self.fail(TimeoutError(f"no answer in {self._watch_timeout:g} s"))

    async def drain(self) -> None:
        if self.closed:
            raise self.error or UpstreamError("upstream closed the connection")
        if self._write_paused:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def take(self) -> bytes:
        data = self.body.popleft() if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.buffered = 0
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data


class UpstreamResponse:
    """A response whose head arrived; read the body with `read`, then always `release`."""

    def __init__(
        self,
        pool: UpstreamPool,
        endpoint: Endpoint,
        conn: Connection,
        sender: asyncio.Task[None] | None,
    ) -> None:
        self._pool = pool
        self._endpoint = endpoint
        self._conn = conn
        self._sender = sender
        self.status = conn.status
        self.headers = conn.headers
        # None: no Content-Length (chunked or until close, e.g. server-sent events).
        self.length = conn.length

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (it may still wait in `read`)."""
        return self._conn.complete

    async def read(self) -> bytes:
        """The body bytes that arrived since the last read; b"" once all were read."""
        conn = self._conn
        while not conn.body:
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return b""
            await conn.wait(self._pool.read_timeout)
        return conn.take()

    def release(self) -> None:
        """Give the connection back to the pool if it can carry another request, else close."""
        conn = self._conn
        sent = _settle(self._sender)
        if sent and conn.complete and conn.keep_alive and conn.error is None and not conn.body:
            self._pool.put(self._endpoint, conn)
        else:
            conn.close()


class UpstreamPool:
    """Keep-alive connections per endpoint; create once, `close()` at shutdown.

    Connections open as concurrency needs them (like nginx, no upper bound); at most
    `max_idle` per endpoint wait for reuse, each for at most `idle_timeout` seconds.
    """

    def __init__(
        self,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        idle_timeout: float = 15.0,
        max_idle: int = 256,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._idle: dict[Endpoint, list[Connection]] = {}

    def put(self, endpoint: Endpoint, conn: Connection) -> None:
        idle = self._idle.setdefault(endpoint, [])
        if conn.closed or len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def idle(self, endpoint: Endpoint) -> Connection | None:
        """A live pooled connection to `endpoint`, taken out of the pool, or None."""
        idle = self._idle.get(endpoint)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out
            if conn.closed or now - conn.idle_since > self.idle_timeout:
                conn.close()
                continue
            return conn
        return None

    async def connect(self, endpoint: Endpoint) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: Connection(loop),
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.server_hostname,
            )
        return conn

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
    ) -> UpstreamResponse:
        """Send the request and wait for the response head (not the body).

        `headers` must not carry Host or framing other than Content-Length: Host is the
        endpoint's authority, and a `body` without Content-Length is sent chunked.
        Raises UpstreamError, OSError (ssl.SSLError included) or TimeoutError.
        """
        chunked = body is not None and not any(k.lower() == b"content-length" for k, _ in headers)
        head = request_head(method, target, endpoint.authority, headers, chunked)
        conn = self.idle(endpoint)
        if conn is not None and body is None:
            try:
                return await self._exchange(endpoint, conn, method, head, None, chunked)
            except UpstreamError:
                if conn.received:
                    raise
            # The idle connection died under us before answering: once more on a new one.
        if conn is None or conn.closed:
            conn = await self.connect(endpoint)
        return await self._exchange(endpoint, conn, method, head, body, chunked)

    async def _exchange(
        self,
        endpoint: Endpoint,
        conn: Connection,
        method: str,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
    ) -> UpstreamResponse:
        conn.reset(head_request=method == "HEAD")
        assert conn.transport is not None
        conn.transport.write(head)
        # The body goes beside the wait for the answer: an upstream may answer (413, 401)
        # before it has read all of it.
        sender = None
        if body is not None:
            sender = asyncio.ensure_future(_send_body(conn, body, chunked))
        try:
            while conn.error is None and not conn.head_done:
                await conn.wait(self.read_timeout)
            if conn.error is not None:
                raise conn.error
        except BaseException:
            _settle(sender)
            conn.close()
            raise
        return UpstreamResponse(self, endpoint, conn, sender)

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _send_body(conn: Connection, body: AsyncIterable[bytes], chunked: bool) -> None:
    transport = conn.transport
    assert transport is not None
    try:
        async for chunk in body:
            if not chunk:
                continue
            if chunked:  # RFC 9112 section 7.1
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            await conn.drain()
        if chunked:
            transport.write(b"0\r\n\r\n")
    except BaseException:
        # Half a request must never be mistaken for a whole one: the connection goes.
        conn.fail(UpstreamError("the request body could not be sent whole"))
        raise


def _settle(sender: asyncio.Task[None] | None) -> bool:
    """Whether the request body was sent whole; a sender still running is stopped."""
    if sender is None:
        return True
    if not sender.done():
        sender.cancel()
        return False
    return not sender.cancelled() and sender.exception() is None


def request_head(
    method: str, target: bytes, authority: bytes, headers: Headers, chunked: bool
) -> bytes:
    """The request line and header section; UpstreamError if a field carries a line break."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", authority, b"\r\n"]
    lines += field_lines(headers)
    lines.append(b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n")
    return checked_head(b"".join(lines), headers, 3 + chunked, "the request target")


def field_lines(headers: Headers) -> list[bytes]:
    """`name: value CRLF` for each field, as pieces to join."""
    lines: list[bytes] = []
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    return lines


def checked_head(head: bytes, headers: Headers, own_crlfs: int, other: str) -> bytes:
    """`head` if none of `headers` (or `other`) can start another field: it holds exactly
    one CRLF per field plus the `own_crlfs` put there around them. One count over the whole
    head, not a search per field."""
    crlfs = len(headers) + own_crlfs
    if head.count(b"\r") != crlfs or head.count(b"\n") != crlfs:
        bad = next((n for n, v in headers if b"\r" in v or b"\n" in v), None)
        where = f"header {bad!r}" if bad is not None else f"{other} or a field name"
        raise UpstreamError(f"{where} carries a line break")
    return head
