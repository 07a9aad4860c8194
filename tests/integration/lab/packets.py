"""Packets in and out of lab namespaces with scapy, from the test process itself.

A packet socket belongs to the network namespace it was created in, so each socket is
opened while this thread is inside the lab's namespace (setns(2)) and used from anywhere
afterwards: one `AsyncSniffer` then reads every capture point of the lab at once, each
packet labelled with where it was seen. Nothing here resolves interface names through
scapy's root-namespace interface table: promiscuous mode is left off (veths and bridge
ports hand every frame to a packet socket anyway) and frames are sent as bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from scapy.arch.linux import L2ListenSocket, L2Socket
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer

from lab import tap
from lab.netns import inside
from lab.plan import LabPlan

__all__ = ["Capture", "inside", "not_wireguard", "send_frames"]

# A capture is complete once no packet has arrived for this long (the traffic it waits for
# has already finished, so only stragglers are in flight).
QUIET = 0.3


class Capture:
    """Every frame seen at `points` ({label: (namespace, interface)}), in and out."""

    def __init__(self, points: Mapping[str, tuple[str, str]]) -> None:
        sockets: dict[Any, str] = {}
        try:
            for label, (ns, ifname) in points.items():
                with inside(ns):
                    sockets[L2ListenSocket(iface=ifname, promisc=False)] = label
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._sockets = sockets
        self._seen: list[Packet] = []
        # Collected as they arrive (the sniffer's own results exist only once it stops).
        self._sniffer = AsyncSniffer(opened_socket=sockets, prn=self._seen.append, store=False)

    def __enter__(self) -> Capture:
        self._sniffer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sniffer.running:
            self._sniffer.stop()
        for sock in self._sockets:
            sock.close()

    @property
    def packets(self) -> list[Packet]:
        return list(self._seen)

    def at(self, label: str) -> list[Packet]:
        return [p for p in self.packets if p.sniffed_on == label]

    def wait_for(self, seen: Any, timeout: float = 5.0) -> bool:
        """Poll until `seen(packets)` holds; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not seen(self.packets):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def finish(self, timeout: float = 3.0) -> list[Packet]:
        """Stop once the capture has been quiet for QUIET seconds (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = len(self.packets)
            if now != count:
                count, since = now, time.monotonic()
            elif time.monotonic() - since >= QUIET:
                break
            time.sleep(0.02)
        self._sniffer.stop()
        return self.packets


def send_frames(ns: str, ifname: str, frames: list[Packet]) -> None:
    """Put `frames` on the wire of `ifname` in namespace `ns`, exactly as built."""
    with inside(ns):
        sock = L2Socket(iface=ifname, promisc=False)
    try:
        for frame in frames:
            sock.outs.send(bytes(frame))
    finally:
        sock.close()


def not_wireguard(plan: LabPlan, frame: Packet, marker: bytes | None = None) -> str | None:
    """Why `frame` must not be on an underlay; None for WireGuard between the sites' ports
    (and ARP or IPv6 link-local plumbing), as the lab's underlay tap judges it (`lab.tap`).
    `marker`: bytes that must never be seen in clear."""
    addresses = {str(a) for s in plan.sites for a in s.underlays.values()}
    ports = {wg.listen_port for s in plan.sites for wg in s.dataplane.wireguard_interfaces}
    why = tap.problem(bytes(frame), addresses, ports, marker or b"")
    return None if why is None else f"{why}: {frame!r}"
