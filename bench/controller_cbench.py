"""A cbench-like load for the controller: emulated OpenFlow 1.3 switches send packet-ins for
new source MACs, and we time the flow-mods that come back.

    .venv/bin/python bench/controller_cbench.py                 # all three figures
    .venv/bin/python bench/controller_cbench.py --mode throughput --profile out.txt

- throughput (cbench's throughput mode): 4 switches send packet-ins for new MACs without
  waiting for answers, each keeping up to `--window` unanswered (so the controller always
  has work queued, and its keepalives still get through), for `--seconds`; packet-ins
  handled per second = MACs whose learn entry came back per second.
- latency: one packet-in at a time; packet-in sent -> the learn entry's flow-mod received.
- 1,000 hosts: 4 sites, 10 segments, 25 hosts per site and segment, all announced at once;
  the time until every switch holds a forwarding entry for every host of its segments (so
  nothing is flooded any more).
- replay (not part of "all"): the learning path without sockets or os-ken. For each new MAC,
  the flows every switch of its segment gets (`pipeline.host_delta`), kept in a per-switch
  index by flow identity and encoded (`controller.ofencode`), as the app does per
  packet-in: MACs per CPU second at Python's default cycle-collector thresholds and at the
  controller's, three runs each, interleaved.

The controller is the real `overcast controller run` on 127.0.0.1 (no namespaces, no root);
the switches are asyncio coroutines in this process. cbench itself is not packaged here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.openflow_samples import (  # noqa: E402
    PORT_DESC,
    Wire,
    features_reply,
    hello,
    match,
    message,
    multipart,
    oxm,
    port,
)

SITES = ("s1", "s2", "s3", "s4")
SEGMENTS = 10
HOSTS_PER_SITE_SEGMENT = 25
LEARN_TABLE, ETH_DST_TABLE = 1, 5


def config() -> str:
    sites = "\n".join(
        f"  {s}: {{role: enterprise, underlay: 192.0.2.{i + 1}, switch: {{access: {{"
        + ", ".join(f"p{k}: seg{k}" for k in range(SEGMENTS))
        + "}}}"
        for i, s in enumerate(SITES)
    )
    segments = "\n".join(
        f"  seg{k}: {{mode: l2, vni: {100 + k}, vlan: {10 + k}, sites: [{', '.join(SITES)}]}}"
        for k in range(SEGMENTS)
    )
    learning = (
        "{max_macs_per_port: 65536, max_macs_per_segment: 1000000, packet_ins_per_port: 100000}"
    )
    return f"sites:\n{sites}\nsegments:\n{segments}\ncontroller:\n  learning: {learning}\n"


def port_names(site: int) -> list[str]:
    names = [f"p{k}" for k in range(SEGMENTS)]
    for k in range(SEGMENTS):
        names += [f"vx{100 + k}-{j}" for j in range(len(SITES)) if j != site]
    return names


class Switch:
    """One emulated switch: answers the handshake, counts flow-mods by the MAC they name."""

    def __init__(self, index: int, port: int) -> None:
        self.index, self.port = index, port
        self.ports = port_names(index)
        self.programmed = asyncio.Event()
        self.learned: dict[bytes, float] = {}  # MAC -> when its learn entry arrived
        self.forwarding: set[bytes] = set()  # MACs with an eth_dst entry here
        self.flow_mods = 0
        self.waiters: dict[bytes, asyncio.Future[float]] = {}

    async def run(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(hello(4).data)
        while True:
            head = await self.reader.readexactly(8)
            length = struct.unpack_from("!H", head, 2)[0]
            body = await self.reader.readexactly(length - 8)
            self.handle(head + body)

    def handle(self, msg: bytes) -> None:
        type_, xid = msg[1], struct.unpack_from("!I", msg, 4)[0]
        if type_ == 2:  # echo
            self.send(message(3, Wire(msg[8:]), xid).data)
        elif type_ == 5:
            self.send(features_reply(self.index + 1, xid).data)
        elif type_ == 18:
            (mp_type,) = struct.unpack_from("!H", msg, 8)
            entries = (
                [port(i + 1, n) for i, n in enumerate(self.ports)] if mp_type == PORT_DESC else []
            )
            reply = multipart(mp_type, *entries).data
            self.send(reply[:4] + struct.pack("!I", xid) + reply[8:])
        elif type_ == 20:
            self.send(message(21, Wire(b""), xid).data)
            self.programmed.set()
        elif type_ == 14:
            self.flow_mods += 1
            self.flow_mod(msg)

    def flow_mod(self, msg: bytes) -> None:
        table, command = msg[24], msg[25]  # after header, cookie and cookie mask
        if command != 0:  # OFPFC_ADD only
            return
        fields = _oxms(msg, 48)
        if table == LEARN_TABLE and 4 in fields:
            mac = fields[4]
            self.learned[mac] = time.perf_counter()
            waiter = self.waiters.pop(mac, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
        elif table == ETH_DST_TABLE and 3 in fields:
            self.forwarding.add(fields[3])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def packet_in(self, port_index: int, mac: bytes) -> None:
        frame = b"\xff" * 6 + mac + b"\x08\x06" + bytes(46)
        m = match(oxm(0, struct.pack("!I", port_index + 1)))
        body = Wire(struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 0, LEARN_TABLE, 0)) + m
        self.send(message(10, body + Wire(b"\0\0" + frame), 0).data)


def _oxms(msg: bytes, at: int) -> dict[int, bytes]:
    length = struct.unpack_from("!H", msg, at + 2)[0]
    out, i = {}, at + 4
    while i < at + length:
        header = struct.unpack_from("!I", msg, i)[0]
        size = header & 0xFF
        out[(header >> 9) & 0x7F] = msg[i + 4 : i + 4 + size]
        i += 4 + size
    return out


def mac_of(n: int) -> bytes:
    return bytes([0x02, 0xBE, (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])


async def connect(port: int) -> list[Switch]:
    switches = [Switch(i, port) for i in range(len(SITES))]
    for sw in switches:
        asyncio.get_running_loop().create_task(sw.run())
    await asyncio.wait_for(asyncio.gather(*(s.programmed.wait() for s in switches)), 60)
    await asyncio.sleep(1.0)  # let the post-connect audit replies settle
    return switches


async def throughput(
    switches: list[Switch], seconds: float, window: int, start: int
) -> tuple[float, int]:
    """Packet-ins handled per second over `seconds`, and how many were sent."""
    sent = [0] * len(switches)
    before = [len(sw.learned) for sw in switches]
    began = time.perf_counter()
    deadline = began + seconds

    async def drive(i: int, sw: Switch) -> None:
        base = start + i * 10_000_000
        while time.perf_counter() < deadline:
            if sent[i] - (len(sw.learned) - before[i]) >= window:
                await asyncio.sleep(0.001)
                continue
            for _ in range(min(50, window)):
                sw.packet_in(sent[i] % SEGMENTS, mac_of(base + sent[i]))
                sent[i] += 1
            await asyncio.sleep(0)

    await asyncio.gather(*(drive(i, sw) for i, sw in enumerate(switches)))
    elapsed = time.perf_counter() - began
    handled = sum(len(sw.learned) - b for sw, b in zip(switches, before, strict=True))
    return handled / elapsed, sum(sent)


async def latency(switches: list[Switch], count: int, start: int) -> list[float]:
    sw, out = switches[0], []
    for n in range(count):
        mac = mac_of(start + n)
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        sw.waiters[mac] = waiter
        sent = time.perf_counter()
        sw.packet_in(n % SEGMENTS, mac)
        got = await asyncio.wait_for(waiter, 10)
        out.append((got - sent) * 1000)
    return out


async def thousand_hosts(switches: list[Switch], start: int) -> float:
    """Announce 1,000 hosts at once; seconds until every switch forwards to all of them."""
    began = time.perf_counter()
    hosts: list[tuple[int, int, bytes]] = []
    n = start
    for site in range(len(SITES)):
        for seg in range(SEGMENTS):
            for _ in range(HOSTS_PER_SITE_SEGMENT):
                hosts.append((site, seg, mac_of(n)))
                n += 1
    for i, (site, seg, mac) in enumerate(hosts):
        switches[site].packet_in(seg, mac)
        if i % 50 == 0:
            await asyncio.sleep(0)
    macs = {mac for _, _, mac in hosts}
    while not all(macs <= sw.forwarding for sw in switches):
        await asyncio.sleep(0.01)
    return time.perf_counter() - began


COLLECTOR = {"default": (700, 10, 10), "controller's": (100_000, 20, 100)}


def replay(first: int, hosts: int, thresholds: tuple[int, int, int]) -> float:
    """MACs learned per CPU second, `hosts` new MACs from number `first` on."""
    from controller.fabric import derive
    from controller.learning import Host
    from controller.ofencode import encode
    from controller.openflow import AddFlow, Flow
    from controller.pipeline import host_delta, segment_at
    from overcast.config import loads

    cfg = loads(config())
    fabric = derive(cfg)
    ports = {s: {n: i + 1 for i, n in enumerate(port_names(k))} for k, s in enumerate(SITES)}
    views = {
        (s, f"seg{k}"): segment_at(cfg, fabric, s, ports[s], f"seg{k}")
        for s in SITES
        for k in range(SEGMENTS)
    }
    index: dict[str, dict[Any, Flow]] = {s: {} for s in SITES}
    gc.collect()
    gc.set_threshold(*thresholds)
    try:
        began, xid = time.process_time(), 0
        for n in range(first, first + hosts):
            segment = f"seg{n % SEGMENTS}"
            mac = "02:be:" + n.to_bytes(4, "big").hex(":")
            host = Host(segment, mac, SITES[n % len(SITES)], f"p{n % SEGMENTS}", 0.0)
            for site in SITES:
                add, _ = host_delta(views[(site, segment)], host)
                for flow in add:
                    index[site][flow.key] = flow
                    xid += 1
                    encode(AddFlow(flow), xid)
        return hosts / (time.process_time() - began)
    finally:
        gc.set_threshold(*COLLECTOR["default"])


def print_replay(hosts: int) -> None:
    rates: dict[str, list[float]] = {name: [] for name in COLLECTOR}
    for round_ in range(3):  # interleaved, so load changes hit both alike
        for name, thresholds in COLLECTOR.items():
            rates[name].append(replay(round_ * 10**7, hosts, thresholds))
    for name, got in rates.items():
        print(
            f"replay, {hosts:,} new MACs, collector thresholds {name} {COLLECTOR[name]}: "
            + ", ".join(f"{r:,.0f}" for r in got)
            + " MACs per CPU second"
        )
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used: the figure that load does not skew."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode", choices=("all", "hosts", "latency", "throughput", "replay"), default="all"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput mode")
    parser.add_argument("--window", type=int, default=500, help="unanswered per switch")
    parser.add_argument("--latency", type=int, default=200, help="packet-ins, latency mode")
    parser.add_argument("--hosts", type=int, default=40_000, help="MACs per run, replay mode")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run the controller under py-spy (pip install py-spy): stacks of the thread "
        "holding the GIL, all threads, as collapsed stacks (cProfile sees only the main "
        "thread, and os-ken's work is on others)",
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if args.profile and not Path(spy).exists():
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    if args.mode == "replay":
        print_replay(args.hosts)
        return 0
    work = Path(tempfile.mkdtemp(prefix="oc-cbench-"))
    (work / "overcast.yaml").write_text(config())
    port = free_port()
    prefix = [sys.executable]
    if args.profile:
        prefix = [spy, "record", "--gil", "--threads", "--format", "raw", "-o", args.profile]
        prefix += ["--", sys.executable]
    argv = [
        *prefix,
        "-m",
        "overcast",
        "controller",
        "run",
        "--config",
        str(work / "overcast.yaml"),
        "--listen",
        f"127.0.0.1:{port}",
        "--audit",
        "0",
    ]
    log = (work / "controller.log").open("wb")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    ctl = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 90  # imports take long on a loaded machine
        while b"controller listening" not in (work / "controller.log").read_bytes():
            if time.monotonic() > deadline or ctl.poll() is not None:
                raise SystemExit(f"the controller did not start; see {work / 'controller.log'}")
            time.sleep(0.1)

        # Under py-spy, the controller is its child: that is the process to measure and stop.
        pid = ctl.pid
        if args.profile:
            pid = int(Path(f"/proc/{ctl.pid}/task/{ctl.pid}/children").read_text().split()[0])

        async def run() -> None:
            switches = await connect(port)
            if args.mode in ("all", "hosts"):
                hosts = await thousand_hosts(switches, 1)
                print(
                    f"1,000 hosts (4 sites x 10 segments x 25) reachable everywhere: {hosts:.2f} s"
                )
            if args.mode in ("all", "latency"):
                lat = await latency(switches, args.latency, 5_000_000)
                print(
                    f"latency, packet-in -> learn flow-mod: median {statistics.median(lat):.2f} "
                    f"ms, p99 {sorted(lat)[int(len(lat) * 0.99) - 1]:.2f} ms ({len(lat)} packet-ins)"
                )
            if args.mode in ("all", "throughput"):
                cpu = cpu_seconds(pid)
                rate, sent = await throughput(switches, args.seconds, args.window, 100_000_000)
                cpu = cpu_seconds(pid) - cpu
                if any(sw.reader.at_eof() for sw in switches):
                    print("throughput: the controller dropped a switch; figure not valid")
                print(
                    f"throughput: {rate:,.0f} packet-ins/s handled over {args.seconds:g} s "
                    f"({len(switches)} switches, {sent:,} sent, up to {args.window} unanswered each)"
                )
                print(
                    f"  the controller used {cpu:.1f} CPU seconds: "
                    f"{rate * args.seconds / max(cpu, 0.01):,.0f} packet-ins per CPU second"
                )

        asyncio.run(run())
        print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    finally:
        children = Path(f"/proc/{ctl.pid}/task/{ctl.pid}/children")
        for child in children.read_text().split() if args.profile and children.exists() else ():
            os.kill(int(child), signal.SIGINT)  # py-spy then writes its file and exits
        ctl.send_signal(signal.SIGINT)
        try:
            ctl.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ctl.kill()
    shutil.rmtree(work)  # its config and the controller's log; kept when it did not start
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
