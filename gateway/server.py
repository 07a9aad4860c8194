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
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, cast

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.express import Exchange
from gateway.proxy import Forward, has_body

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
    event-loop turn (`TurnBatchedTransport`), and the express lane."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls: dict[object, object] = {"client_cert_chain": peer_chain(transport)}
        self._batched = TurnBatchedTransport(transport, self.loop)
        self.transport = cast(asyncio.Transport, self._batched)
        self._exchange: Exchange | None = None
        self._exchange_cycle: RequestResponseCycle | None = None
        self._idle_since: float | None = None  # None: a request is under way
        self._head_size = 0
        self._too_large = False

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the connection itself, unbatched.
        self._batched.flush()
        self.transport = self._batched.transport
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": self._tls}
        self._head_size = 0
        self._too_large = False

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

    # -- keep-alive: one timer per connection, not one per request -----------------------

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn cancels its keep-alive timer whenever data arrives; here the timer
        stays and the connection only stops counting as idle."""
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, except that an idle connection arms the timer only if none is
        armed: a timer made and cancelled per request costs more than the check."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            return self._start_asgi_task(cycle, app)
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self._arm_keep_alive(self.timeout_keep_alive)

    def _arm_keep_alive(self, delay: float) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(delay, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None or self.transport.is_closing():
            return  # busy: the response's end arms it again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._arm_keep_alive(left)
        else:
            self.transport.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._exchange is not None:
            self._exchange.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        if self._exchange is not None:
            self._exchange.abort()
            self._exchange = self._exchange_cycle = None


class TlsWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol plus the ASGI TLS extension."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tls: dict[object, object] = {"client_cert_chain": peer_chain(transport)}

    async def run_asgi(self) -> None:
        self.scope["extensions"]["tls"] = self._tls
        await super().run_asgi()
