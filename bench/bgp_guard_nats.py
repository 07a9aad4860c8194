"""Scale-out throughput on NATS JetStream: updates/s decided by 1 and by 2 `guard worker`
processes.

    .venv/bin/python bench/bgp_guard_nats.py [--files ris-updates.20160811.1600.gz ...]

A nats-server (JetStream, loopback, its own store) gets every update of the shared RIS
files first (`guard publish`; every IPv4 /8 and IPv6 /7 of 2000::/3 is monitored with
`origins: any`, so every update has a shard); then N workers start on the full stream and
the clock runs until their reported progress covers it. Each worker reports once a second,
so the figure is rounded down by up to a second. On 2 cores the second worker competes with
nats-server for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.replay import merged
from bgp_guard.scale import SHARDS, jetstream
from tests.integration.bgp_guard.test_scale import holders, listening, process, state
from tests.shared import data_dir
from tests.unit.bgp_guard.helpers import guard_config

REPO = Path(__file__).resolve().parents[1]
SECTION = {
    "prefixes": {
        **{f"{a}.0.0.0/8": {"origins": "any"} for a in range(1, 224)},
        **{f"{0x2000 + 0x200 * i:x}::/7": {"origins": "any"} for i in range(16)},
    }
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(workers: int, files: list[str], tmp: Path) -> tuple[int, float]:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    config = tmp / f"overcast-{workers}.yaml"
    import json

    config.write_text(json.dumps({"sites": {}, "guard": SECTION}))
    server = [
        "nats-server",
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-sd",
        str(tmp / f"js{workers}"),
    ]
    with process(server, tmp / "nats.log"):
        while not listening(port):
            time.sleep(0.05)
        items = list(merged(files)[0])
        sent = asyncio.run(jetstream.publish(url, guard_config(SECTION), items))
        total = sent + (SHARDS - 1) * sum(1 for i in items if type(i).__name__ == "PeerDown")
        names = [f"w{i}" for i in range(workers)]
        started = time.perf_counter()
        argv = [
            sys.executable,
            "-m",
            "overcast",
            "guard",
            "worker",
            "--config",
            str(config),
            "--nats",
            url,
            "--name",
        ]
        procs = [process([*argv, n], tmp / f"{n}.log") for n in names]
        for p in procs:
            p.__enter__()
        try:
            while True:
                bucket = state(url)[1]
                done = sum(int(bucket.get(f"worker-{n}", {}).get("done", 0)) for n in names)
                if done >= total and sum(holders(bucket).values()) == SHARDS:
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
        finally:
            for p in procs:
                p.__exit__(None, None, None)
    return total, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--files",
        nargs="*",
        default=["ris-updates.20160811.1600.gz", "ris-updates.20070211.0141.gz"],
    )
    args = parser.parse_args()
    files = [str(data_dir("bgp") / f) for f in args.files]
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            total, elapsed = run(workers, files, Path(tmp))
            print(f"{workers} worker(s): {total} updates decided in {elapsed:.1f} s "
                  f"({total / elapsed:,.0f}/s, start-up and the shard replay included)")  # fmt: skip
    import os

    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
