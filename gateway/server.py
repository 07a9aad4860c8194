"""The gateway's HTTP server: uvicorn's protocols, extended where the gateway needs more.

- TLS: uvicorn does not pass the peer certificate to the app, so both protocols add the
  ASGI TLS extension (`scope["extensions"]["tls"]`) with `client_cert_chain` as PEM.
- Absolute-form request targets are routed by their authority (`absolute_form_host`).
- Writes during one event-loop turn leave as one TLS record (`TurnBatchedTransport`).
- A request line or header field over MAX_FIELD bytes, or a head over MAX_REQUEST_HEAD,
  is refused with 431 (RFC 6585 section 5), as nginx's 4 x 8 KiB header buffers do;
  uvicorn sets no limit. The gateway's per-request caches rely on it to stay small.
- The express lane: a request `Gateway.express` can decide at once is forwarded by
  `gateway.express.Exchange` instead of an ASGI task; anything else runs the ASGI app.
- Slow and idle clients (issue 17): the protocol does TLS itself (`loop.start_tls`), so the
  handshake is timed and counted like the rest; then one timer per connection watches the
  phase the client is in (`gateway.config.Limits`: request head, request body, idle
  keep-alive), and past `max_connections` a new connection is closed before any TLS work.
  uvicorn has only the keep-alive timeout, and holds a connection that never sends a byte,
  or one header line a second, for as long as the client likes.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import httptools
import uvicorn
from prometheus_client import Counter, Gauge
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.config import Limits
from gateway.express import Exchange
from gateway.proxy import Forward, has_body
from overcast.metrics import REGISTRY

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("overcast.gateway")

MAX_FIELD = 8 * 1024
MAX_REQUEST_HEAD = 32 * 1024
_TOO_LARGE_TEXT = (
    f"the request line and each header field may have {MAX_FIELD} bytes, "
    f"all of them together {MAX_REQUEST_HEAD}\n"
).encode()
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n" + (
    b"content-type: text/plain\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%b"
    % (len(_TOO_LARGE_TEXT), _TOO_LARGE_TEXT)
)


_TIMEOUT_TEXT = b"the request did not arrive in time\n"
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\n" + (
    b"content-type: text/plain\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%b"
    % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)

CLIENT_CONNECTIONS = Gauge(
    "overcast_gateway_client_connections",
    "Client connections open, TLS handshakes under way included",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
CLIENTS_REFUSED = Counter(
    "overcast_gateway_clients_refused",
    "Client connections closed at once, before TLS: max_connections were open",
    registry=REGISTRY,
)
CLIENT_TIMEOUTS = Counter(
    "overcast_gateway_client_timeouts",
    "Client connections closed because the client was too slow or idle, by phase",
    ["phase"],
    registry=REGISTRY,
)
TLS_FAILURES = Counter(
    "overcast_gateway_tls_handshake_failures",
    "TLS handshakes that failed (not timed out): bad or no TLS, or the client left",
    registry=REGISTRY,
)
HEAP_TRIMS = Counter(
    "overcast_gateway_heap_trims",
    "Times the memory of closed connections was given back to the system (HeapTrim)",
    registry=REGISTRY,
)
HEAP_UNTRIMMED = Gauge(
    "overcast_gateway_closed_untrimmed",
    "Client connections closed since their memory was last given back (HeapTrim)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
_TIMED_OUT = {p: CLIENT_TIMEOUTS.labels(p) for p in ("tls_handshake", "head", "body", "idle")}


class HeapTrim:
    """Give the memory of closed connections back to the system.

    Measured (issue 17; `overcast gateway serve`, floods of 2,000 TCP + 2,000 TLS idle
    connections and 100 slowloris clients): RSS went 79 -> 177 MB and stayed there after
    all had closed. Not a leak: the objects were back to their count before the flood once
    the cycle collector ran (a connection's protocol, parser and transport form cycles, and
    `cli.quiet_collector` makes the full collection rare), yet RSS stayed, because glibc
    keeps freed heap pages for reuse. gc.collect() and malloc_trim(0) together brought it
    to 91 MB. So after connections have closed, both run when the closing has been quiet
    for a second, or after every `wave` closes while it goes on; at most once every
    `interval` seconds (a few milliseconds each: the collector skips the frozen startup
    objects)."""

    def __init__(self, wave: int = 1000, interval: float = 10.0) -> None:
        self.wave, self.interval = wave, interval
        self.closed = 0
        self.last_close = self.last_trim = float("-inf")
        self.pending: asyncio.TimerHandle | None = None
        self._malloc_trim: Callable[[int], int] | None = getattr(
            ctypes.CDLL(None), "malloc_trim", None
        )  # glibc only

    def connection_closed(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closed += 1
        HEAP_UNTRIMMED.inc()
        self.last_close = loop.time()
        if self.pending is None:
            self.pending = loop.call_later(1.0, self._due, loop)

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        quiet = now - self.last_close >= 1.0
        if not (quiet or self.closed >= self.wave) or now < self.last_trim + self.interval:
            self.pending = loop.call_later(1.0, self._due, loop)
            return
        self.pending = None
        self.closed = 0
        self.last_trim = now
        gc.collect()
        if self._malloc_trim is not None:
            self._malloc_trim(0)
        HEAP_TRIMS.inc()
        HEAP_UNTRIMMED.set(0)


HEAP = HeapTrim()


class ConnectionSlots:
    """Open client connections of this process against `Limits.max_connections`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            CLIENTS_REFUSED.inc()
            return False
        self.open += 1
        CLIENT_CONNECTIONS.inc()
        return True

    def give_back(self) -> None:
        self.open -= 1
        CLIENT_CONNECTIONS.dec()


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the gateway's: `limits`, and `tls`, a factory of the listener's
    TLS context (picklable, for worker processes) used by `TlsHttpProtocol` itself instead
    of uvicorn's listener-wide TLS."""

    def __init__(
        self,
        app: Any,
        *,
        limits: Limits,
        tls: Callable[[], ssl.SSLContext] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(app, **options)
        self.limits = limits
        self.tls = tls
        self.slots = ConnectionSlots(limits.max_connections)
        self._tls_context: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context, made once per process."""
        if self._tls_context is None and self.tls is not None:
            self._tls_context = self.tls()
        return self._tls_context

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_tls_context": None}  # an SSLContext does not pickle


class HeadTooLarge(Exception):
    """The request's head outgrew MAX_REQUEST_HEAD (raised inside a parser callback)."""


def absolute_form_host(
    target: bytes, headers: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """`headers` with Host replaced by the authority of the absolute-form `target`: RFC 9112
    section 3.2.2 says a server MUST ignore the received Host then, and the gateway must
    route by the name it forwards for. A target without an http(s) authority, or with
    userinfo (RFC 9110 section 4.2.4: an error), leaves no Host, which is refused (400)."""
    kept = [(k, v) for k, v in headers if k != b"host"]
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return kept
    if (url.schema or b"").lower() not in (b"http", b"https") or not url.host or url.userinfo:
        return kept
    host = b"[" + url.host + b"]" if b":" in url.host else url.host
    return [*kept, (b"host", host + (b":%d" % url.port if url.port else b""))]


def peer_chain(transport: asyncio.BaseTransport) -> list[str]:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return [ssl.DER_cert_to_PEM_cert(der)] if der else []


class TurnBatchedTransport:
    """A transport whose writes during one event-loop turn leave as one write.

    uvicorn writes a response head and its body separately; on TLS each write is its own
    record, encryption call and send(2). The gateway usually has the whole (small) answer
    in the same turn, so batching makes it one of each. The batch leaves at the start of
    the next turn, before any new I/O is handled, and before `close`."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class TlsHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension, absolute-form request
    targets routed by their authority (see `absolute_form_host`), writes batched per
    event-loop turn (`TurnBatchedTransport`), the express lane, its own TLS handshake and
    the deadlines of slow and idle clients (`gateway.config.Limits`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        config = self.config
        # Without the gateway's config (tests of the protocol alone): uvicorn's keep-alive.
        self.limits: Limits = getattr(config, "limits", None) or Limits(
            keep_alive_timeout=config.timeout_keep_alive
        )
        self._slots: ConnectionSlots | None = getattr(config, "slots", None)
        self._made = False  # uvicorn's connection_made ran (after TLS, if any)
        if self._slots is not None and not self._slots.take():
            if self._slots.refused % 1000 == 1:  # the first, then one line per thousand
                log.warning(
                    "refused %d connection(s) so far: %d are open (max_connections)",
                    self._slots.refused,
                    self.limits.max_connections,
                )
            self._slots = None  # nothing to give back
            transport.abort()
            return
        tls = config.tls_context() if isinstance(config, ServerConfig) else None
        if tls is None:
            return self._connected(transport)
        self._start_tls(transport, tls)

    # -- TLS, done here so that the handshake is timed and counted ------------------------

    def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        """`loop.start_tls`, its first step run now, as an eager task would: uvloop starts
        reading a new connection right after connection_made, and the ClientHello must
        reach the TLS protocol that start_tls puts on the transport, not this one."""
        coro = self.loop.start_tls(
            transport,
            self,
            context,
            server_side=True,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout,
        )
        self._tls_step(coro, transport, self.loop.time())

    def _tls_step(
        self,
        coro: Coroutine[Any, Any, asyncio.BaseTransport | None],
        transport: asyncio.Transport,
        started: float,
    ) -> None:
        try:
            waiting = coro.send(None)  # runs until start_tls awaits the handshake
        except StopIteration as done:
            tls = done.value
            if tls is None or tls.is_closing():
                return self._tls_failed(transport, None, started)
            return self._connected(tls)
        except OSError as exc:  # SSLError, ConnectionError and the handshake timeout
            return self._tls_failed(transport, exc, started)
        waiting._asyncio_future_blocking = False  # what asyncio's Task does with it
        waiting.add_done_callback(lambda _: self._tls_step(coro, transport, started))

    def _tls_failed(
        self, transport: asyncio.Transport, exc: OSError | None, started: float
    ) -> None:
        # start_tls reports its own timeout as ConnectionAbortedError, like a reset.
        timeout = self.limits.tls_handshake_timeout
        if self.loop.time() - started >= timeout * 0.99:
            _TIMED_OUT["tls_handshake"].inc()
        else:
            TLS_FAILURES.inc()
            log.debug("TLS handshake with %s failed: %r", transport.get_extra_info("peername"), exc)
        transport.abort()  # close() would wait to send to a client that may never read
        self._give_back()

    def _give_back(self) -> None:
        HEAP.connection_closed(self.loop)
        if self._slots is not None:
            self._slots.give_back()
            self._slots = None

    def _connected(self, transport: asyncio.Transport) -> None:
        """uvicorn's connection_made and the gateway's, once the transport is ready."""
        self._made = True
        super().connection_made(transport)
        self._tls: dict[object, object] = {"client_cert_chain": peer_chain(transport)}
        self._batched = TurnBatchedTransport(transport, self.loop)
        self.transport = cast(asyncio.Transport, self._batched)
        self._exchange: Exchange | None = None
        self._exchange_cycle: RequestResponseCycle | None = None
        self._head_size = 0
        self._too_large = False
        self._phase: str | None = None  # what the client owes us; None: we owe it
        self._deadline = 0.0
        self._begun = False
        self._wait("head", self.limits.request_head_timeout)

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the connection itself, unbatched and untimed.
        self._busy()
        self._batched.flush()
        self.transport = self._batched.transport
        super().handle_websocket_upgrade()
        # This protocol hears no more of the connection: its end is the WebSocket's.
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        websocket = self.transport.get_protocol()
        if isinstance(websocket, TlsWebSocketProtocol):
            websocket.on_lost = self._give_back
        else:
            self._give_back()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": self._tls}
        self._head_size = 0
        self._too_large = False
        self._begun = True  # a request head is arriving

    # uvicorn's on_url and on_header, with the size limits (in one call: one per field).

    def on_url(self, url: bytes) -> None:
        self.url += url  # may come in pieces
        if len(self.url) > MAX_FIELD:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._head_size += size
        if size > MAX_FIELD or self._head_size + len(self.url) > MAX_REQUEST_HEAD:
            self._head_too_large()
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _head_too_large(self) -> None:
        self._too_large = True
        raise HeadTooLarge  # the parser stops; uvicorn answers its 400, made a 431 here

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            return super().send_400_response(msg)
        log.info("refused a request head over %d bytes from %s", MAX_REQUEST_HEAD, self.client)
        self.transport.write(_TOO_LARGE)
        self.transport.close()

    def on_headers_complete(self) -> None:
        if self.url[:1] not in (b"/", b"*"):
            # uvicorn keeps only the path of an absolute-form target; its authority decides.
            self.headers[:] = absolute_form_host(self.url, self.headers)
        super().on_headers_complete()
        if self._phase == "head":  # a body may follow; if none, on_message_complete is next
            self._wait("body", self.limits.request_body_timeout)

    # -- the express lane ---------------------------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        try:
            forward = self._express(cycle, app)
        except Exception:  # a bug: the full ASGI path decides again, safely
            log.exception("express lane failed before forwarding; the ASGI app takes over")
            forward = None
        if forward is None:
            return super()._start_asgi_task(cycle, app)
        self._exchange_cycle = cycle
        proxy = cast("Gateway", app).proxy
        self._exchange = Exchange(
            self,
            forward,
            proxy,
            self.loop,
            close=not cycle.keep_alive,
            defaults=self.server_state.default_headers,
        )
        self._exchange.start()

    def _express(self, cycle: RequestResponseCycle, app: ASGI3Application) -> Forward | None:
        """What `Gateway.express` forwards at once; None for what the ASGI app must do,
        including any request with a body (it streams, and may expect 100-continue)."""
        express = getattr(app, "express", None)  # the gateway, not uvicorn's 503 app
        if express is None or has_body(cycle.scope["headers"]):
            return None
        return cast(Forward | None, express(cycle.scope))

    def write_paused(self) -> bool:
        return self.flow.write_paused

    def exchange_done(self, keep_alive: bool) -> None:
        cycle = self._exchange_cycle
        assert cycle is not None
        self._exchange = self._exchange_cycle = None
        cycle.response_started = cycle.response_complete = True
        if not (keep_alive and cycle.keep_alive):  # uvicorn's shutdown clears keep_alive
            self.transport.close()
        if self.pipeline:
            # The next request may take the upstream connection whose parser called us.
            self.loop.call_soon(self.on_response_complete)
        else:
            self.on_response_complete()

    # -- slow and idle clients: one timer per connection, not one per request ------------
    #
    # The phase says what the client owes: "head" (from the connection's start, or the
    # first byte of a request on a kept-alive one, to the end of the head; more lines do
    # not extend it), "body" (the next piece of the body), "idle" (a new request). While
    # the gateway owes the client (a request being answered) there is no deadline. The
    # timer is made once and re-armed for what is left when it fires: a timer made and
    # cancelled per request costs more than the check.

    def _wait(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + seconds
        timer = self.timeout_keep_alive_task
        if timer is None or timer.when() > self._deadline:  # sooner than armed: re-arm
            if timer is not None:
                timer.cancel()
            self._arm(seconds)

    def _busy(self) -> None:
        self._phase = None

    def _arm(self, delay: float) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(delay, self._check_deadline)

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn cancels its timer whenever data arrives; here data moves the deadline
        only where the phase says so (see above). Called by uvicorn's data_received."""
        if self._phase == "idle":
            self._wait("head", self.limits.request_head_timeout)
        elif self._phase == "body":
            self._deadline = self.loop.time() + self.limits.request_body_timeout

    def _check_deadline(self) -> None:
        self.timeout_keep_alive_task = None
        if self._phase is None or self.transport.is_closing():
            return  # the gateway owes the client: the response's end sets a deadline again
        if self._phase == "body" and self.flow.read_paused:
            # Not the client's fault: the app has not taken what was sent yet.
            self._deadline = self.loop.time() + self.limits.request_body_timeout
        left = self._deadline - self.loop.time()
        if left > 0:
            return self._arm(left)
        _TIMED_OUT[self._phase].inc()
        if (self._phase == "head" and self._begun) or (
            self._phase == "body" and self.cycle is not None and not self.cycle.response_started
        ):  # say why (RFC 9110 section 15.5.9)
            self.transport.write(_TIMEOUT)
        log.info("closed a connection from %s: %s timeout", self.client, self._phase)
        self._busy()
        self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._begun = False
        if self.cycle is not None and self.cycle.response_complete:  # answered early
            self._wait("idle", self.limits.keep_alive_timeout)
        else:
            self._busy()

    def on_response_complete(self) -> None:
        """uvicorn's, with the deadline of an idle connection instead of its timer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            return self._start_asgi_task(cycle, app)
        self._wait("idle", self.limits.keep_alive_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._exchange is not None:
            self._exchange.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self._give_back()
        if not self._made:
            return  # the TLS handshake did not finish: uvicorn never saw the connection
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        if self._exchange is not None:
            self._exchange.abort()
            self._exchange = self._exchange_cycle = None


class TlsWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol plus the ASGI TLS extension, and the end of the
    connection reported to the HTTP protocol it took over from (`on_lost`)."""

    on_lost: Callable[[], None] | None = None  # the HTTP protocol's, for the connection count

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tls: dict[object, object] = {"client_cert_chain": peer_chain(transport)}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()

    async def run_asgi(self) -> None:
        self.scope["extensions"]["tls"] = self._tls
        await super().run_asgi()
