"""The express lane: an allowed request without a body, forwarded by callbacks alone.

Most requests through the gateway are a signed-in user's GET: `Gateway.express` decides
them without awaiting anything, and this module moves the answer. Instead of an ASGI task,
awaits on the upstream's futures and one ASGI message per piece of the response, the
upstream connection's parser callbacks write the response straight to the client's
transport: the same bytes, for two thirds of the Python CPU time (bench/gateway_cpu.py).

Everything the ASGI path promises holds here too: the same `Forward` (cleaned headers,
the assertion, the normalised path), the same `downstream_headers`, the upstream's framing
kept or re-chunked (RFC 9112 section 7.1), back-pressure both ways, the read timeout, 502
or 504 when the upstream fails before answering, a closed connection when it breaks off
mid-response, and one retry on a fresh connection when a pooled one turns out dead before
answering (RFC 9112 section 9.3.1).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from gateway.proxy import Forward, Proxy, downstream_headers, upstream_failure
from gateway.upstream import (
    Connection,
    Headers,
    UpstreamError,
    checked_head,
    field_lines,
    request_head,
)

log = logging.getLogger("overcast.gateway")

RESPONSE_HEADS = 256  # response heads kept built, per gateway
_CLOSE = b"connection: close\r\n"  # RFC 9112 section 9.6


class Client(Protocol):
    """What an exchange needs of the client's side (`gateway.server.TlsHttpProtocol`)."""

    transport: asyncio.Transport

    def write_paused(self) -> bool: ...

    def exchange_done(self, keep_alive: bool) -> None: ...


class Exchange:
    """One request forwarded and its response streamed back, driven by the upstream's
    parser (`Connection.watch`) and the client transport's flow control."""

    def __init__(
        self,
        client: Client,
        forward: Forward,
        proxy: Proxy,
        loop: asyncio.AbstractEventLoop,
        *,
        close: bool = False,
        defaults: Headers = [],  # noqa: B006 - never mutated
    ) -> None:
        self.client = client
        self.forward = forward
        self.pool = proxy.upstream()
        self.cookie_names = proxy.cookie_names
        self.heads = proxy.response_heads
        self.loop = loop
        self.head_request = forward.method == "HEAD"
        self.close = close  # the client asked to close after this response
        self.defaults = defaults  # the server's own fields (uvicorn's Server, Date)
        self.reused = False  # the upstream connection came from the pool
        self.conn: Connection | None = None
        self.started = False  # the response head went to the client
        self.chunked = False  # re-chunked towards the client
        self.finished = False
        self.head = b""

    def start(self) -> None:
        try:
            fwd = self.forward
            self.head = request_head(
                fwd.method, fwd.target, fwd.endpoint.authority, fwd.headers, False
            )
        except UpstreamError as exc:
            return self._refuse(502, f"upstream {self.forward.route.app} refused: {exc}")
        conn = self.pool.idle(self.forward.endpoint)
        self.reused = conn is not None
        if conn is None:
            self._connect()
        else:
            self._send(conn)

    # -- towards the upstream -----------------------------------------------------------

    def _connect(self) -> None:
        task = self.loop.create_task(self.pool.connect(self.forward.endpoint))
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Connection]) -> None:
        if self.finished:
            if not task.cancelled() and task.exception() is None:
                task.result().close()
            return
        error = task.exception() if not task.cancelled() else UpstreamError("cancelled")
        if error is None:
            self._send(task.result())
        else:
            self._refuse(*upstream_failure(self.forward.route.app, error))

    def _send(self, conn: Connection) -> None:
        self.conn = conn
        conn.reset(head_request=self.head_request)
        conn.watch(self.progress, self.pool.read_timeout)
        assert conn.transport is not None
        conn.transport.write(self.head)

    # -- the upstream's news (parser callbacks, connection loss) ------------------------

    def progress(self) -> None:
        conn = self.conn
        if conn is None or self.finished:
            return
        if conn.error is not None:
            return self._broken(conn)
        if not conn.head_done:
            return
        transport = self.client.transport
        if not self.started:
            self.started = True
            transport.write(self._response_head(conn))
        if conn.body:
            data = conn.take()
            transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
            if self.client.write_paused() and conn.transport is not None:
                conn.transport.pause_reading()  # until `resume`
        if conn.complete:
            if self.chunked:
                transport.write(b"0\r\n\r\n")
            self._finish(keep_alive=True)

    def _response_head(self, conn: Connection) -> bytes:
        """The status line and fields for the client; an upstream repeats the same few
        (only Date moves, once a second), so each is built once (`Proxy.heads`)."""
        route, headers = self.forward.route.app, tuple(conn.headers)
        key = (conn.status, headers, route, self.head_request, self.close, *self.defaults)
        known = self.heads.get(key)
        if known is None:
            if len(self.heads) >= RESPONSE_HEADS:
                self.heads.clear()
            known = self.heads[key] = self._build_head(conn.status, conn.headers)
        head, self.chunked = known
        return head

    def _build_head(self, status: int, upstream: Headers) -> tuple[bytes, bool]:
        headers = self.defaults + downstream_headers(
            upstream, self.cookie_names, self.forward.route
        )
        framed = any(name == b"content-length" for name, _ in headers)
        chunked = not framed and not (self.head_request or status in (204, 304))
        line = STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status
        lines = [line, *field_lines(headers)]
        lines.append(_CLOSE if self.close else b"")
        lines.append(b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n")
        crlfs = 2 + chunked + self.close
        return checked_head(b"".join(lines), headers, crlfs, "the status line"), chunked

    def _broken(self, conn: Connection) -> None:
        app = self.forward.route.app
        if self.started:
            # Mid-body: the status is sent, so the client learns by the connection closing.
            log.info("upstream %s broke off a response: %s", app, conn.error)
            return self._finish(keep_alive=False)
        if self.reused and not conn.received and not isinstance(conn.error, TimeoutError):
            self.reused = False  # a pooled connection the upstream had closed: once more
            conn.unwatch()
            self.conn = None
            return self._connect()
        assert conn.error is not None
        self._refuse(*upstream_failure(app, conn.error))

    # -- the client's side ------------------------------------------------------------

    def resume(self) -> None:
        """The client's transport drained: read from the upstream again."""
        if self.conn is not None and self.conn.transport is not None and not self.finished:
            self.conn.transport.resume_reading()

    def abort(self) -> None:
        """The client went away: the upstream connection cannot carry another request."""
        if not self.finished:
            self.finished = True
            self._release(reuse=False)

    def _refuse(self, status: int, text: str) -> None:
        body = text.encode() + b"\n"
        self.client.transport.write(
            STATUS_LINE[status]
            + (_CLOSE if self.close else b"")
            + b"content-type: text/plain\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
        )
        self._finish(keep_alive=True)

    def _finish(self, *, keep_alive: bool) -> None:
        self.finished = True
        conn = self.conn
        whole = conn is not None and conn.complete and not conn.body and conn.error is None
        self._release(reuse=whole and conn is not None and conn.keep_alive)
        self.client.exchange_done(keep_alive)

    def _release(self, *, reuse: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        conn.unwatch()
        if reuse:
            self.pool.put(self.forward.endpoint, conn)
        else:
            conn.close()
