"""Traffic between lab namespaces: ping and iperf3 (TCP), with parsed results.

Only ever between namespaces the lab created (ARCHITECTURE.md: network rule)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from lab import netns
from overcast.model import IPAddress

IPERF_PORT = 5201  # iperf3's default; each namespace has its own port space


@dataclass(frozen=True)
class PingResult:
    source: str
    target: str
    sent: int
    received: int
    rtt_avg_ms: float | None

    @property
    def ok(self) -> bool:
        return self.received == self.sent > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def __str__(self) -> str:
        rtt = f", avg {self.rtt_avg_ms:.2f} ms" if self.rtt_avg_ms is not None else ""
        return f"ping {self.source} -> {self.target}: {self.received}/{self.sent} replies{rtt}"


@dataclass(frozen=True)
class Throughput:
    source: str
    target: str
    bits_per_second: float  # what the receiver got
    retransmits: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"iperf3 TCP {self.source} -> {self.target}: {self.bits_per_second / 1e6:.0f} "
            f"Mbit/s ({self.retransmits} retransmits)"
        )


_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
_RTT = re.compile(r"= [\d.]+/([\d.]+)/")


def ping(ns: str, target: IPAddress, source: str, label: str, count: int = 5) -> PingResult:
    out = netns.run(
        ns, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", str(target)], check=False
    )
    return parse_ping(out, source, label, count)


def parse_ping(out: str, source: str, target: str, count: int) -> PingResult:
    """iputils ping's summary; no summary at all counts as every probe lost."""
    summary, rtt = _SUMMARY.search(out), _RTT.search(out)
    return PingResult(
        source=source,
        target=target,
        sent=int(summary.group(1)) if summary else count,
        received=int(summary.group(2)) if summary else 0,
        rtt_avg_ms=float(rtt.group(1)) if rtt else None,
    )


def iperf3(
    server_ns: str,
    server: IPAddress,
    client_ns: str,
    source: str,
    label: str,
    seconds: int = 3,
    bitrate: str | None = None,
) -> Throughput:
    """One TCP iperf3 run from `client_ns` to a one-shot server on `server` in `server_ns`,
    at most `bitrate` (iperf3's `-b`, e.g. "20M") if given."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", str(server)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        listening = netns.wait_until(
            lambda: (
                proc.poll() is not None
                or bool(netns.run(server_ns, ["ss", "-Hltn", f"sport = :{IPERF_PORT}"]).strip())
            ),
            10.0,
        )
        if not listening or proc.poll() is not None:
            raise netns.LabCommandError(f"iperf3 server in {server_ns} did not start")
        out = netns.run(
            client_ns,
            [
                *("iperf3", "-c", str(server), "-t", str(seconds), "--json"),
                *(("-b", bitrate) if bitrate else ()),
            ],
            timeout=seconds + 30,
            check=False,
        )
    finally:
        if proc.poll() is None:
            netns.terminate([proc.pid], grace=5.0)
        proc.wait()
    return parse_iperf3(out, source, label)


def parse_iperf3(out: str, source: str, target: str) -> Throughput:
    """The receiver's rate from `iperf3 --json`; a LabCommandError with iperf3's own
    error text if the run failed."""
    doc: Any
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    try:
        end = doc["end"]
        return Throughput(
            source=source,
            target=target,
            bits_per_second=float(end["sum_received"]["bits_per_second"]),
            retransmits=int(end["sum_sent"].get("retransmits", 0)),
        )
    except (KeyError, TypeError):
        error = doc.get("error", "no result") if isinstance(doc, dict) else out.strip()[-200:]
        raise netns.LabCommandError(
            f"iperf3 {source} -> {target} failed: {error or 'no output'}"
        ) from None
