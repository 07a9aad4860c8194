"""A tap on an underlay link: tells every frame that crosses it as WireGuard, plumbing, or
something that must not be there (traffic in clear).

The tap is a process of its own (`python -m lab.tap`, started in the underlay's namespace
by `Tap`), reading a packet socket (packet(7), both directions) and classifying each frame
from its raw bytes, so it keeps up with a 1 ms probe stream and a busy caller cannot make
it drop frames. Allowed on an underlay: WireGuard messages (the WireGuard paper, section
5.4: type 1-4, three reserved zero bytes) in UDP over IPv4 or IPv6 between two sites'
addresses and WireGuard ports; ARP between site addresses; IPv6 link-local neighbour
discovery and MLD. Anything
else, and any frame carrying the `marker` bytes of the tunnelled traffic, is counted in
clear with a short description.

    with Tap("oc1234.wan", "to-hq", addresses, ports, marker=b"probe") as tap:
        ...  # traffic
    print(tap.result.in_clear, tap.result.wireguard)
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ETH_P_ALL = 0x0003  # linux/if_ether.h
ETH_HEADER = 14
ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6 = 0x0800, 0x0806, 0x86DD
MIN_HEADER = {ETHERTYPE_ARP: 28, ETHERTYPE_IPV6: 40, ETHERTYPE_IPV4: 28}  # IPv4: with UDP's
IPPROTO_UDP = 17
IPV6_PLUMBING = (0, 58)  # next headers: hop-by-hop (MLD's router alert), ICMPv6
WIREGUARD_TYPES = {1: "initiation", 2: "response", 3: "cookie", 4: "transport"}
EXAMPLES = 3  # problem descriptions kept
DRAIN = 1.0  # after SIGTERM: read what is queued for at most this long


@dataclass
class TapResult:
    frames: int = 0
    wireguard: dict[str, int] = field(default_factory=dict)  # message type -> count
    plumbing: int = 0
    in_clear: int = 0
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "wireguard": self.wireguard,
            "plumbing": self.plumbing,
            "in_clear": self.in_clear,
            "examples": self.examples,
        }


def classify(frame: bytes, addresses: Set[str], ports: Set[int], marker: bytes) -> str:
    """What `frame` is: "wireguard:<message type>", "plumbing", or why it must not be on
    the underlay."""
    if marker and marker in frame:
        return "the tunnelled traffic's marker in clear"
    if len(frame) < ETH_HEADER:
        return f"a runt frame of {len(frame)} bytes"
    ethertype = int.from_bytes(frame[12:14], "big")
    packet = frame[ETH_HEADER:]
    if len(packet) < MIN_HEADER.get(ethertype, 0):
        return f"a truncated packet of ethertype 0x{ethertype:04x}"
    if ethertype == ETHERTYPE_ARP:
        sender, target = _ip(packet[14:18]), _ip(packet[24:28])
        ok = {sender, target} <= addresses
        return "plumbing" if ok else f"ARP between {sender} and {target}"
    if ethertype == ETHERTYPE_IPV6:
        v6 = ipaddress.IPv6Address(packet[8:24])
        if packet[6] in IPV6_PLUMBING and (v6.is_link_local or v6.is_unspecified):
            return "plumbing"
        proto, source, destination = packet[6], str(v6), str(ipaddress.IPv6Address(packet[24:40]))
        udp = packet[40:]
    elif ethertype == ETHERTYPE_IPV4:
        proto, source, destination = packet[9], _ip(packet[12:16]), _ip(packet[16:20])
        udp = packet[(packet[0] & 0x0F) * 4 :]
    else:
        return f"ethertype 0x{ethertype:04x}"
    if proto != IPPROTO_UDP:
        return f"IP protocol {proto} from {source} to {destination}"
    if not {source, destination} <= addresses:
        return f"UDP from {source} to {destination}: not between sites"
    sport, dport = int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")
    if sport not in ports or dport not in ports:
        return f"UDP {source}:{sport} -> {destination}:{dport}: not between WireGuard ports"
    payload = udp[8:]
    kind = WIREGUARD_TYPES.get(payload[0]) if len(payload) >= 32 else None
    if kind is None or payload[1:4] != b"\0\0\0":
        return f"UDP {source}:{sport} -> {destination}:{dport} that is not WireGuard"
    return f"wireguard:{kind}"


def problem(frame: bytes, addresses: Set[str], ports: Set[int], marker: bytes = b"") -> str | None:
    """Why `frame` must not be on an underlay, or None if it may (`classify`)."""
    verdict = classify(frame, addresses, ports, marker)
    return None if verdict == "plumbing" or verdict.startswith("wireguard:") else verdict


def _ip(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


class Tap:
    """`python -m lab.tap` on `interface` in namespace `ns`, for the length of a `with`."""

    def __init__(
        self,
        ns: str,
        interface: str,
        addresses: Set[str],
        ports: Set[int],
        marker: bytes = b"",
    ) -> None:
        self.argv = [
            *("ip", "netns", "exec", ns, sys.executable, "-m", "lab.tap", interface),
            *("--addresses", ",".join(sorted(addresses))),
            *("--ports", ",".join(str(p) for p in sorted(ports))),
            *("--marker", marker.hex()),
        ]
        self.where = f"{interface} (netns {ns})"
        self.result = TapResult()
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Tap:
        env = os.environ | {"PYTHONPATH": str(Path(__file__).absolute().parents[1])}
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "listening":  # bound before traffic starts
            _, err = self._proc.communicate(timeout=10)
            raise RuntimeError(f"the tap on {self.where} did not start: {err.strip()[-300:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        if exc[0] is None and proc.returncode != 0:
            raise RuntimeError(f"the tap on {self.where} failed: {err.strip()[-300:]}")
        with contextlib.suppress(ValueError):
            self.result = TapResult(**json.loads(out))


def _run(interface: str, addresses: Set[str], ports: Set[int], marker: bytes) -> TapResult:
    stop: float | None = None

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = time.monotonic()

    signal.signal(signal.SIGTERM, on_term)
    result = TapResult()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((interface, 0))
        sock.setblocking(False)
        print("listening", flush=True)
        while True:
            try:
                ready = select.select([sock], [], [], 0.05)[0]
            except InterruptedError:
                ready = []
            if stop is not None and (not ready or time.monotonic() - stop > DRAIN):
                break  # drained: nothing more queued (or a stream that never ends)
            while True:
                try:
                    frame = sock.recv(65535)
                except BlockingIOError:
                    break
                result.frames += 1
                verdict = classify(frame, addresses, ports, marker)
                if verdict.startswith("wireguard:"):
                    kind = verdict.partition(":")[2]
                    result.wireguard[kind] = result.wireguard.get(kind, 0) + 1
                elif verdict == "plumbing":
                    result.plumbing += 1
                else:
                    result.in_clear += 1
                    if len(result.examples) < EXAMPLES:
                        result.examples.append(verdict)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.tap", description=__doc__)
    parser.add_argument("interface")
    parser.add_argument(
        "--addresses", required=True, help="the sites' underlay addresses, comma-separated"
    )
    parser.add_argument(
        "--ports", required=True, help="the sites' WireGuard ports, comma-separated"
    )
    parser.add_argument("--marker", default="", help="hex bytes never to be seen in clear")
    args = parser.parse_args(argv)
    result = _run(
        args.interface,
        set(args.addresses.split(",")),
        {int(p) for p in args.ports.split(",")},
        bytes.fromhex(args.marker),
    )
    json.dump(result.as_dict(), sys.stdout)


if __name__ == "__main__":
    main()
