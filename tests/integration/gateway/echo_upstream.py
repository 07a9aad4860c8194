"""A tiny TLS upstream on loopback that reports what it received, and a gateway in front.

The upstream (aiohttp.web, its own dev CA from gateway.tls) answers:
  /echo/...        JSON: method, raw path, query, headers, as received
  /upload          streams the request body; JSON: size and SHA-256
  /stream          one chunk, then waits for the test's `release` event, then a second one:
                   the test sees chunk 1 through the gateway while the upstream is still
                   blocked, which proves the response is streamed, not buffered
  /endless         a server-sent event stream that only ends when its reader goes away
  /set-cookie      tries to overwrite the gateway's session cookie
  /redirect        a 302 elsewhere (must reach the client, not be followed)
  /redirect-self   a 302 to the upstream's own URL (must be pointed back at the gateway)
  /gzip            a gzip body that must cross untouched
  /cut             promises 100 bytes, sends 10 and drops the connection
  /hang            answers only once the test's `release` event is set
  /big             BIG_BODY bytes in 64 KiB writes; sets `big_sent` once all were written
  /ws              WebSocket echo; "bye" closes with code 4001
Both servers run on their own event loop in a thread, so tests can use any client.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import hashlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from aiohttp import WSMsgType, web

from gateway import tls
from gateway.config import GatewayConfig
from gateway.forwarded import Network, origin
from gateway.paths import BadPath, normalise
from gateway.policy import Policy
from gateway.proxy import Proxy, Route, RouteTable
from gateway.request import Identity, RequestContext
from gateway.session import COOKIE, SessionCodec, cookie_value

GZIP_BODY = gzip.compress(b"compressed payload " * 100)
ASSERTION = b"signed-identity-assertion"
BIG_BODY = 64 * 1024 * 1024  # more than any socket and proxy buffers hold together
Asgi = Callable[[Any, Any, Any], Awaitable[None]]


@dataclass
class Upstream:
    port: int
    ca: Path
    release: threading.Event = field(default_factory=threading.Event)
    big_sent: threading.Event = field(default_factory=threading.Event)
    endless_closed: threading.Event = field(default_factory=threading.Event)


def _app(upstream: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": [[k, v] for k, v in request.headers.items()],
            }
        )

    async def upload(request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first-chunk\n")
        released = await asyncio.to_thread(upstream.release.wait, 20)
        await response.write(b"second-chunk\n" if released else b"never-released\n")
        await response.write_eof()
        return response

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:  # a server-sent event stream that never ends by itself
                await response.write(b"data: tick\n\n")
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            upstream.endless_closed.set()
            raise

    async def set_cookie(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "__Host-overcast=attacker; Path=/; Secure")
        response.headers.add("Set-Cookie", "app=1; Path=/")
        return response

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.invalid/")

    async def redirect_self(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://127.0.0.1:{upstream.port}/signed-in?x=1")

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=GZIP_BODY, headers={"Content-Encoding": "gzip"})

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"0123456789")
        assert request.transport is not None
        request.transport.abort()
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(protocols=("chat",))
        await sock.prepare(request)
        async for msg in sock:
            if msg.type is WSMsgType.TEXT and msg.data == "bye":
                await sock.close(code=4001, message=b"bye")
            elif msg.type is WSMsgType.TEXT:
                await sock.send_str(f"echo:{msg.data}")
            elif msg.type is WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        return sock

    async def hang(request: web.Request) -> web.Response:
        await asyncio.to_thread(upstream.release.wait, 20)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.StreamResponse:
        upstream.big_sent.clear()
        response = web.StreamResponse(headers={"Content-Length": str(BIG_BODY)})
        await response.prepare(request)
        block = b"x" * 65536
        for _ in range(BIG_BODY // len(block)):
            await response.write(block)  # waits while the gateway does not read
        upstream.big_sent.set()
        return response

    app = web.Application()
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/endless", endless)
    app.router.add_get("/set-cookie", set_cookie)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/redirect-self", redirect_self)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/cut", cut)
    app.router.add_get("/hang", hang)
    app.router.add_get("/big", big)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def one_app(upstream: Upstream, policy: Mapping[str, Any]) -> GatewayConfig:
    """A gateway config with one app, `app` at app.test, in front of `upstream`."""
    return GatewayConfig.model_validate(
        {
            "issuer": "https://127.0.0.1:9/",  # never reached: sessions are minted
            "host": "gw.test",
            "apps": {
                "app": {
                    "host": "app.test",
                    "upstream": f"https://127.0.0.1:{upstream.port}",
                    "upstream_ca": str(upstream.ca),
                    **policy,
                }
            },
        }
    )


def mini_gateway(
    routes: list[Route],
    policies: dict[str, Policy] | None = None,
    codec: SessionCodec | None = None,
    trusted: list[Network] | None = None,
) -> Asgi:
    """The gateway's request path built from its parts, for tests that must not wait for
    gateway.app: normalise, route, resolve the client, open the session cookie, decide,
    forward with the assertion header. No route: 404; bad path: 400; denied: 401 when
    anonymous, else 403, with the decision's reason as the body."""
    proxy = Proxy(RouteTable(tuple(routes)))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await proxy.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = scope["headers"]
        host = dict(headers).get(b"host", b"").decode("latin-1")
        try:
            path = normalise((scope.get("raw_path") or b"").decode("latin-1"))
        except BadPath as e:
            return await _refuse(scope, send, 400, str(e))
        route = proxy.table.match(host, path)
        if route is None:
            return await _refuse(scope, send, 404, "no app here")
        seen = origin(scope["client"][0], "https", host, headers, trusted or [])
        if policies is not None:
            identity = _identity(codec, headers)
            context = RequestContext(
                scope.get("method", "GET"),
                seen.host,
                path,
                client_ip=seen.client_ip,
                identity=identity,
            )
            decision = policies[route.app].decide(context)
            if not decision.allowed:
                return await _refuse(scope, send, 401 if identity is None else 403, decision.reason)
        forward = proxy.websocket if scope["type"] == "websocket" else proxy.http
        await forward(
            scope, receive, send, route, path, seen, [(b"x-overcast-assertion", ASSERTION)]
        )

    return app


def _identity(codec: SessionCodec | None, headers: list[tuple[bytes, bytes]]) -> Identity | None:
    cookies = "; ".join(v.decode("latin-1") for k, v in headers if k == b"cookie")
    session = codec.open(cookie_value(cookies, COOKIE), int(time.time())) if codec else None
    if session is None:
        return None
    claims = session.claims
    return Identity(
        session.sub,
        claims.get("email"),
        claims.get("email_verified") is True,
        tuple(claims.get("groups", ())),
        claims,
    )


async def _refuse(scope: Any, send: Any, status: int, reason: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = reason.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _loopback_socket() -> socket.socket:
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says TCP, else Nagle + delayed ACK add ~40 ms per response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running(
    gateway_app: Callable[[Upstream], Asgi],
    tmp: Path,
    http: type[asyncio.Protocol] | None = None,
    **options: Any,
) -> Iterator[tuple[Upstream, int]]:
    """Start the upstream and a uvicorn gateway serving `gateway_app(upstream)` (an ASGI app
    that also answers the lifespan protocol, so it can close its client pool); `http` is
    uvicorn's HTTP protocol class (default: its own httptools one), `options` more
    `uvicorn.Config` settings.

    Yields (upstream, gateway_port); both stop, and their sockets close, on exit.
    """
    files = tls.dev_ca(tmp / "upstream-ca", ["127.0.0.1", "localhost"], _now())
    assert files.ca is not None
    upstream_sock, gateway_sock = _loopback_socket(), _loopback_socket()
    upstream = Upstream(upstream_sock.getsockname()[1], files.ca)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        runner = web.AppRunner(_app(upstream))
        await runner.setup()
        site = web.SockSite(runner, upstream_sock, ssl_context=tls.server_context(files))
        await site.start()
        # proxy_headers=False: uvicorn otherwise rewrites the client address from
        # X-Forwarded-For sent by any loopback peer, before the gateway can judge it.
        config = uvicorn.Config(
            gateway_app(upstream),
            log_level="warning",
            lifespan="on",
            ws="websockets-sansio",
            proxy_headers=False,
            http=http or "httptools",
            **options,
        )
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[gateway_sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        ready.set()
        await stop.wait()
        server.should_exit = True
        await serving
        await runner.cleanup()

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as e:  # reported to the test thread
            failure.append(e)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    try:
        assert ready.wait(20), "upstream/gateway did not start in 20 s"
        if failure:
            raise failure[0]
        yield upstream, gateway_sock.getsockname()[1]
    finally:
        upstream.release.set()
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        upstream_sock.close()
        gateway_sock.close()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def raw_http(port: int, head: str, body: bytes = b"") -> RawResponse:
    """Send `head` (request line + headers, no blank line) byte for byte, as an attacker
    would: no client library gets to normalise the path or the header names."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    response = RawResponse(int(lines[0].split()[1]), headers, payload)
    if response.header("transfer-encoding") == ["chunked"]:
        return RawResponse(response.status, headers, _dechunk(payload))
    return response


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out
