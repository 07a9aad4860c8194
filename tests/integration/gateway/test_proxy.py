"""gateway.proxy against a real TLS upstream on loopback, through a real uvicorn.

The gateway here is `mini_gateway`, a stand-in for gateway.app with only the proxy's share
of the work: normalise the path, route by host and prefix, resolve the client, forward with
an extra header. Everything crosses real sockets: uvicorn (httptools + websockets) in front,
aiohttp's client to a TLS 1.2+ upstream that checks nothing but reports everything.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from gateway import tls
from gateway.proxy import Route
from tests.integration.gateway.echo_upstream import (
    ASSERTION,
    GZIP_BODY,
    Asgi,
    Upstream,
    mini_gateway,
    raw_http,
    running,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, int]]:
    tmp = tmp_path_factory.mktemp("proxy")
    # A CA that did not sign the upstream: the gateway must refuse to talk to it.
    other_ca = tls.dev_ca(tmp / "other-ca", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))

    def gateway(upstream: Upstream) -> Asgi:
        url = f"https://127.0.0.1:{upstream.port}"
        return mini_gateway(
            [
                Route("app", "app.test", "/", url, upstream.ca),
                Route("base", "base.test", "/", url + "/echo/base", upstream.ca),
                Route("wrongca", "wrongca.test", "/", url, other_ca.ca),
                Route("systemca", "systemca.test", "/", url, None),
            ]
        )

    with running(gateway, tmp) as both:
        yield both


def echo(port: int, head: str, body: bytes = b"") -> dict[str, Any]:
    response = raw_http(port, head, body)
    assert response.status == 200, response
    data: dict[str, Any] = json.loads(response.body)
    return data


def names(data: dict[str, Any]) -> list[str]:
    return [k.lower() for k, _ in data["headers"]]


def test_forwards_normalised_path_and_clean_headers(servers: tuple[Upstream, int]) -> None:
    upstream, port = servers
    data = echo(
        port,
        "GET /echo/a%20b/./../%63//d?x=1&y=%2F HTTP/1.1\r\n"
        "Host: app.test\r\n"
        "X-Forwarded-Email: admin@corp.example\r\n"
        "X_Forwarded_Email: admin@corp.example\r\n"
        "X-Forwarded-For: 6.6.6.6\r\n"
        "X-Overcast-Assertion: forged\r\n"
        "Authorization: Bearer stolen\r\n"
        "Cookie: __Host-overcast=session-secret; theme=dark\r\n"
        "Connection: x-hop\r\n"
        "X-Hop: must-not-cross\r\n"
        "X-Request-Id: 42",
    )
    assert data["raw_path"] == "/echo/c/d?x=1&y=%2F"
    headers = {k.lower(): v for k, v in data["headers"]}
    assert headers["host"] == f"127.0.0.1:{upstream.port}"
    assert headers["x-request-id"] == "42"
    assert headers["cookie"] == "theme=dark"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "app.test"
    assert [v for k, v in data["headers"] if k.lower() == "x-overcast-assertion"] == [
        ASSERTION.decode()
    ]
    for gone in ("x-forwarded-email", "x_forwarded_email", "authorization", "x-hop"):
        assert gone not in names(data)


def test_upstream_base_path_is_prefixed(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    assert echo(port, "GET /x/y HTTP/1.1\r\nHost: base.test")["raw_path"] == "/echo/base/x/y"


def test_streams_request_body_both_framings(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{port}/upload"
            async with client.post(url, data=chunks(), headers={"Host": "app.test"}) as r:
                chunked = await r.json()
            async with client.put(url, data=payload, headers={"Host": "app.test"}) as r:
                sized = await r.json()
        return chunked, sized

    expected = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert asyncio.run(go()) == (expected, expected)


def test_streams_response_before_upstream_finishes(servers: tuple[Upstream, int]) -> None:
    upstream, port = servers
    upstream.release.clear()

    async def go() -> list[bytes]:
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{port}/stream"
            async with client.get(url, headers={"Host": "app.test"}) as r:
                # The upstream is blocked until we release it: this line arriving proves
                # the gateway forwarded the first chunk without waiting for the whole body.
                first = await asyncio.wait_for(r.content.readline(), 20)
                upstream.release.set()
                rest = await r.content.read()
        return [first, rest]

    assert asyncio.run(go()) == [b"first-chunk\n", b"second-chunk\n"]


def test_client_leaving_an_endless_stream_closes_upstream(servers: tuple[Upstream, int]) -> None:
    upstream, port = servers
    upstream.endless_closed.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert b"data: tick" in sock.recv(65536) or b"data: tick" in sock.recv(65536)
    # The gateway must notice and hang up on the upstream, not pump events forever.
    assert upstream.endless_closed.wait(20)


def test_upstream_cannot_overwrite_gateway_cookie(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    response = raw_http(port, "GET /set-cookie HTTP/1.1\r\nHost: app.test")
    assert response.header("set-cookie") == ["app=1; Path=/"]


def test_redirects_reach_client_unfollowed(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    response = raw_http(port, "GET /redirect HTTP/1.1\r\nHost: app.test")
    assert response.status == 302
    assert response.header("location") == ["https://elsewhere.invalid/"]


def test_upstream_self_redirect_stays_on_gateway(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    response = raw_http(port, "GET /redirect-self HTTP/1.1\r\nHost: app.test")
    assert response.header("location") == ["/signed-in?x=1"]


def test_compressed_body_crosses_untouched(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    response = raw_http(port, "GET /gzip HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: gzip")
    assert response.header("content-encoding") == ["gzip"]
    assert response.body == GZIP_BODY


def test_upstream_dying_mid_body_is_not_passed_off_as_whole(
    servers: tuple[Upstream, int],
) -> None:
    _, port = servers
    response = raw_http(port, "GET /cut HTTP/1.1\r\nHost: app.test")
    # The status and length went out before the upstream died: the client must be able to
    # tell, by the connection closing short of the promised length.
    assert (response.status, response.header("content-length")) == (200, ["100"])
    assert response.body == b"0123456789"
    # ... and the pool is not poisoned: the next request is answered whole.
    assert echo(port, "GET /echo/after HTTP/1.1\r\nHost: app.test")["raw_path"] == "/echo/after"


@pytest.mark.parametrize("host", ["wrongca.test", "systemca.test"])
def test_upstream_tls_is_verified(servers: tuple[Upstream, int], host: str) -> None:
    _, port = servers
    response = raw_http(port, f"GET /echo/x HTTP/1.1\r\nHost: {host}")
    assert response.status == 502
    assert b"unreachable" in response.body


def test_websocket_pass_through(servers: tuple[Upstream, int]) -> None:
    _, port = servers

    async def go() -> tuple[str | None, str, bytes, int | None]:
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(
                f"http://127.0.0.1:{port}/ws",
                headers={"Host": "app.test", "X-Forwarded-User": "admin"},
                protocols=("chat",),
            ) as ws,
        ):
            await ws.send_str("hello")
            text = await asyncio.wait_for(ws.receive_str(), 20)
            await ws.send_bytes(b"\x00\x01\x02")
            data = await asyncio.wait_for(ws.receive_bytes(), 20)
            await ws.send_str("bye")
            closing = await asyncio.wait_for(ws.receive(), 20)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            return ws.protocol, text, data, ws.close_code

    assert asyncio.run(go()) == ("chat", "echo:hello", b"\x02\x01\x00", 4001)


def test_bad_path_never_reaches_upstream(servers: tuple[Upstream, int]) -> None:
    _, port = servers
    response = raw_http(port, "GET /echo/a%2F..%2Fsecret HTTP/1.1\r\nHost: app.test")
    assert response.status == 400
    assert b"path separator" in response.body
