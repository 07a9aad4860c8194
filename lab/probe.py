"""A probe stream between two lab hosts: a UDP packet every millisecond, echoed back, to
measure how long a failover leaves a site pair without a path.

Both ends are small processes of their own (`python -m lab.probe echo|send`) in the
hosts' namespaces, so a busy caller (a packet capture in the same Python, say) cannot
delay a probe. Each probe carries its sequence number. An outage is a run of probes not
answered within `deadline` (a reply that comes seconds late, after a queue somewhere held
it through the fault, is as lost to an application as one never answered); its gap is
from the send time of the last probe answered in time before it to that of the first
after it, so it covers both directions.

    with ProbeStream("oc1234-hq.finance.1", "oc1234-branch.finance.1", branch_ip) as probes:
        ...  # break something
    print(probes.worst())
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the probe processes start faster without pydantic
    from overcast.model import IPAddress

PROBE_PORT = 7  # the echo service's port (RFC 862), inside the lab's own host namespace
_HEADER = struct.Struct("!Q")  # sequence number
LINGER = 0.3  # after the last probe, how long the sender waits for late replies
FLOWING = "flowing"  # what the sender prints once its first probe is answered
START_TIMEOUT = 30.0  # for the first reply (a busy machine starts Python slowly)


class ProbeError(RuntimeError):
    """The probe stream could not start; the message names the pair."""


@dataclass(frozen=True)
class Outage:
    """A run of probes not answered in time."""

    last_before: float  # send time (monotonic) of the last probe answered in time before
    first_after: float  # and of the first answered in time after
    lost: int  # probes in between: never answered, or answered too late to matter

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
        self.target_ns, self.source_ns = target_ns, source_ns
        self.target, self.interval, self.size, self.marker = target, interval, size, marker
        self.sent: list[float] = []  # send time (monotonic) by sequence number
        self.answered: dict[int, float] = {}  # sequence number -> reply time
        self._procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> ProbeStream:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        # At the data plane's priority (lab.build.DATAPLANE_NICE): the probes stand in for
        # hosts, and a starved probe would be counted as a lost one.
        common = ["nice", "-n", "-10", sys.executable, "-m", "lab.probe"]
        env = os.environ | {"PYTHONPATH": str(Path(__file__).absolute().parents[1])}
        self._procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", self.target_ns, *common, "echo", str(self.target)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
        echo = self._procs[0]
        assert echo.stdout is not None
        echo.stdout.readline()  # "listening": bound before the first probe leaves
        self._procs.append(
            subprocess.Popen(
                [
                    *("ip", "netns", "exec", self.source_ns, *common, "send", str(self.target)),
                    *("--interval", str(self.interval), "--size", str(self.size)),
                    *("--marker", self.marker.hex()),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
        # Return only once probes flow both ways, so whatever the caller does next (break
        # a path, say) happens under the stream, however slowly the processes started.
        sender = self._procs[1]
        assert sender.stdout is not None
        ready, _, _ = select.select([sender.stdout], [], [], START_TIMEOUT)
        if not ready or sender.stdout.readline().strip() != FLOWING:
            self.stop()
            raise ProbeError(
                f"probe stream {self.source_ns} -> {self.target} (netns {self.target_ns}): "
                f"no reply within {START_TIMEOUT:g}s; is there a path between them?"
            )

    def stop(self) -> None:
        """Stop sending and collect what the sender saw (it waits LINGER for late replies)."""
        if not self._procs:
            return
        echo, sender = self._procs
        self._procs = []
        sender.send_signal(signal.SIGTERM)
        out, _ = sender.communicate(timeout=30)
        echo.terminate()
        echo.wait(timeout=10)
        out = out.removeprefix(FLOWING + "\n")  # if start() gave up before reading it
        result = json.loads(out or '{"sent": [], "answered": {}}')
        self.sent = result["sent"]
        self.answered = {int(k): v for k, v in result["answered"].items()}

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
            gap = last_ok is not None and seq - last_ok > 1
            if gap and last_ok is not None and since <= self.sent[last_ok + 1] < until:
                out.append(Outage(self.sent[last_ok], at, seq - last_ok - 1))
            last_ok = seq
        return out

    def worst(
        self, since: float = 0.0, until: float = float("inf"), deadline: float = 0.5
    ) -> Outage | None:
        """The longest outage that began between `since` and `until`."""
        return max(self.outages(since, until, deadline), key=lambda o: o.gap_ms, default=None)


# -- the two ends, as processes ------------------------------------------------------------


def _echo(address: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((address, PROBE_PORT))
        print("listening", flush=True)
        while True:
            data, peer = sock.recvfrom(65535)
            with contextlib.suppress(OSError):  # no route back right now: the probe is lost
                sock.sendto(data, peer)


def _send(address: str, interval: float, size: int, marker: bytes) -> None:
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    padding = (marker or b"\0") * (size // max(len(marker), 1) + 1)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sent: list[float] = []
    answered: dict[int, float] = {}
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((address, PROBE_PORT))
        sock.setblocking(False)
        next_at = time.monotonic()
        end = float("inf")
        while time.monotonic() < end:
            now = time.monotonic()
            if stop and end == float("inf"):
                end = now + LINGER
            if now >= next_at and end == float("inf"):
                sent.append(now)
                with contextlib.suppress(OSError):  # no route or no buffer: a lost probe
                    sock.send((_HEADER.pack(len(sent) - 1) + padding)[:size])
                next_at += interval
                if next_at < now:  # fell behind (a busy machine): do not burst
                    next_at = now + interval
            wait = max(min(next_at, end) - time.monotonic(), 0)
            try:
                ready, _, _ = select.select([sock], [], [], wait)
            except InterruptedError:
                continue
            while ready:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                if len(data) >= _HEADER.size:
                    if not answered:
                        print(FLOWING, flush=True)
                    answered.setdefault(_HEADER.unpack_from(data)[0], time.monotonic())
    json.dump({"sent": sent, "answered": answered}, sys.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.probe", description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("echo", help="echo UDP probes back (run in the target's namespace)")
    p.add_argument("address")
    p = sub.add_parser("send", help="send probes until SIGTERM, then print JSON results")
    p.add_argument("address")
    p.add_argument("--interval", type=float, default=0.001)
    p.add_argument("--size", type=int, default=400)
    p.add_argument("--marker", default="")
    args = parser.parse_args(argv)
    if args.role == "echo":
        _echo(args.address)
    else:
        _send(args.address, args.interval, args.size, bytes.fromhex(args.marker))


if __name__ == "__main__":
    main()
