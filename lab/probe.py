"""A probe stream between two lab hosts: a UDP packet every millisecond, echoed back, to
measure how long a failover leaves a site pair without a path.

The sockets are opened inside the hosts' namespaces (setns(2) on this thread, then back)
and served by threads of this process, so nothing is installed in the hosts. Each probe
carries its sequence number. An outage is a run of probes not answered within
`deadline` (a reply that comes seconds late, after a queue somewhere held it through the
fault, is as lost to an application as one never answered); its gap is from the last
timely reply before it to the first after it: how long the far host was unheard from,
over both directions.

    with ProbeStream("oc1234-hq.finance.1", "oc1234-branch.finance.1", branch_ip) as probes:
        ...  # break something
    print(probes.outages())
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import netns as pyroute2_netns

from overcast.model import IPAddress

PROBE_PORT = 7  # the echo service's port (RFC 862), inside the lab's own host namespace
_HEADER = struct.Struct("!Q")  # sequence number


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run this thread in network namespace `ns`, then return to where it was."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        pyroute2_netns.setns(ns, flags=0)
        yield
    finally:
        pyroute2_netns.setns(saved)
        os.close(saved)


@dataclass(frozen=True)
class Outage:
    """A run of probes not answered in time."""

    last_before: float  # arrival (monotonic) of the last timely reply before it
    first_after: float  # and of the first timely reply after it
    lost: int  # probes in between: never answered, or answered too late to matter
    started: float  # send time of the first of them

    @property
    def gap_ms(self) -> float:
        return (self.first_after - self.last_before) * 1000


class ProbeStream:
    def __init__(
        self,
        source_ns: str,
        target_ns: str,
        target: IPAddress,
        *,
        interval: float = 0.001,
        size: int = 400,
        marker: bytes = b"",
    ) -> None:
        self.interval = interval
        family = socket.AF_INET6 if target.version == 6 else socket.AF_INET
        with inside(target_ns):
            self._echo = socket.socket(family, socket.SOCK_DGRAM)
            self._echo.bind((str(target), PROBE_PORT))
        with inside(source_ns):
            self._sender = socket.socket(family, socket.SOCK_DGRAM)
            self._sender.connect((str(target), PROBE_PORT))
        for sock in (self._echo, self._sender):
            sock.settimeout(0.1)
        # The payload is padded to `size` with `marker`, so a capture can look for it.
        self._padding = (marker or b"\0") * (size // max(len(marker), 1) + 1)
        self._size = size
        self.sent: list[float] = []  # send time by sequence number
        self.answered: dict[int, float] = {}  # sequence number -> reply time
        self._stop = threading.Event()
        self._sending = True  # cleared first on stop, so late replies still count
        self._threads = [
            threading.Thread(target=self._serve_echo, daemon=True),
            threading.Thread(target=self._read_replies, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]

    def __enter__(self) -> ProbeStream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self, linger: float = 0.3) -> None:
        """Stop sending, wait `linger` seconds for late replies, close the sockets."""
        if self._stop.is_set():
            return
        self._sending = False
        time.sleep(linger)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._echo.close()
        self._sender.close()

    def _send(self) -> None:
        next_at = time.monotonic()
        seq = 0
        while self._sending and not self._stop.is_set():
            payload = (_HEADER.pack(seq) + self._padding)[: self._size]
            self.sent.append(time.monotonic())
            with contextlib.suppress(OSError):  # no route or no buffer: a lost probe
                self._sender.send(payload)
            seq += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()  # fell behind (a busy machine): do not burst

    def _serve_echo(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._echo.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(OSError):
                self._echo.sendto(data, peer)

    def _read_replies(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sender.recv(65535)
            except (TimeoutError, OSError):
                continue
            if len(data) >= _HEADER.size:
                self.answered.setdefault(_HEADER.unpack_from(data)[0], time.monotonic())

    # -- results -----------------------------------------------------------------------

    def last_answered(self) -> float | None:
        """When the last reply arrived (monotonic)."""
        return max(self.answered.values(), default=None)

    def outages(
        self, since: float = 0.0, until: float = float("inf"), deadline: float = 0.5
    ) -> list[Outage]:
        """Every run of probes not answered within `deadline` seconds that began between
        `since` and `until` (send times, monotonic) and ended with a timely reply."""
        out = []
        last_ok: int | None = None
        for seq, at in enumerate(self.sent):
            reply = self.answered.get(seq)
            if reply is None or reply - at > deadline:
                continue
            if last_ok is not None and seq - last_ok > 1:
                started = self.sent[last_ok + 1]
                if since <= started < until:
                    out.append(Outage(self.answered[last_ok], reply, seq - last_ok - 1, started))
            last_ok = seq
        return out

    def worst(
        self, since: float = 0.0, until: float = float("inf"), deadline: float = 0.5
    ) -> Outage | None:
        """The longest outage that began between `since` and `until`."""
        return max(self.outages(since, until, deadline), key=lambda o: o.gap_ms, default=None)
