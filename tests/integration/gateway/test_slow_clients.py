"""Issue 17 item 6: slow and idle clients of the real `overcast gateway serve` process.

Floods of real loopback sockets: TCP connections that never start TLS, TLS connections that
never send a request, slowloris clients (one header line at a time), slow request bodies and
idle keep-alive connections. Each must be closed on time (its `gateway.limits` timeout, 1 s
here), slow requests answered 408, every close counted by phase, a well-behaved client
served next, and the process's RSS back within 20 % of its baseline. Past max_connections
a new connection is closed at once and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from lab import netns
from tests.integration.gateway.sso_peers import CLI_ENV, free_port, until

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

HOST = "gw.test"
TIMEOUT = 1.0  # every client timeout of the flood gateway
LATE = 3.0  # how late a close may be on a loaded 2-core machine


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    ca: Path
    _handshakes: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("overcast_gateway_") and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    async def open_tls(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection; a few handshakes at a time, so that on a loaded 2-core machine
        none of them takes longer than the gateway's (short) handshake timeout."""
        if self._handshakes is None or self._handshakes[0] is not asyncio.get_running_loop():
            self._handshakes = (asyncio.get_running_loop(), asyncio.Semaphore(8))
        async with self._handshakes[1]:
            return await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.tls(), server_hostname=HOST
            )

    async def ping(self) -> bytes:
        """A well-behaved client: one GET on a fresh TLS connection."""
        reader, writer = await self.open_tls()
        writer.write(f"GET /ping HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return answer


@contextmanager
def serve(tmp: Path, limits: dict[str, Any]) -> Iterator[Gateway]:
    port, metrics_port = free_port(), free_port()
    gateway = {
        "issuer": "https://127.0.0.1:9/",  # never reached: only /ping is asked for
        "host": HOST,
        "listen": f"127.0.0.1:{port}",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "tls": {"dev_dir": str(tmp / "ca")},
        "limits": limits,
        "apps": {"crm": {"upstream": "https://127.0.0.1:9", "allow": {"groups": "sales"}}},
    }
    sites = {"hq": {"role": "enterprise", "underlay": "192.0.2.1"}}
    config = tmp / "overcast.yaml"
    config.write_text(json.dumps({"sites": sites, "gateway": gateway}))
    log = tmp / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "overcast", "gateway", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - closed with the process
        cwd=tmp,
        env=CLI_ENV,
    )
    served = Gateway(proc, port, metrics_port, tmp / "ca" / "ca.pem")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {log.read_text()[-2000:]}")
        try:
            return asyncio.run(served.ping()).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    try:
        until(ready, 60, "overcast gateway serve to answer /ping")
        yield served
    finally:
        netns.stop([proc], 15)
        assert "Traceback" not in log.read_text()


@dataclass
class Closed:
    """When the gateway closed one client connection, and what it said first."""

    opened: float  # when the client's last byte went out (or the connection opened)
    closed: float
    said: bytes


async def read_until_closed(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    said = b""
    try:
        while chunk := await reader.read(65536):
            said += chunk
    except (ConnectionError, ssl.SSLError):
        pass
    return time.monotonic(), said


def never_tls(port: int, count: int) -> list[Closed]:
    """`count` TCP connections that never start TLS, in a thread of their own (selectors,
    no event loop that TLS work could delay): when each opened, when the gateway closed it."""
    opened: dict[socket.socket, float] = {}
    closes: list[Closed] = []
    with selectors.DefaultSelector() as watch:
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                opened[sock] = time.monotonic()
                sock.setblocking(False)
                watch.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            while len(closes) < count and time.monotonic() < deadline:
                for key, _ in watch.select(timeout=1):
                    sock = cast(socket.socket, key.fileobj)
                    try:
                        said = sock.recv(65536)
                    except ConnectionResetError:
                        said = b""
                    if said:
                        raise AssertionError(f"a connection without TLS was told {said!r}")
                    closes.append(Closed(opened[sock], time.monotonic(), said))
                    watch.unregister(sock)
        finally:
            for sock in opened:
                sock.close()
    assert len(closes) == count, f"{count - len(closes)} never closed"
    return closes


async def tls_then(gw: Gateway, *lines: bytes, every: float = 0.0) -> Closed:
    """A TLS connection that sends `lines`, `every` seconds apart, then waits."""
    reader, writer = await gw.open_tls()
    opened = time.monotonic()
    closing = asyncio.ensure_future(read_until_closed(reader))
    for i, line in enumerate(lines):
        if closing.done():
            break
        try:
            writer.write(line)
        except ConnectionError:  # closed by the gateway between two lines
            break
        if i == 0:
            opened = time.monotonic()  # a request's head or body is due from here
        await asyncio.wait([closing], timeout=every)
    closed, said = await closing
    writer.close()
    return Closed(opened, closed, said)


def on_time(closes: list[Closed], timeout: float) -> None:
    # Late is what matters (and the 408s and the counts by phase show which timeout closed
    # them); a client's clock starts when its own busy loop got to it, so no lower bound.
    waits = sorted(c.closed - c.opened for c in closes)
    assert waits[-1] <= timeout + LATE, f"closed late: {waits[-5:]}"


def counted(before: dict[str, float], after: dict[str, float], phase: str) -> float:
    key = f'overcast_gateway_client_timeouts_total{{phase="{phase}"}}'
    return after[key] - before.get(key, 0)


@pytest.fixture(scope="module")
def flood_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    limits = {
        "tls_handshake_timeout": TIMEOUT,
        "request_head_timeout": TIMEOUT,
        "request_body_timeout": TIMEOUT,
        "keep_alive_timeout": TIMEOUT,
    }
    with serve(tmp_path_factory.mktemp("slow-clients"), limits) as gw:
        yield gw


def settled_rss(gw: Gateway) -> float:
    """RSS once every connection has closed and its memory was given back (HeapTrim runs
    a second after the closing goes quiet)."""

    def settled() -> bool:
        metrics = gw.metrics()
        return (
            metrics["overcast_gateway_client_connections"] == 0
            and metrics["overcast_gateway_closed_untrimmed"] == 0
        )

    until(settled, 30, "every connection closed and its memory given back")
    return gw.rss_mb()


async def flood(gw: Gateway, scale: int) -> dict[str, list[Closed]]:
    """Every kind of slow or idle client at once; `scale` 10: 2,000 TCP connections that
    never start TLS, 20 idle TLS ones, 100 slowloris, 20 slow bodies, 20 idle keep-alives."""
    head = f"GET /ping HTTP/1.1\r\nHost: {HOST}\r\n".encode()
    post = f"POST /.overcast/backchannel-logout HTTP/1.1\r\nHost: {HOST}\r\n".encode()
    kinds = {
        "tls_idle": [tls_then(gw) for _ in range(2 * scale)],
        # One header line every 0.3 s: each line is on time, the head never is.
        "slowloris": [
            tls_then(gw, head, *[b"X-Slow: %d\r\n" % i for i in range(30)], every=0.3)
            for _ in range(10 * scale)
        ],
        "slow_body": [
            tls_then(gw, post + b"Content-Length: 100\r\n\r\nlogout_token=", every=30)
            for _ in range(2 * scale)
        ],
        # Answered, then idle.
        "kept_idle": [tls_then(gw, head + b"\r\n", every=30) for _ in range(2 * scale)],
    }
    plain = asyncio.to_thread(never_tls, gw.port, 200 * scale)
    results = await asyncio.gather(plain, *(asyncio.gather(*c) for c in kinds.values()))
    return dict(zip(["never_tls", *kinds], results, strict=True))


def test_slow_and_idle_clients_are_closed_on_time(flood_gateway: Gateway) -> None:
    gw = flood_gateway

    async def warm_up() -> None:
        answers = await asyncio.gather(*(gw.ping() for _ in range(150)))
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
        await flood(gw, 1)

    # Baseline: after the first requests and a wave a tenth the size of the flood, so that
    # what the process keeps once (code and allocator high-water marks) is in it.
    asyncio.run(warm_up())
    baseline = settled_rss(gw)
    before = gw.metrics()

    closes = asyncio.run(flood(gw, 10))
    on_time(closes["never_tls"], TIMEOUT)
    on_time(closes["tls_idle"], TIMEOUT)
    on_time(closes["slowloris"], TIMEOUT)
    on_time(closes["slow_body"], TIMEOUT)
    assert all(c.said == b"" for c in closes["never_tls"] + closes["tls_idle"])
    assert all(c.said.startswith(b"HTTP/1.1 408") for c in closes["slowloris"])
    assert all(c.said.startswith(b"HTTP/1.1 408") for c in closes["slow_body"])
    assert all(c.said.startswith(b"HTTP/1.1 200") for c in closes["kept_idle"])
    # Kept-alive: idle from the answer, which came at once.
    assert max(c.closed - c.opened for c in closes["kept_idle"]) <= TIMEOUT + LATE

    assert asyncio.run(gw.ping()).startswith(b"HTTP/1.1 200"), "a good client after the flood"
    after = gw.metrics()
    assert counted(before, after, "tls_handshake") == 2000
    assert counted(before, after, "head") == 20 + 100
    assert counted(before, after, "body") == 20
    assert counted(before, after, "idle") >= 20

    rss = settled_rss(gw)
    assert rss <= baseline * 1.2, f"RSS {rss:.0f} MB after the flood, {baseline:.0f} MB before"


def test_connections_past_max_connections_are_refused_at_once(tmp_path: Path) -> None:
    limits = {"max_connections": 20, "tls_handshake_timeout": 30}
    with serve(tmp_path, limits) as gw:
        refused_before = gw.metrics()["overcast_gateway_clients_refused_total"]
        held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(20)]
        try:
            until(lambda: gw.metrics()["overcast_gateway_client_connections"] == 20, 20, "20 open")
            for _ in range(5):
                extra = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
                with extra, contextlib.suppress(ConnectionResetError):
                    assert extra.recv(1) == b""  # closed at once, nothing said
            assert gw.metrics()["overcast_gateway_clients_refused_total"] == refused_before + 5
            for sock in held:
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)  # the 20 are still open
        finally:
            for sock in held:
                sock.close()
        until(lambda: gw.metrics()["overcast_gateway_client_connections"] == 0, 20, "all closed")
        assert asyncio.run(gw.ping()).startswith(b"HTTP/1.1 200")

        # A WebSocket takes the connection over from the HTTP protocol: its end still
        # frees the slot (more upgrades than max_connections, one after another).
        upgrade = (
            f"GET /ping HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ).encode()

        async def websockets() -> list[Closed]:
            return [await tls_then(gw, upgrade, every=20) for _ in range(30)]

        answers = asyncio.run(websockets())
        assert all(a.said.startswith(b"HTTP/1.1 ") for a in answers), answers[-1]
        until(lambda: gw.metrics()["overcast_gateway_client_connections"] == 0, 20, "all closed")
        assert gw.metrics()["overcast_gateway_clients_refused_total"] == refused_before + 5
