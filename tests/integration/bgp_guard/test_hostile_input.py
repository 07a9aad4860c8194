"""The hostile-input probes of issue 17 (items 3 to 5), replayed byte for byte against a real
`overcast guard watch` process with a BGP listener and a BMP station on loopback. Each test
shows the process survives, answers as RFC 4271 / RFC 7606 / RFC 8654 say, counts what it
did (Prometheus), and then serves a well-behaved neighbour or router: its hijack reaches
stdout as an event. No root: every socket is on 127.0.0.0/8, neighbours bind their own
127.0.0.N so each test has its own.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.feeds.bmp import INITIATION, PEER_UP, ROUTE_MONITORING
from bgp_guard.wire import (
    HEADER_LEN,
    KEEPALIVE,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_UPDATE,
    Notification,
    Open,
    decode_header,
    encode_message,
)
from tests.unit.bgp_guard.feeds.test_bmp import bmp, peer_header, peer_up

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[3]
NEIGHBOUR_ASN, MONITORED = 64500, "198.51.100.0/24"  # we announce it from the wrong origin
NEIGHBOURS = 40  # 127.0.0.2 .. 127.0.0.41, each a configured neighbour
BMP_LIMIT, BMP_PER_ROUTER = 16, 2
_addresses = count(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Guard:
    proc: subprocess.Popen[str]
    bgp_port: int
    bmp_port: int
    metrics_port: int
    stderr: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return str(urllib.request.urlopen(url, timeout=5).read().decode())

    def metric(self, name: str, scraped: str | None = None, **labels: str) -> float:
        text = self.scrape() if scraped is None else scraped
        for line in text.splitlines():
            found = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
            if found and all(f'{k}="{v}"' in found[1] for k, v in labels.items()):
                return float(found[2])
        return 0.0

    def event(self, matches: Callable[[dict[str, Any]], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("expected event not printed by guard watch") from None
            if matches(json.loads(line)):
                return

    def wait_metric(
        self, name: str, holds: Callable[[float], bool], timeout: float = 15, **labels: str
    ) -> float:
        """The metric once `holds` is true of it (the guard works asynchronously)."""
        deadline = time.monotonic() + timeout
        while not holds(value := self.metric(name, **labels)):
            assert time.monotonic() < deadline, f"{name} {labels} stuck at {value}"
            time.sleep(0.05)
        return value

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guard]:
    tmp = tmp_path_factory.mktemp("hostile")
    bgp_port, bmp_port, metrics_port = free_port(), free_port(), free_port()
    neighbours = ", ".join(f"127.0.0.{n}: {NEIGHBOUR_ASN}" for n in range(2, 2 + NEIGHBOURS))
    config = tmp / "overcast.yaml"
    config.write_text(f"""
sites: {{}}
guard:
  prefixes: {{{MONITORED}: {{origins: [64496]}}}}
  feeds:
    bgp: {{local_asn: 65010, router_id: 192.0.2.10, listen: 127.0.0.1, port: {bgp_port},
          hold_time: 30, neighbours: {{{neighbours}}}}}
    bmp: {{listen: 127.0.0.1, port: {bmp_port}, max_routers: {BMP_LIMIT},
          max_connections_per_router: {BMP_PER_ROUTER}, initiation_timeout: 1,
          message_timeout: 1}}
""")
    stderr = tmp / "stderr.log"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overcast", "guard", "watch", "--config", str(config),
             "--json", "--metrics-port", str(metrics_port)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    g = Guard(proc, bgp_port, bmp_port, metrics_port, stderr)
    assert proc.stdout is not None
    out = proc.stdout

    def pump() -> None:
        for line in out:
            g.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while "watching" not in stderr.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        yield g
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = stderr.read_text()
    assert "Traceback" not in log, log


@pytest.fixture(autouse=True)
def still_alive(guard: Guard) -> Iterator[None]:
    yield
    assert guard.proc.poll() is None, guard.stderr.read_text()


# --- a scripted BGP neighbour -----------------------------------------------------------


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    mtype, length = decode_header(exactly(HEADER_LEN))
    return mtype, exactly(length - HEADER_LEN)


class Neighbour:
    """A neighbour from its own 127.0.0.N; `established=False` stops after sending OPEN."""

    def __init__(self, guard: Guard, extended: bool = False, established: bool = True) -> None:
        self.address = f"127.0.0.{next(_addresses)}"
        self.sock = socket.create_connection(
            ("127.0.0.1", guard.bgp_port), timeout=10, source_address=(self.address, 0)
        )
        families = frozenset({(1, 1), (2, 1)})
        hello = Open(NEIGHBOUR_ASN, 30, "192.0.2.1", families, True, extended_message=extended)
        if not established:
            return
        self.sock.sendall(hello.encode() + KEEPALIVE)
        assert read_message(self.sock)[0] == MSG_OPEN
        assert read_message(self.sock)[0] == MSG_KEEPALIVE

    def send(self, *messages: bytes) -> None:
        self.sock.sendall(b"".join(messages))

    def notification(self) -> Notification:
        """The NOTIFICATION the guard answers with; the connection must close after it."""
        while True:
            mtype, body = read_message(self.sock)
            if mtype == MSG_NOTIFICATION:
                assert self.sock.recv(1) == b"", "still open after the NOTIFICATION"
                return Notification.decode(body)

    def alive(self) -> None:
        """The session is still up: a KEEPALIVE goes through and no NOTIFICATION arrives."""
        self.send(KEEPALIVE)
        self.sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError):
            mtype, body = read_message(self.sock)
            assert mtype != MSG_NOTIFICATION, Notification.decode(body)
        self.sock.settimeout(10)

    def close(self) -> None:
        self.sock.close()


def attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack(">BBH", flags | 0x10, code, len(value)) + value
    return struct.pack(">BBB", flags, code, len(value)) + value


def as_path(*asns: int) -> bytes:
    value = b"".join(struct.pack(">BB", 2, len(chunk)) + struct.pack(f">{len(chunk)}I", *chunk)
                     for chunk in (asns[i : i + 255] for i in range(0, len(asns), 255)))  # fmt: skip
    return attribute(0x40, 2, value)


ORIGIN = attribute(0x40, 1, b"\x00")
NEXT_HOP = attribute(0x40, 3, socket.inet_aton("192.0.2.1"))


def nlri(prefix: str) -> bytes:
    address, length = prefix.split("/")
    return bytes((int(length),)) + socket.inet_aton(address)[: (int(length) + 7) // 8]


def update(prefix: str, attrs: bytes | None = None) -> bytes:
    if attrs is None:
        attrs = ORIGIN + as_path(NEIGHBOUR_ASN) + NEXT_HOP
    return encode_message(MSG_UPDATE, struct.pack(">HH", 0, len(attrs)) + attrs + nlri(prefix))


_prefixes = (f"198.51.100.{i}/32" for i in count(1))


def hijack_seen(guard: Guard, prefix: str, state: str = "ongoing") -> None:
    guard.event(lambda e: (e["prefix"], e["state"]) == (prefix, state))


def well_behaved_neighbour_is_served(guard: Guard) -> None:
    good = Neighbour(guard)
    prefix = next(_prefixes)
    good.send(update(prefix))
    hijack_seen(guard, prefix)
    good.close()


def resets(guard: Guard) -> float:
    return guard.metric(
        "overcast_bgp_feed_error_handling_total", feed="session", action="session-reset"
    )


# --- item 3: message lengths ----------------------------------------------------------------


def test_oversized_message_gets_bad_message_length(guard: Guard) -> None:
    """A header saying 5,000 bytes, padded with zeros: refused with 1/2 and the length."""
    before = resets(guard)
    bad = Neighbour(guard)
    bad.send(b"\xff" * 16 + struct.pack(">HB", 5000, MSG_UPDATE) + bytes(5000 - HEADER_LEN))
    assert bad.notification() == Notification(1, 2, struct.pack(">H", 5000))
    assert resets(guard) == before + 1
    well_behaved_neighbour_is_served(guard)


def test_16_kb_update_needs_extended_messages(guard: Guard) -> None:
    """A 4,000-AS path (16 KB): Bad Message Length without RFC 8654, accepted with it."""
    prefix = next(_prefixes)
    long_update = update(prefix, ORIGIN + as_path(*[NEIGHBOUR_ASN] * 4000) + NEXT_HOP)
    assert len(long_update) > 16_000
    plain = Neighbour(guard, extended=False)
    plain.send(long_update)
    assert plain.notification() == Notification(1, 2, long_update[16:18])
    extended = Neighbour(guard, extended=True)
    extended.send(long_update)
    hijack_seen(guard, prefix)
    extended.alive()
    extended.close()


def test_empty_notification_in_any_state(guard: Guard) -> None:
    """A NOTIFICATION of the header alone, instead of OPEN and when Established: Bad Message
    Length back (RFC 4271 section 6.1), no traceback, counted."""
    before = resets(guard)
    empty = encode_message(MSG_NOTIFICATION)
    opening = Neighbour(guard, established=False)
    opening.send(empty)
    assert opening.notification() == Notification(1, 2, b"\x00\x13")
    up = Neighbour(guard)
    up.send(empty)
    assert up.notification() == Notification(1, 2, b"\x00\x13")
    assert resets(guard) == before + 2
    well_behaved_neighbour_is_served(guard)


# --- item 4: RFC 7606 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        attribute(0xE0, 1, b"\x00") + as_path(NEIGHBOUR_ASN) + NEXT_HOP,  # ORIGIN flags 0xe0
        ORIGIN + attribute(0x80, 2, as_path(NEIGHBOUR_ASN)[3:]) + NEXT_HOP,  # AS_PATH 0x80
        ORIGIN + NEXT_HOP,  # AS_PATH missing
    ],
    ids=["origin-flags-0xe0", "as-path-flags-0x80", "as-path-missing"],
)
def test_malformed_update_withdraws_its_routes(guard: Guard, attrs: bytes) -> None:
    """RFC 7606 treat-as-withdraw: the route announced before is withdrawn (its event says
    so), the session stays up and goes on announcing."""
    counted = ("overcast_bgp_feed_error_handling_total",)
    before = guard.metric(*counted, feed="session", action="treat-as-withdraw")
    peer = Neighbour(guard)
    prefix = next(_prefixes)
    peer.send(update(prefix))
    hijack_seen(guard, prefix)
    peer.send(update(prefix, attrs))
    hijack_seen(guard, prefix, "withdrawn")
    assert guard.metric(*counted, feed="session", action="treat-as-withdraw") == before + 1
    peer.alive()
    later = next(_prefixes)
    peer.send(update(later))
    hijack_seen(guard, later)
    peer.close()


def test_discarded_attribute_and_unknown_family_keep_the_route(guard: Guard) -> None:
    """ATOMIC_AGGREGATE with a value: attribute discard. MP_REACH_NLRI of AFI 99, never
    negotiated: skipped. The UPDATE's own route is announced all the same; both counted."""
    metric = "overcast_bgp_feed_error_handling_total"
    discards = guard.metric(metric, feed="session", action="attribute-discard")
    ignored = guard.metric(metric, feed="session", action="family-ignored")
    peer = Neighbour(guard)
    prefix = next(_prefixes)
    unknown_afi = attribute(0x80, 14, struct.pack(">HBB", 99, 1, 4) + bytes(4) + b"\x00\x08\x0a")
    odd = attribute(0x40, 6, b"\x01") + unknown_afi
    peer.send(update(prefix, ORIGIN + as_path(NEIGHBOUR_ASN) + NEXT_HOP + odd))
    hijack_seen(guard, prefix)
    assert guard.metric(metric, feed="session", action="attribute-discard") == discards + 1
    assert guard.metric(metric, feed="session", action="family-ignored") == ignored + 1
    peer.alive()
    peer.close()


def test_malformed_nlri_resets_the_session(guard: Guard) -> None:
    """An IPv4 prefix of /33 cannot be read past: UPDATE error 3/10 (RFC 7606 section 5.3)."""
    before = resets(guard)
    bad = Neighbour(guard)
    attrs = ORIGIN + as_path(NEIGHBOUR_ASN) + NEXT_HOP
    bad.send(
        encode_message(MSG_UPDATE, struct.pack(">HH", 0, len(attrs)) + attrs + b"\x21" + bytes(5))
    )
    assert bad.notification().code == 3 and resets(guard) == before + 1
    well_behaved_neighbour_is_served(guard)


# --- item 5: BMP ---------------------------------------------------------------------------


def bmp_connect(guard: Guard, source: str) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", guard.bmp_port), timeout=10, source_address=(source, 0)
    )


def closed_by_guard(sock: socket.socket, within: float = 10) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


CONNECTIONS = "overcast_bgp_feed_connections"
REFUSED = "overcast_bgp_feed_refused_total"
LIMITS = ("connection-limit", "source-limit")


def refused(guard: Guard, reason: str) -> float:
    return guard.metric("overcast_bgp_feed_refused_total", feed="bmp", reason=reason)


def well_behaved_router_is_served(guard: Guard, source: str) -> None:
    prefix = next(_prefixes)
    router = bmp_connect(guard, source)
    router.sendall(
        bmp(INITIATION, struct.pack(">HH", 2, 4) + b"edge")
        + bmp(PEER_UP, peer_up())
        + bmp(ROUTE_MONITORING, peer_header() + update(prefix))
    )
    hijack_seen(guard, prefix)
    router.close()


def test_bmp_memory_is_bounded_under_a_connection_flood(guard: Guard) -> None:
    """200 connections, each sending most of a large message (the issue's probe): past the
    limits they are closed at once; the others hold at most one bounded message each. The
    guard's memory stays flat, and a real router is served afterwards."""
    baseline = guard.rss_kib()

    def counts(scraped: str) -> tuple[float, float, float]:
        """Connections held now, refused at the door, closed mid-message (slow-message)."""
        return (
            guard.metric(CONNECTIONS, scraped, feed="bmp"),
            sum(guard.metric(REFUSED, scraped, feed="bmp", reason=r) for r in LIMITS),
            guard.metric(REFUSED, scraped, feed="bmp", reason="slow-message"),
        )

    _, refused_before, slow_before = counts(guard.scrape())
    big = 120_000  # under MAX_MESSAGE; a 1 MiB header is refused outright (next test)
    flood = []
    for i in range(200):
        sock = bmp_connect(guard, f"127.0.1.{i % 50 + 1}")
        with contextlib.suppress(OSError):
            sock.sendall(struct.pack(">BIB", 3, big, ROUTE_MONITORING) + bytes(big - 10_000))
        flood.append(sock)
        if i % 20 == 19:
            assert counts(guard.scrape())[0] <= BMP_LIMIT
    # Every connection accounted for: held, refused, or (on a loaded machine, where the
    # flood outlasts message_timeout) already closed as too slow.
    deadline = time.monotonic() + 15
    while True:
        held, refusals, slow = counts(guard.scrape())
        refusals, slow = refusals - refused_before, slow - slow_before
        if held + refusals + slow == 200:
            break
        assert time.monotonic() < deadline, (held, refusals, slow)
        time.sleep(0.05)
    grown = guard.rss_kib() - baseline
    print(f"\nBMP flood: 200 connections, {held:.0f} held, {refusals:.0f} refused, "
          f"{slow:.0f} closed as slow, RSS +{grown / 1024:.1f} MiB")  # fmt: skip
    assert held <= BMP_LIMIT and refusals >= 200 - 2 * BMP_LIMIT
    assert grown < 32 * 1024, f"RSS grew {grown} KiB"
    # Those let in never complete their message: closed after message_timeout.
    assert all(closed_by_guard(sock) for sock in flood)
    for sock in flood:
        sock.close()
    guard.wait_metric(CONNECTIONS, lambda n: n == 0, feed="bmp")
    assert refused(guard, "slow-message") >= 1
    well_behaved_router_is_served(guard, "127.0.2.1")


def test_bmp_idle_and_oversized_connections_are_closed(guard: Guard) -> None:
    guard.wait_metric(CONNECTIONS, lambda n: n == 0, feed="bmp")
    idle_before = refused(guard, "no-initiation")
    errors_before = guard.metric("overcast_bgp_feed_errors_total", feed="bmp")
    idle = bmp_connect(guard, "127.0.2.2")
    assert closed_by_guard(idle)  # nothing sent: closed after initiation_timeout
    assert refused(guard, "no-initiation") == idle_before + 1
    huge = bmp_connect(guard, "127.0.2.3")
    huge.sendall(struct.pack(">BIB", 3, 1 << 20, ROUTE_MONITORING))
    assert closed_by_guard(huge, within=0.9)  # refused on the header, not after a timeout
    assert guard.metric("overcast_bgp_feed_errors_total", feed="bmp") == errors_before + 1
    idle.close()
    huge.close()
    well_behaved_router_is_served(guard, "127.0.2.4")
