"""gateway.upstream's framing and pooling, against a scripted plain-TCP server on loopback.

Each test's server answers the requests of each connection from a script of raw response
bytes, so the client meets exactly the framing under test (chunked, until close, cut off).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from gateway.upstream import Endpoint, UpstreamError, UpstreamPool, UpstreamResponse

pytestmark = pytest.mark.timeout(30)

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class Script:
    """Per connection, per request: raw bytes to answer (None: close without answering).
    The server closes a connection after its last reply."""

    replies: list[list[bytes | None]]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = await reader.readuntil(b"0\r\n\r\n")
    elif b"content-length: " in lower:
        length = int(lower.split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    else:
        body = b""
    return head + body


async def serve(
    script: Script,
    test: Callable[[UpstreamPool, Endpoint], Awaitable[None]],
    read_timeout: float = 300.0,
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        replies = script.replies[script.connections]
        script.connections += 1
        try:
            for reply in replies:
                script.requests.append(await _read_request(reader))
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstreams = UpstreamPool(read_timeout=read_timeout)
    try:
        await test(upstreams, Endpoint("127.0.0.1", port, f"127.0.0.1:{port}".encode(), None))
    finally:
        await upstreams.close()
        server.close()
        await server.wait_closed()


async def body_of(response: UpstreamResponse) -> bytes:
    data = b""
    try:
        while chunk := await response.read():
            data += chunk
    finally:
        response.release()
    return data


async def get(pool: UpstreamPool, endpoint: Endpoint, method: str = "GET") -> tuple[int, bytes]:
    response = await pool.request(endpoint, method, b"/x", [(b"accept", b"*/*")])
    return response.status, await body_of(response)


def test_chunked_response_and_reuse_of_the_connection() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    script = Script([[chunked, OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        response = await pool.request(endpoint, "GET", b"/x", [])
        assert response.length is None
        assert await body_of(response) == b"abcde"
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 1
    assert script.requests[0].startswith(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1:")


def test_body_until_close_is_whole_and_the_connection_not_reused() -> None:
    script = Script([[b"HTTP/1.1 200 OK\r\n\r\nall of it"], [OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        assert await get(pool, endpoint) == (200, b"all of it")
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 2


def test_upstream_dying_mid_body_is_an_error_not_a_short_body() -> None:
    script = Script([[b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten.."], [OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        with pytest.raises(UpstreamError, match="mid-body"):
            await get(pool, endpoint)
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 2


def test_connection_close_from_upstream_is_honoured() -> None:
    close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nby"
    script = Script([[close, OK], [OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        assert await get(pool, endpoint) == (200, b"by")
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 2


def test_unread_response_is_not_reused() -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc"
    script = Script([[big, OK], [OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        response = await pool.request(endpoint, "GET", b"/x", [])
        response.release()  # the client left before the body ended
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 2


def test_idle_connection_closed_by_upstream_is_retried_for_a_bodyless_request() -> None:
    # The upstream answers once, then closes without saying so (an idle timeout).
    script = Script([[OK, None], [OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        assert await get(pool, endpoint) == (200, b"ok")
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 2


def test_head_response_has_no_body_whatever_its_length_and_keeps_the_connection() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"
    script = Script([[head, OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        assert await get(pool, endpoint, "HEAD") == (200, b"")
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 1


def test_interim_response_is_skipped_and_204_is_bodiless() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    script = Script([[interim, OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        assert await get(pool, endpoint) == (204, b"")
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 1


async def _parts() -> AsyncIterator[bytes]:
    for part in (b"hello ", b"", b"world"):
        yield part


@pytest.mark.parametrize(
    ("headers", "sent"),
    [
        ([], b"transfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
        ([(b"content-length", b"11")], b"content-length: 11\r\n\r\nhello world"),
    ],
)
def test_request_body_framing(headers: list[tuple[bytes, bytes]], sent: bytes) -> None:
    script = Script([[OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        response = await pool.request(endpoint, "POST", b"/up", headers, _parts())
        assert await body_of(response) == b"ok"

    asyncio.run(serve(script, test))
    assert script.requests[0].endswith(sent)


def test_request_body_cut_off_closes_the_connection() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"part"
        raise UpstreamError("client went away mid-request")

    script = Script([[OK], [OK]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        with pytest.raises(UpstreamError):
            response = await pool.request(endpoint, "POST", b"/up", [], failing())
            await body_of(response)
        assert await get(pool, endpoint) == (200, b"ok")

    asyncio.run(serve(script, test))
    assert script.connections == 2


def test_silent_upstream_times_out() -> None:
    script = Script([[]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        with pytest.raises(TimeoutError):
            await get(pool, endpoint)

    async def silent(pool: UpstreamPool, endpoint: Endpoint) -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await test(pool, Endpoint("127.0.0.1", port, b"x", None))
        finally:
            server.close()

    asyncio.run(serve(script, silent, read_timeout=0.2))


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\nok",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
    ],
)
def test_malformed_responses_are_upstream_errors(reply: bytes) -> None:
    script = Script([[reply]])

    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        with pytest.raises(UpstreamError):
            await get(pool, endpoint)

    asyncio.run(serve(script, test))


@pytest.mark.parametrize(
    ("target", "value"),
    [(b"/", b"1\r\nx-b: 2"), (b"/", b"bare\rcr"), (b"/", b"bare\nlf"), (b"/a\r\nx-b: 2", b"1")],
)
def test_header_value_with_line_break_is_refused(target: bytes, value: bytes) -> None:
    async def test(pool: UpstreamPool, endpoint: Endpoint) -> None:
        with pytest.raises(UpstreamError, match="line break"):
            await pool.request(endpoint, "GET", target, [(b"x-a", value)])

    asyncio.run(serve(Script([[]]), test))


def test_a_reused_connection_times_out_a_request_its_upstream_never_answers() -> None:
    """The read timeout is one timer per connection: it must still fire for a later request
    on the same connection, not only for the request that armed it."""
    answered = asyncio.Event()

    async def once_then_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        answered.set()
        await _read_request(reader)  # the second request is read and never answered
        await asyncio.Event().wait()

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(once_then_silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(read_timeout=0.3)
        endpoint = Endpoint("127.0.0.1", port, b"x", None)
        try:
            assert await get(pool, endpoint) == (200, b"ok")
            await asyncio.sleep(0.2)  # the first request's deadline is now close
            start = loop.time()
            with pytest.raises(TimeoutError):
                await get(pool, endpoint)
            return loop.time() - start
        finally:
            await pool.close()
            server.close()

    waited = asyncio.run(scenario())
    assert 0.25 <= waited < 5
