"""The express lane (`gateway.express`) against a real TLS upstream, through the gateway's
own HTTP protocol, on real loopback sockets.

Each case checks what a client or the upstream can observe, and that the express lane (not
the ASGI app) carried the request: `Lane` counts what `Gateway.express` forwarded.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway, build
from gateway.assertion import HEADER as ASSERTION_HEADER
from gateway.proxy import Forward
from gateway.server import TlsHttpProtocol
from gateway.session import COOKIE, Session
from tests.integration.gateway.echo_upstream import BIG_BODY, Asgi, Upstream, one_app, running

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


@dataclass
class Lane:
    """A gateway whose express decisions are counted, or (off) all refused."""

    gateway: Gateway
    forwarded: int = 0
    off: bool = False

    def install(self) -> None:
        decide = self.gateway.express

        def counted(scope: Any) -> Forward | None:
            if self.off:
                return None
            forward = decide(scope)
            self.forwarded += forward is not None
            return forward

        self.gateway.express = counted  # type: ignore[method-assign]

    def cookie(self) -> str:
        now = int(time.time())
        claims = {"email": "alice@corp.example", "email_verified": True, "groups": ["sales"]}
        session = Session("s1", "alice", claims, now, now + 3600, now + 3600)
        return f"{COOKIE}={self.gateway.codec.seal(session)}"


@dataclass
class Served:
    port: int
    upstream: Upstream
    lane: Lane

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, headers={"Host": "app.test", **(headers or {})})
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


@contextmanager
def serve(
    tmp: Path, tweak: Callable[[Gateway], None] = lambda g: None, **options: Any
) -> Iterator[Served]:
    """A real gateway (one app, app.test, group sales allowed) in front of the upstream."""
    lanes: list[Lane] = []

    def gateway(upstream: Upstream) -> Asgi:
        built = build(one_app(upstream, {"allow": {"groups": "sales"}}))
        tweak(built)
        lane = Lane(built)
        lane.install()
        lanes.append(lane)
        return built

    with running(gateway, tmp, TlsHttpProtocol, **options) as (upstream, port):
        yield Served(port, upstream, lanes[0])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("express")) as s:
        yield s


def without(headers: list[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in headers if k.lower() not in names]


CASES = [
    ("GET", "/echo/a/../b?x=1&y=%2F", {}),
    ("HEAD", "/echo/head", {}),
    ("DELETE", "/echo/thing", {}),
    (
        "GET",
        "/echo/smuggle",
        {
            "X-Forwarded-Email": "boss@corp.example",
            "X_Forwarded_Email": "boss@corp.example",
            "X-Overcast-Assertion": "forged",
            "Authorization": "Bearer stolen",
            "X-Forwarded-For": "203.0.113.66",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop-by-hop by name",
        },
    ),
    ("GET", "/redirect-self", {}),
    ("GET", "/set-cookie", {}),
    ("GET", "/gzip", {}),
]


@pytest.mark.parametrize(("method", "path", "extra"), CASES)
def test_express_answers_as_the_asgi_app_does(
    served: Served, method: str, path: str, extra: dict[str, str]
) -> None:
    """Same upstream request, same response (but Date): the lane changes nothing visible."""
    lane = served.lane
    headers = {"Cookie": f"{lane.cookie()}; theme=dark", **extra}
    before = lane.forwarded
    express = served.request(method, path, headers)
    assert lane.forwarded == before + 1, "the express lane did not take the request"
    lane.off = True
    try:
        asgi = served.request(method, path, headers)
    finally:
        lane.off = False
    assert lane.forwarded == before + 1
    assert express[0] == asgi[0]
    # The assertion is re-signed per request only when its cache key changes: same here.
    assert without(express[1], "date") == without(asgi[1], "date")
    assert express[2] == asgi[2]
    if path.startswith("/echo/smuggle"):
        seen = {k.lower(): v for k, v in json.loads(express[2])["headers"]}
        assert "x-secret" not in seen and "authorization" not in seen
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen[ASSERTION_HEADER] != "forged" and "x-overcast-assertion" not in seen
        assert "theme=dark" in seen["cookie"] and COOKIE not in seen["cookie"]


def test_express_streams_the_response_as_it_comes(served: Served) -> None:
    served.upstream.release.clear()
    conn = served.connection()
    try:
        conn.request("GET", "/stream", headers={"Host": "app.test", "Cookie": served.lane.cookie()})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("transfer-encoding") == "chunked"
        # The upstream is blocked after its first chunk: this line can only come streamed.
        assert response.readline() == b"first-chunk\n"
        served.upstream.release.set()
        assert response.read() == b"second-chunk\n"
    finally:
        conn.close()


def raw(port: int, data: bytes, until: Callable[[bytes], bool]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        got = b""
        while not until(got):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    cookie = served.lane.cookie()
    head = "GET /echo/{} HTTP/1.1\r\nHost: app.test\r\nCookie: " + cookie + "\r\n\r\n"
    before = served.lane.forwarded
    data = raw(
        served.port,
        (head.format(1) + head.format(2)).encode(),
        lambda b: b.count(b"HTTP/1.1 200") == 2 and b.endswith(b"}"),
    )
    assert data.index(b"/echo/1") < data.index(b"/echo/2")
    assert served.lane.forwarded == before + 2


def test_an_upstream_cut_mid_body_closes_the_client_connection(served: Served) -> None:
    data = raw(
        served.port,
        f"GET /cut HTTP/1.1\r\nHost: app.test\r\nCookie: {served.lane.cookie()}\r\n\r\n".encode(),
        lambda b: False,  # read until the gateway closes
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 100" in head.lower() and body == b"0123456789"


def test_a_client_leaving_an_endless_stream_closes_it_upstream(served: Served) -> None:
    served.upstream.endless_closed.clear()
    raw(
        served.port,
        f"GET /endless HTTP/1.1\r\nHost: app.test\r\nCookie: {served.lane.cookie()}\r\n\r\n".encode(),
        lambda b: b.count(b"data: tick") >= 2,
    )
    assert served.upstream.endless_closed.wait(10), "the upstream stream was left running"


def test_a_client_that_does_not_read_holds_the_upstream_back(served: Served) -> None:
    """Back-pressure: the gateway reads from the upstream only as fast as the client takes
    the response, so a slow client never makes it buffer a whole large body."""
    request = f"GET /big HTTP/1.1\r\nHost: app.test\r\nCookie: {served.lane.cookie()}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(request.encode())
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        # Nothing more is read: the upstream must stall long before its last byte.
        assert not served.upstream.big_sent.wait(2), "the gateway buffered the whole body"
        received = len(first.partition(b"\r\n\r\n")[2])
        while received < BIG_BODY:
            chunk = sock.recv(1 << 20)
            assert chunk, "the response ended early"
            received += len(chunk)
    assert served.upstream.big_sent.wait(10)


def quick(gateway: Gateway) -> None:
    gateway.proxy.connect_timeout = 0.5
    gateway.proxy.read_timeout = 0.5


def test_a_silent_upstream_is_504_and_the_connection_goes_on(tmp_path: Path) -> None:
    with serve(tmp_path, quick) as s:
        s.upstream.release.clear()
        conn = s.connection()
        try:
            for path, status in (("/hang", 504), ("/echo/after", 200)):
                conn.request("GET", path, headers={"Host": "app.test", "Cookie": s.lane.cookie()})
                response = conn.getresponse()
                assert (path, response.status) == (path, status), response.read()
                response.read()
        finally:
            conn.close()
            s.upstream.release.set()
        assert s.lane.forwarded == 2


def test_an_unreachable_upstream_is_502(tmp_path: Path) -> None:
    def dead(gateway: Gateway) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        route = gateway.table.routes[0]
        endpoint, base = gateway.proxy._endpoint(route)
        gateway.proxy._endpoints[route] = (dataclasses.replace(endpoint, port=port), base)

    with serve(tmp_path, dead) as s:
        status, _, body = s.request("GET", "/echo/x", {"Cookie": s.lane.cookie()})
        assert status == 502 and b"unreachable" in body
        assert s.lane.forwarded == 1


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(tmp_path: Path) -> None:
    with serve(tmp_path, timeout_keep_alive=1) as s:
        cookie = s.lane.cookie()
        with socket.create_connection(("127.0.0.1", s.port), timeout=20) as sock:
            for _ in range(3):  # busy connections stay open past the timeout
                sock.sendall(
                    f"GET /echo/x HTTP/1.1\r\nHost: app.test\r\nCookie: {cookie}\r\n\r\n".encode()
                )
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                time.sleep(0.6)
            idle_from = time.monotonic()
            assert sock.recv(1) == b""  # closed by the gateway
            waited = time.monotonic() - idle_from
        assert 0.3 < waited < 5, waited
