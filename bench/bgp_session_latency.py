"""Latency of the live BGP session feed: from the daemon sending an UPDATE to our Update object.

    sudo .venv/bin/python bench/bgp_session_latency.py [--routes 300] [--burst 20000]

Needs root (a throwaway network namespace), gobgpd/gobgp and bird. The "sent" time is the
kernel timestamp (SO_TIMESTAMPNS) of the TCP segment carrying the prefix, captured on the
namespace's lo with an AF_PACKET socket; the "received" time is when the consumer of
`BgpSpeaker.updates()` gets the Update. Two workloads:

- single: gobgpd, our speaker connecting actively; one /32 at a time via `gobgp global rib add`
  (one UPDATE per route, the speaker otherwise idle).
- burst: bird2 connecting to our passive speaker and announcing N /32s at once when its static
  protocol is enabled (packed UPDATEs, back to back).

Prefixes are 198.18.0.0/15 /32s (RFC 2544 benchmarking range), found in the captured segments by
their NLRI encoding (length 32, then 198.18 or 198.19).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgp_guard.feeds.session import BgpSpeaker
from bgp_guard.update import Prefix, Update
from tests.integration.bgp_guard.conftest import NETNS_ADDRESSES, daemon, ns_run, run_in_netns

US, THEM = "192.0.2.10", "192.0.2.1"
OUR_ASN = 65010
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
NLRI_MARKERS = (b"\x20\xc6\x12", b"\x20\xc6\x13")  # /32 in 198.18.0.0/16 or 198.19.0.0/16


def prefixes(count: int) -> list[str]:
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    return [str(ipaddress.IPv4Address(base + i)) + "/32" for i in range(count)]


class Sniffer(threading.Thread):
    """First kernel timestamp at which each benchmark prefix appeared in a TCP segment."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.2)
        self.segments: list[tuple[bytes, list[tuple[int, int, bytes]]]] = []
        self.running = True

    def run(self) -> None:
        # Only store here: parsing in this thread would take the GIL from the feed under test.
        while self.running:
            try:
                self.segments.append(self.sock.recvmsg(65536, 64)[:2])
            except TimeoutError:
                continue

    @property
    def first_seen(self) -> dict[str, float]:
        seen: dict[str, float] = {}
        for data, anc in list(self.segments):
            stamp = next(
                sec + nsec / 1e9
                for level, kind, value in anc
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                for sec, nsec in [struct.unpack("qq", value[:16])]
            )
            for marker in NLRI_MARKERS:
                at = data.find(marker)
                while at >= 0 and at + 5 <= len(data):
                    seen.setdefault(socket.inet_ntoa(data[at + 1 : at + 5]) + "/32", stamp)
                    at = data.find(marker, at + 1)
        return seen

    async def wait_for(self, prefix: str, timeout: float = 5) -> float:
        """When `prefix` was sent. The sniffer thread may read the segment after the feed
        delivered its Update; its kernel timestamp is what counts, so waiting is fine."""
        deadline = time.monotonic() + timeout
        while (sent := self.first_seen.get(prefix)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{prefix} was never seen on the wire")
            await asyncio.sleep(0.001)
        return sent

    def stop(self) -> None:
        self.running = False
        self.join()
        self.sock.close()


@contextlib.asynccontextmanager
async def measuring(peer_asn: int) -> AsyncIterator[tuple[Sniffer, BgpSpeaker]]:
    """A running sniffer and our speaker, both stopped however the workload ends."""
    sniffer = Sniffer()
    sniffer.start()
    speaker = BgpSpeaker(OUR_ASN, "192.0.2.10", peers={THEM: peer_asn})
    try:
        yield sniffer, speaker
    finally:
        await speaker.close()
        sniffer.stop()


async def receive(speaker: BgpSpeaker, want: set[str], timeout: float) -> dict[str, float]:
    """When each prefix in `want` arrived as an Update (keyed by Prefix: the consumer should
    cost next to nothing, it is not what is measured)."""
    got: dict[Prefix, float] = {}

    async def read() -> None:
        async for update in speaker.updates():
            if isinstance(update, Update) and update.announce:
                got.setdefault(update.prefix, time.time())
                if len(got) == len(want):  # a count: a subset test per Update costs O(n)
                    return

    await asyncio.wait_for(read(), timeout)
    return {str(prefix): at for prefix, at in got.items()}


def single(netns: str, tmp: Path, count: int) -> list[float]:
    conf = tmp / "gobgpd.toml"
    conf.write_text(
        f'[global.config]\n  as = 4200000002\n  router-id = "{THEM}"\n  port = 179\n'
        f'  local-address-list = ["{THEM}"]\n[[neighbors]]\n  [neighbors.config]\n'
        f'    neighbor-address = "{US}"\n    peer-as = {OUR_ASN}\n'
        f'  [neighbors.transport.config]\n    local-address = "{THEM}"\n    passive-mode = true\n'
    )
    api = ["gobgp", "-u", THEM, "-p", "50051"]
    routes = prefixes(count)

    async def scenario() -> list[float]:
        argv = ["gobgpd", "-f", str(conf), "--api-hosts", f"{THEM}:50051", "--pprof-disable"]
        latencies = []
        async with measuring(4200000002) as (sniffer, speaker):
            with daemon(netns, argv, tmp / "gobgpd.log"):
                speaker.connect(THEM, local_address=US, retry=0.2)
                ns_run(netns, *api, "global", "rib", "summary", attempts_until=20)
                while THEM not in speaker.established:
                    await asyncio.sleep(0.05)
                for route in routes:
                    waiter = asyncio.ensure_future(receive(speaker, {route}, 10))
                    await asyncio.sleep(0)
                    await asyncio.to_thread(
                        ns_run, netns, *api, "global", "rib", "add", route, "-a", "ipv4"
                    )
                    got = await waiter
                    latencies.append(got[route] - await sniffer.wait_for(route))
        return latencies

    return run_in_netns(netns, scenario, timeout=600)


def burst(netns: str, tmp: Path, count: int) -> tuple[list[float], float, int]:
    routes = prefixes(count)
    statics = "\n".join(f"  route {r} blackhole;" for r in routes)
    conf = tmp / "bird.conf"
    conf.write_text(
        f"router id {THEM};\nprotocol device {{}}\n"
        f"protocol static burst {{ ipv4; disabled; \n{statics}\n}}\n"
        f"protocol bgp monitor {{ local {THEM} as 4200000001; neighbor {US} as {OUR_ASN};\n"
        "  multihop; strict bind; connect delay time 1; connect retry time 1;\n"
        "  ipv4 { import none; export all; }; }\n"
    )
    ctl = str(tmp / "bird.ctl")

    async def scenario() -> tuple[list[float], float, int]:
        async with measuring(4200000001) as (sniffer, speaker):
            await speaker.listen(US)
            with daemon(netns, ["bird", "-f", "-c", str(conf), "-s", ctl], tmp / "bird.log"):
                while THEM not in speaker.established:
                    await asyncio.sleep(0.05)
                waiter = asyncio.ensure_future(receive(speaker, set(routes), 120))
                await asyncio.sleep(0)
                await asyncio.to_thread(ns_run, netns, "birdc", "-s", ctl, "enable", "burst")
                got = await waiter
                await asyncio.sleep(0.05)  # let the sniffer thread drain its socket
        sent = sniffer.first_seen
        matched = [r for r in routes if r in sent]
        latencies = [got[r] - sent[r] for r in matched]
        span = max(got.values()) - min(sent[r] for r in matched)
        return latencies, span, count - len(matched)

    return run_in_netns(netns, scenario, timeout=600)


def report(name: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    print(
        f"{name:8} n={len(ms):6d}  p50 {pct(50):7.2f} ms  p90 {pct(90):7.2f} ms"
        f"  p99 {pct(99):7.2f} ms  max {ms[-1]:7.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=300, help="single-route UPDATEs via gobgp")
    parser.add_argument("--burst", type=int, default=20000, help="routes bird announces at once")
    args = parser.parse_args()
    netns = f"ocbench{time.time_ns() % 100000}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        for address in NETNS_ADDRESSES:
            subprocess.run(["ip", "-n", netns, "addr", "add", address, "dev", "lo"], check=True)
        with tempfile.TemporaryDirectory(prefix="ocbench") as tmp:
            report("single", single(netns, Path(tmp), args.routes))
        with tempfile.TemporaryDirectory(prefix="ocbench") as tmp:
            latencies, span, unmatched = burst(netns, Path(tmp), args.burst)
            report("burst", latencies)
            print(
                f"burst: {args.burst} routes from first segment sent to last Update in "
                f"{span * 1000:.0f} ms = {args.burst / span:,.0f} updates/s"
                f" ({unmatched} prefixes split across segments, not timed)"
            )
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
