"""The gateway's own CPU per request, without sockets, TLS or a load tool.

    python bench/gateway_cpu.py [--requests 20000] [--rounds 5]

The real server protocol (`gateway.server.TlsHttpProtocol`, as `overcast gateway serve`
runs it) and the real `Gateway` (session cookie, policy, decision log, assertion) serve
signed-in GETs whose upstream answer arrives on an in-memory transport. What is left is
the Python work the gateway adds per request: the figure `bench/gateway_bench.py` cannot
isolate on a shared machine, where the kernel, TLS and the load tool move its CPU/request
by +-10 %. Both paths are measured: the express lane and the ASGI app it bypasses.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path
from typing import Any, cast

import uvicorn
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway_bench import bench_session  # noqa: E402 - the same signed-in user

from gateway.app import Gateway, build  # noqa: E402
from gateway.config import GatewayConfig  # noqa: E402
from gateway.server import TlsHttpProtocol  # noqa: E402
from gateway.session import COOKIE  # noqa: E402
from gateway.upstream import Connection  # noqa: E402

UPSTREAM_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 18:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n"
    b"\r\n"
    b'{"ok":true}'
)


class Wire:
    """An in-memory transport: what is written is kept, or handed to `answer`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer: tuple[str, int]) -> None:
        self.loop = loop
        self.peer = peer
        self.written: list[bytes] = []
        self.answer: Any = None
        self.closing = False

    def write(self, data: bytes) -> None:
        if self.answer is not None:
            self.loop.call_soon(self.answer, UPSTREAM_ANSWER)  # the upstream answers later
        else:
            self.written.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 443)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


def gateway() -> Gateway:
    config = GatewayConfig.model_validate(
        {
            "issuer": "https://127.0.0.1:9/",
            "host": "gw.test",
            "apps": {
                "crm": {
                    "host": "crm.test",
                    "upstream": "https://127.0.0.1:8443",
                    "allow": {"groups": "sales"},
                }
            },
        }
    )
    return build(config, decisions=io.StringIO())


def request_bytes(gw: Gateway) -> bytes:
    cookie = f"{COOKIE}={gw.codec.seal(bench_session())}"
    return (
        f"GET /api/accounts?page=2 HTTP/1.1\r\nHost: crm.test\r\nUser-Agent: bench/1.0\r\n"
        f"Accept: application/json\r\nCookie: {cookie}; theme=dark\r\n\r\n"
    ).encode()


async def run(requests: int, express: bool) -> float:
    loop = asyncio.get_running_loop()
    gw = gateway()
    if not express:
        gw.express = lambda scope: None  # type: ignore[method-assign]
    config = uvicorn.Config(
        gw,
        http=TlsHttpProtocol,
        lifespan="off",
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    config.load()
    protocol = TlsHttpProtocol(config, uvicorn.server.ServerState(), {}, loop)
    client = Wire(loop, ("192.0.2.10", 50000))
    protocol.connection_made(cast(asyncio.Transport, client))
    # One pooled upstream connection whose writes are answered on the next loop turn.
    upstream = Connection(loop)
    wire = Wire(loop, ("127.0.0.1", 8443))
    wire.answer = upstream.data_received
    upstream.connection_made(cast(asyncio.Transport, wire))
    route = gw.table.routes[0]
    endpoint, _ = gw.proxy._endpoint(route)
    pool = gw.proxy.upstream()
    data = request_bytes(gw)
    pool.put(endpoint, upstream)  # and back after each request, if kept alive
    started = time.process_time()
    for _ in range(requests):
        before = len(client.written)
        protocol.data_received(data)
        while len(client.written) == before:
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    assert b'{"ok":true}' in client.written[-1], client.written[-1]
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for express in (True, False):
        figures = [uvloop.run(run(args.requests, express)) for _ in range(args.rounds)]
        label = "express lane" if express else "ASGI app"
        print(
            f"{label:<13} best {min(figures):5.1f} µs/request, median "
            f"{sorted(figures)[len(figures) // 2]:5.1f} ({args.rounds} x {args.requests})"
        )


if __name__ == "__main__":
    main()
