"""Forward an allowed ASGI request to its app's upstream over verified TLS.

The gateway app decides; this module only moves bytes. Request and response bodies stream
in both directions (nothing is buffered whole) through `gateway.upstream`'s pooled
keep-alive client, WebSockets are bridged message by message (aiohttp's client),
and the headers crossing are cleaned on the way: hop-by-hop fields go (RFC 9110 section
7.6.1), client-sent identity goes (`gateway.headers`), `X-Forwarded-*` is rebuilt from what
the gateway itself resolved (`gateway.forwarded`), and only then are the gateway's own
headers (the signed identity assertion) added. The path forwarded is the normalised path the
policy decided on, sent pre-encoded so it is not re-interpreted.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from gateway.config import GatewayConfig
from gateway.forwarded import Origin
from gateway.headers import GATEWAY_COOKIE, Headers, fold, strip_identity_headers
from gateway.tls import client_context
from gateway.upstream import Endpoint, UpstreamError, UpstreamPool, UpstreamResponse

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# RFC 9110 section 7.6.1 (Connection and the fields it names), plus RFC 9112's
# Transfer-Encoding and the legacy Keep-Alive / Proxy-Connection.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",  # set to the upstream's own name
    }
)
# The WebSocket handshake is redone by the client library towards the upstream (RFC 6455).
_WEBSOCKET_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
)
_SUBPROTOCOLS = "sec-websocket-protocol"
MATCHED = 1024  # (host, path) -> route answers kept

log = logging.getLogger("overcast.gateway")


@dataclass(frozen=True)
class Route:
    """Requests for `host` whose path is under `path_prefix` go to `upstream`."""

    app: str
    host: str
    path_prefix: str
    upstream: str
    upstream_ca: Path | None = None
    keep_authorization: bool = False
    # The app's own strip_headers (folded names; prefixes): see gateway.config.App.
    strip_names: frozenset[str] = frozenset()
    strip_prefixes: tuple[str, ...] = ()

    def covers(self, path: str) -> bool:
        # Whole segments only, as in gateway.policy: '/api' does not cover '/apiary'.
        prefix = self.path_prefix.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]

    def match(self, host: str, path: str) -> Route | None:
        """The route for `host` (case-insensitive, port ignored) with the longest prefix."""
        matched = self._matched
        key = (host, path)
        if key in matched:  # the same few (host, path) pairs on every request
            return matched[key]
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.lower().rstrip(".")
        route = next((r for r in self._by_host.get(name, ()) if r.covers(path)), None)
        if len(matched) >= MATCHED:
            matched.clear()
        matched[key] = route
        return route

    @functools.cached_property
    def _matched(self) -> dict[tuple[str, str], Route | None]:
        return {}

    @functools.cached_property
    def _by_host(self) -> dict[str, tuple[Route, ...]]:
        """Each host's routes, longest prefix first (made once: matched on every request)."""
        hosts: dict[str, list[Route]] = {}
        for route in sorted(self.routes, key=lambda r: -len(r.path_prefix)):
            hosts.setdefault(route.host, []).append(route)
        return {host: tuple(routes) for host, routes in hosts.items()}


def hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
    """Names that must not cross a proxy: the fixed set and those named in `Connection`."""
    connection = tuple(value for key, value in headers if fold(key) == "connection")
    return _connection_names(connection) if connection else _HOP_BY_HOP


@functools.lru_cache(maxsize=256)  # "keep-alive", "close", "upgrade": the same few values
def _connection_names(values: tuple[bytes, ...]) -> frozenset[str]:
    named = {token.strip().lower() for v in values for token in v.decode("latin-1").split(",")}
    return _HOP_BY_HOP | named


def upstream_headers(
    headers: Iterable[tuple[bytes, bytes]],
    route: Route,
    origin: Origin,
    extra: Iterable[tuple[bytes, bytes]] = (),
    *,
    cookie_names: Sequence[str] = (GATEWAY_COOKIE,),
    websocket: bool = False,
) -> Headers:
    """The request headers the upstream gets, in order: cleaned client headers, then ours."""
    out = list(
        _cleaned(
            tuple(headers),
            route.keep_authorization,
            tuple(cookie_names),
            websocket,
            route.strip_names,
            route.strip_prefixes,
        )
    )
    out += [
        (b"x-forwarded-for", origin.client_ip.encode()),
        (b"x-forwarded-proto", origin.proto.encode()),
        (b"x-forwarded-host", origin.host.encode()),
    ]
    return out + list(extra)


@functools.lru_cache(maxsize=256)  # a client sends the same header section again and again
def _cleaned(
    headers: tuple[tuple[bytes, bytes], ...],
    keep_authorization: bool,
    cookie_names: tuple[str, ...],
    websocket: bool,
    strip_names: frozenset[str],
    strip_prefixes: tuple[str, ...],
) -> tuple[tuple[bytes, bytes], ...]:
    """The client's fields that may cross: no hop-by-hop, identity, gateway cookie, or
    header the app's config names."""
    drop = hop_by_hop(headers) | strip_names
    if websocket:
        drop |= _WEBSOCKET_HANDSHAKE | {_SUBPROTOCOLS}
    return tuple(
        strip_identity_headers(
            headers,
            cookie_names=cookie_names,
            keep_authorization=keep_authorization,
            also_drop=drop,
            also_drop_prefixes=strip_prefixes,
        )
    )


def http_date() -> bytes:
    """Now as an IMF-fixdate (RFC 9110 section 5.6.7)."""
    return _http_date(int(time.time()))


@functools.lru_cache(maxsize=1)  # one formatting per second
def _http_date(second: int) -> bytes:
    return email.utils.formatdate(second, usegmt=True).encode()


def downstream_headers(
    headers: Iterable[tuple[bytes, bytes]], cookie_names: Sequence[str], route: Route
) -> Headers:
    """Response headers for the client: no hop-by-hop, no upstream `Set-Cookie` that would
    overwrite (fixate) the gateway's own session cookie on the shared app host, and a
    `Location` that points at the upstream itself pointed back at the gateway (as nginx's
    `proxy_redirect default`), so a redirect never sends the browser around the gateway.
    A response without `Date` gets one (RFC 9110 section 6.6.1: a forwarding recipient
    with a clock adds it)."""
    headers = list(headers)
    drop = hop_by_hop(headers)
    names = tuple(n.lower() for n in cookie_names)
    out: Headers = []
    dated = False
    for key, value in headers:
        name, lowered = _response_name(key)
        if name in drop:
            continue
        dated = dated or name == "date"
        if name == "set-cookie":
            cookie = value.split(b"=", 1)[0].strip().decode("latin-1").lower()
            if any(cookie == n or cookie.startswith(n + "-") for n in names):
                continue
        if name in ("location", "content-location"):
            value = public_location(value, route)
        out.append((lowered, value))
    if not dated:
        out.append((b"date", http_date()))
    return out


@functools.lru_cache(maxsize=1024)  # an upstream sends the same few names every time
def _response_name(key: bytes) -> tuple[str, bytes]:
    """A response field name folded (for comparing) and lower-cased (for sending)."""
    return fold(key), key.lower()


def public_location(value: bytes, route: Route) -> bytes:
    """`value` with the upstream's base URL cut off: a path the browser resolves against the
    URL it used (RFC 9110 section 10.2.2), so host, port and scheme stay the gateway's."""
    base = route.upstream.rstrip("/").encode("latin-1")
    if value[: len(base)].lower() != base.lower():
        return value
    rest = value[len(base) :]
    if rest and rest[:1] not in (b"/", b"?", b"#"):
        return value  # another host that merely starts with the same name
    if rest[:2] in (b"//", b"/\\"):
        return value  # as a relative reference that would name another host
    return rest if rest.startswith(b"/") else b"/" + rest


def upstream_failure(app: str, error: BaseException) -> tuple[int, str]:
    """The status and text for an upstream that failed before answering: 504 when it
    timed out, else 502 naming the kind of failure (never its details)."""
    if isinstance(error, TimeoutError):
        return 504, f"upstream {app} did not answer in time"
    return 502, f"upstream {app} unreachable: {type(error).__name__}"


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        name = fold(key)
        if name == "transfer-encoding" or (name == "content-length" and value.strip() != b"0"):
            return True
    return False


class Forward(NamedTuple):
    """One allowed request as it goes upstream: cleaned headers, the upstream's target."""

    route: Route
    endpoint: Endpoint
    method: str
    target: bytes
    headers: Headers


@dataclass
class Proxy:
    """Pooled HTTPS clients towards every upstream; create once, `close()` at shutdown."""

    table: RouteTable
    cookie_names: Sequence[str] = (GATEWAY_COOKIE,)
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    max_websocket_message: int = 16 * 1024 * 1024
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)
    _ssl: dict[Path | None, ssl.SSLContext] = field(default_factory=dict, init=False, repr=False)
    _pool: UpstreamPool | None = field(default=None, init=False, repr=False)
    _endpoints: dict[Route, tuple[Endpoint, str]] = field(
        default_factory=dict, init=False, repr=False
    )
    # Built response heads, by what they were built from (`gateway.express`).
    response_heads: dict[tuple[object, ...], tuple[bytes, bool]] = field(
        default_factory=dict, init=False, repr=False
    )

    def upstream(self) -> UpstreamPool:
        if self._pool is None:
            self._pool = UpstreamPool(self.connect_timeout, self.read_timeout)
        return self._pool

    def _endpoint(self, route: Route) -> tuple[Endpoint, str]:
        """Where `route`'s requests go, and the upstream's base path."""
        known = self._endpoints.get(route)
        if known is None:
            base = urlsplit(route.upstream)
            host = base.hostname or ""
            port = base.port or 443
            name = f"[{host}]" if ":" in host else host
            authority = name if port == 443 else f"{name}:{port}"
            endpoint = Endpoint(host, port, authority.encode("idna"), self._context(route))
            known = self._endpoints[route] = (endpoint, base.path.rstrip("/"))
        return known

    def _client(self) -> aiohttp.ClientSession:
        """The WebSocket client."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
                ),
                # The client's bytes, as sent: no decompression, no cookie jar, no defaults.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    def _context(self, route: Route) -> ssl.SSLContext:
        if route.upstream_ca not in self._ssl:
            self._ssl[route.upstream_ca] = client_context(route.upstream_ca)
        return self._ssl[route.upstream_ca]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @staticmethod
    def url(route: Route, path: str, query: str, *, websocket: bool = False) -> URL:
        """Upstream base path + normalised path, already encoded: yarl must not re-encode."""
        base = urlsplit(route.upstream)
        scheme = "wss" if websocket else "https"
        target = base.path.rstrip("/") + path + (f"?{query}" if query else "")
        return URL(f"{scheme}://{base.netloc}{target}", encoded=True)

    def forward(
        self,
        scope: Scope,
        route: Route,
        path: str,
        origin: Origin,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> Forward:
        """What goes upstream for an HTTP request whose normalised path is `path`."""
        headers = upstream_headers(
            scope["headers"], route, origin, extra_headers, cookie_names=self.cookie_names
        )
        endpoint, base = self._endpoint(route)
        query = scope.get("query_string", b"")
        target = (base + path).encode("ascii") + (b"?" + query if query else b"")
        return Forward(route, endpoint, scope["method"], target, headers)

    async def http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        path: str,
        origin: Origin,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Forward one HTTP request (`path` normalised) and stream the response back."""
        forward = self.forward(scope, route, path, origin, extra_headers)
        body = RequestBody(receive, done=not has_body(scope["headers"]))
        try:
            upstream = await self.upstream().request(
                forward.endpoint,
                forward.method,
                forward.target,
                forward.headers,
                None if body.done else body.chunks(),
            )
        except (TimeoutError, UpstreamError, OSError) as e:  # ssl.SSLError is an OSError
            return await _error(send, *upstream_failure(route.app, e))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": downstream_headers(upstream.headers, self.cookie_names, route),
                }
            )
            if upstream.length is None and body.done:
                # No length: possibly endless (server-sent events). uvicorn drops writes
                # to a client that left without telling us, so watch for it ourselves.
                await _pump_until_gone(upstream, send, receive)
            else:
                await _pump(upstream, send)
        except (UpstreamError, OSError):
            # Mid-body: the status is sent, so the client learns by the connection closing
            # (uvicorn closes it when the response ends unfinished).
            log.info("upstream %s broke off a response", route.app)
        finally:
            upstream.release()

    async def websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        path: str,
        origin: Origin,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Bridge one WebSocket to the upstream; either side closing closes both."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers = upstream_headers(
            scope["headers"],
            route,
            origin,
            extra_headers,
            cookie_names=self.cookie_names,
            websocket=True,
        )
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            upstream = await self._client().ws_connect(
                self.url(route, path, query, websocket=True),
                headers=_multidict(headers),
                protocols=tuple(scope.get("subprotocols", ())),
                ssl=self._context(route),
                max_msg_size=self.max_websocket_message,
                autoclose=False,
            )
        except (aiohttp.ClientError, ssl.SSLError, OSError, TimeoutError):
            # Before accept, an ASGI close becomes an HTTP 403 to the client.
            await send({"type": "websocket.close", "code": 1011})
            return
        async with upstream:
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            await _bridge(receive, send, upstream)


@dataclass
class RequestBody:
    """The client's request body as an async iterator; `done` once all of it was read.

    With the body read whole, `receive` is free to report the client's disconnect."""

    receive: Receive
    done: bool

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise UpstreamError("client went away mid-request")
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                self.done = True
                return


async def _pump(upstream: UpstreamResponse, send: Send) -> None:
    while True:
        chunk = await upstream.read()
        # The last chunk closes the response itself: one send fewer per request.
        more = not upstream.complete  # `read` took all that had arrived
        await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if not more:
            return


async def _pump_until_gone(upstream: UpstreamResponse, send: Send, receive: Receive) -> None:
    """`_pump`, stopped (the upstream connection closed) when the client disconnects."""

    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pump = asyncio.ensure_future(_pump(upstream, send))
    gone = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait((pump, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # After a complete response uvicorn reports a disconnect too; only cancel unfinished.
        for task in (pump, gone):
            if not task.done():
                task.cancel()
        await asyncio.gather(pump, gone, return_exceptions=True)
    if not pump.cancelled() and (error := pump.exception()) is not None:
        raise error


def _multidict(headers: Headers) -> CIMultiDict[str]:
    return CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)


async def _error(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    with contextlib.suppress(Exception):  # the response may already have started
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _bridge(receive: Receive, send: Send, upstream: aiohttp.ClientWebSocketResponse) -> None:
    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=_sendable(message.get("code", 1000)))
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def upstream_to_client() -> None:
        async for msg in upstream:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": msg.data})
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": msg.data})
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                break
        code = _sendable(upstream.close_code or 1000)
        await upstream.close()
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": code})

    tasks = [
        asyncio.ensure_future(client_to_upstream()),
        asyncio.ensure_future(upstream_to_client()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _sendable(code: int) -> int:
    """A close code that may go on the wire: 1005, 1006 and 1015 only report (RFC 6455
    section 7.4.1), and only 1000-4999 exist."""
    return 1000 if code in (1005, 1006, 1015) or not 1000 <= code <= 4999 else code


def routes_from_config(config: GatewayConfig) -> RouteTable:
    """The route table of a `gateway.config.GatewayConfig`."""
    return RouteTable(
        tuple(
            Route(
                name,
                config.app_host(name),
                app.path_prefix,
                app.upstream,
                app.upstream_ca,
                keep_authorization=app.pass_authorization,
                strip_names=app.strip_names,
                strip_prefixes=app.strip_prefixes,
            )
            for name, app in config.apps.items()
        )
    )
