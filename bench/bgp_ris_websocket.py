"""RIS-live frames through the websocket feed on loopback, in frames/s.

    .venv/bin/python bench/bgp_ris_websocket.py [FRAMES]   (default 100,000)

A websocket server in another process (the `websockets` library's, on 127.0.0.1) sends
FRAMES `ris_message` UPDATE frames, each the shared sample's UPDATE with its own /24; the
`RisLiveClient` in this process receives, decodes and queues them, and a consumer takes the
Updates off the feed's queue. Reported: wall-clock frames/s from the first frame to the last
Update, and this process's CPU time per frame; once with permessage-deflate (RFC 7692, what
both sides negotiate by default) and once without. For scale, the JSON decoding alone
(`ris_live.decode`) on the same frames.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.server import ServerConnection, serve

from bgp_guard.config import RisLiveWebsocket
from bgp_guard.feeds.ris_live import decode
from bgp_guard.feeds.ris_websocket import RisLiveClient
from tests.shared import data_dir


def frames(count: int) -> list[str]:
    message: dict[str, Any] = json.loads(
        (data_dir("bgp") / "ris-live-stream.json").read_text().splitlines()[0]
    )
    out = []
    for i in range(count):
        message["data"]["announcements"][0]["prefixes"] = [f"10.{i >> 8 & 255}.{i & 255}.0/24"]
        out.append(json.dumps(message))
    return out


def server(count: int, compression: str | None, ready: Any, port: Any) -> None:
    batch = frames(count)

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the client's first ris_subscribe
        for frame in batch:
            await ws.send(frame)
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=compression) as srv:
            port.value = srv.sockets[0].getsockname()[1]
            ready.set()
            await asyncio.Future()

    asyncio.run(main())


async def receive(url: str, count: int) -> tuple[float, float]:
    feed = RisLiveClient(RisLiveWebsocket(url=url), [{"type": "UPDATE"}])
    feed.start()
    got = 0
    started = cpu = 0.0
    async for _ in feed.updates():
        if got == 0:
            started, cpu = time.perf_counter(), time.process_time()
        got += 1
        if got == count:
            break
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await feed.close()
    return wall, cpu


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = frames(count)
    started = time.process_time()
    for frame in batch:
        decode(frame)
    alone = count / (time.process_time() - started)
    print(f"ris_live.decode alone: {alone:,.0f} frames/s (one core)")
    for compression in ("deflate", None):
        ready, port = multiprocessing.Event(), multiprocessing.Value("i", 0)
        proc = multiprocessing.Process(target=server, args=(count, compression, ready, port))
        proc.start()
        try:
            ready.wait(30)
            wall, cpu = asyncio.run(receive(f"ws://127.0.0.1:{port.value}/v1/ws/", count))
        finally:
            proc.terminate()
            proc.join()
        print(
            f"websocket feed, {compression or 'no compression'}: {count / wall:,.0f} frames/s "
            f"over loopback ({count:,} frames in {wall:.2f} s; client CPU "
            f"{cpu / count * 1e6:.1f} us/frame)"
        )


if __name__ == "__main__":
    main()
