"""A provider network's delay and loss in userspace, for kernels without the netem qdisc
(sch_netem): a learning bridge between the network's ports that holds every frame for the
one-way delay and drops the given share of them, as netem on the path would. Bandwidth stays
the kernel's (HTB on the links). Runs in the provider network's namespace:

    python -m lab.wan_emulator --delay-ms 10 --loss 0.5 to-s1 to-s2 to-s3

`Schedule` is the pure part (which port, when, or dropped); `run` moves the frames with one
packet socket per port. The senders must fill in their checksums (`ethtool -K IF tx off`):
a packet socket forwards a frame exactly as it read it.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003  # linux/if_ether.h: every protocol
PACKET_OUTGOING = 4  # linux/if_packet.h: a frame this host sent (our own, seen again)
MAX_FRAME = 65535
READY = "forwarding"
SOCKET_BUFFER = 4 << 20  # bytes; the kernel caps it at net.core.rmem_max
# A switch's usual MAC ageing time (IEEE 802.1D section 7.9.2 recommends 300 s).
MAC_AGEING_S = 300.0


@dataclass
class Schedule:
    """Which ports a frame leaves by and when. Ports are small integers."""

    ports: Sequence[int]
    delay_s: float
    loss: float  # 0..1
    random: Callable[[], float] = field(default=random.random)
    _where: dict[bytes, tuple[int, float]] = field(default_factory=dict)  # MAC -> port, seen
    _queue: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)

    def receive(self, port: int, frame: bytes, now: float) -> None:
        """A frame arrived on `port`: learn its source, then queue it (or drop it)."""
        if len(frame) < 14:
            return
        source, destination = frame[6:12], frame[0:6]
        if not source[0] & 1:  # a group address is never a source
            self._where[source] = (port, now)
        if self.random() < self.loss:
            return
        known = self._where.get(destination)
        if destination[0] & 1 or known is None or now - known[1] > MAC_AGEING_S:
            out = [p for p in self.ports if p != port]  # flood: broadcast, multicast, unknown
        elif known[0] == port:
            return  # it is already on its destination's side
        else:
            out = [known[0]]
        for p in out:
            # The counter keeps frames of one instant in their order of arrival.
            heapq.heappush(self._queue, (now + self.delay_s, next(self._order), p, frame))

    def due(self, now: float) -> Iterator[tuple[int, bytes]]:
        """Every frame whose delay is over by `now`, in order: (port, frame)."""
        while self._queue and self._queue[0][0] <= now:
            _, _, port, frame = heapq.heappop(self._queue)
            yield port, frame

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None


def run(interfaces: Sequence[str], delay_s: float, loss: float) -> None:
    socks = []
    for name in interfaces:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((name, 0))
        # Room for a burst while the other ports are served (the default drops TCP's).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setblocking(False)
        socks.append(sock)
    # Whoever started it waits for this line (lab.mininet_net.ProviderNetwork).
    print(f"{READY} on {', '.join(interfaces)}", flush=True)
    schedule = Schedule(range(len(socks)), delay_s, loss)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    while True:
        due = schedule.next_due()
        wait = None if due is None else max(0.0, due - time.monotonic()) * 1000
        for fd, _ in poller.poll(wait):
            port, sock = by_fd[fd], socks[by_fd[fd]]
            while True:
                try:
                    frame, address = sock.recvfrom(MAX_FRAME)
                except BlockingIOError:
                    break
                if address[2] != PACKET_OUTGOING:
                    schedule.receive(port, frame, time.monotonic())
        for port, frame in schedule.due(time.monotonic()):
            # A full queue or a link going down loses the frame, as a network would.
            with contextlib.suppress(OSError):
                socks[port].send(frame)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.wan_emulator",
        description="Bridge INTERFACES with a one-way delay and a loss rate (netem in "
        "userspace, for kernels without sch_netem). Runs until SIGTERM.",
    )
    parser.add_argument("interfaces", nargs="+", metavar="INTERFACE")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay (ms)")
    parser.add_argument("--loss", type=float, default=0.0, help="frames dropped (percent)")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or not 0 <= args.loss <= 100:
        parser.error("--delay-ms must be >= 0 and --loss from 0 to 100")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args.interfaces, args.delay_ms / 1000, args.loss / 100)
    except OSError as exc:
        print(f"wan_emulator: {exc}; are the interfaces in this namespace?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
