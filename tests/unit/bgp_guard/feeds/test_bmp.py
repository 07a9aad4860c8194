"""BMP message handling over a loopback TCP connection, with hand-built messages
(RFC 7854 sections 4.1-4.9). The real-router test is tests/integration/bgp_guard/test_bmp.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgp_guard.feeds.bmp import (
    FLAG_2_BYTE_AS,
    FLAG_POST_POLICY,
    INITIATION,
    PEER_DOWN,
    PEER_UP,
    ROUTE_MONITORING,
    BmpListener,
    _Router,
)
from bgp_guard.update import FeedItem, PeerDown, Update
from bgp_guard.wire import ADD_PATH_RECEIVE, ADD_PATH_SEND, Open, WireError

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> bytes:
    return bytes.fromhex(json.loads((GOLDEN / f"{name}.json").read_text())["message"])


def bmp(mtype: int, body: bytes) -> bytes:
    return struct.pack(">BIB", 3, 6 + len(body), mtype) + body


def peer_header(flags: int = 0, ts: int = 1_700_000_000) -> bytes:
    address = bytes(12) + socket.inet_aton("192.0.2.1")
    return struct.pack(
        ">BB8s16sI4sII", 0, flags, bytes(8), address, 4200000001, bytes(4), ts, 500_000
    )


def peer_up(router_add_path: int = 0, peer_add_path: int = 0) -> bytes:
    """Peer Up (RFC 7854 section 4.10): addresses and ports, then the OPEN the router sent
    and the one it received, with ADD-PATH Send/Receive bits for IPv4 unicast if non-zero."""

    def open_message(asn: int, bits: int) -> bytes:
        add_path = ((1, 1, bits),) if bits else ()
        return Open(asn, 90, "192.0.2.1", frozenset({(1, 1)}), True, add_path=add_path).encode()

    return (
        peer_header()
        + bytes(20)
        + open_message(65000, router_add_path)
        + open_message(4200000001, peer_add_path)
    )


def run(stream: bytes) -> tuple[BmpListener, list[FeedItem]]:
    """Send `stream` as one router, hang up, and return every Update (and PeerDown) the
    listener made."""

    async def scenario() -> tuple[BmpListener, list[FeedItem]]:
        listener = BmpListener()
        await listener.listen("127.0.0.1", 0)
        port = listener._servers[0].sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(stream)
        await writer.drain()
        writer.close()
        while (listener.stats.records == 0 and listener.stats.errors == 0) or listener._handlers:
            await asyncio.sleep(0.01)  # until the router's connection was handled to its end
        got = [listener._queue.get_nowait() for _ in range(listener._queue.qsize())]
        await listener.close()
        return listener, got

    return asyncio.run(asyncio.wait_for(scenario(), 10))


def test_session_of_messages(caplog: pytest.LogCaptureFixture) -> None:
    info = struct.pack(">HH", 2, 5) + b"edge1"
    stream = (
        bmp(INITIATION, info)
        + bmp(PEER_UP, peer_up())
        + bmp(ROUTE_MONITORING, peer_header() + golden("ipv4_as4_set_communities"))
        + bmp(ROUTE_MONITORING, peer_header() + b"\x00" * 19)  # broken BGP marker
        + bmp(ROUTE_MONITORING, peer_header(FLAG_2_BYTE_AS) + golden("as4_path_merge"))
        + bmp(PEER_DOWN, peer_header() + b"\x02")
    )
    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.bmp"):
        listener, got = run(stream)
    withdrawn, a, b, merged, down = got
    assert isinstance(withdrawn, Update) and isinstance(a, Update)
    assert isinstance(b, Update) and isinstance(merged, Update)
    assert (withdrawn.announce, str(withdrawn.prefix)) == (False, "203.0.113.0/24")
    assert (a.peer_ip, a.peer_asn, a.time, a.source) == (
        "192.0.2.1",
        4200000001,
        1_700_000_000.5,
        "bmp:edge1",
    )
    assert a.as_path == (4200000001, 64496, frozenset({64511, 65001}))
    assert str(b.prefix) == "198.51.100.128/25"
    # 2-byte AS_PATH (A flag) with AS4_PATH merged, RFC 6793 section 4.2.3.
    assert merged.as_path == (64496, 4200000001, 4200000002)
    # Peer Down: the guard withdraws everything the peer announced. It was the router's only
    # peer, so hanging up afterwards adds nothing.
    assert down == PeerDown(1_700_000_000.5, "192.0.2.1", 4200000001, "bmp:edge1")
    assert listener.stats.as_dict() == {
        "records": 6,
        "updates": 4,
        "peer_downs": 1,
        "errors": 1,
    }
    offset = (
        6
        + 9
        + 6
        + len(peer_up())
        + 6
        + len(peer_header() + golden("ipv4_as4_set_communities"))
        + 6
        + 42
    )
    assert f"byte {offset}: BGP marker is not all ones" in caplog.text


def test_large_communities(caplog: pytest.LogCaptureFixture) -> None:
    """RFC 8092 large communities in Route Monitoring (UPDATEs bird2 sent); one with a bad
    length is treated as withdraw (RFC 7606: the router no longer holds that route), counted
    and logged, and the next message still counts."""
    bad = peer_header() + golden("error_large_communities_length")
    stream = (
        bmp(PEER_UP, peer_up())
        + bmp(ROUTE_MONITORING, bad)
        + bmp(ROUTE_MONITORING, peer_header() + golden("large_communities_bird2"))
        + bmp(ROUTE_MONITORING, peer_header() + golden("large_communities_bird2_ipv6"))
    )
    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.bmp"):
        listener, got = run(stream)
    updates = [
        (str(u.prefix), u.announce, u.large_communities) for u in got if isinstance(u, Update)
    ]
    assert updates == [
        ("203.0.113.0/25", False, ()),
        ("198.51.100.0/24", True, ((64496, 4294967295, 0), (4200000001, 100, 1))),
        ("2001:db8:100::/48", True, ((4200000001, 6, 6),)),
    ]
    assert listener.stats.actions == {"treat-as-withdraw": 1}
    assert "LARGE_COMMUNITIES of 8 bytes, not a non-zero multiple of 12" in caplog.text


def test_add_path_negotiated_in_peer_up() -> None:
    # The peer offered to send path ids and the router to receive them (RFC 7911 section 4).
    stream = bmp(PEER_UP, peer_up(ADD_PATH_RECEIVE, ADD_PATH_SEND)) + bmp(
        ROUTE_MONITORING, peer_header() + golden("add_path_ipv4")
    )
    listener, got = run(stream)
    assert listener.stats.errors == 0
    updates = [u for u in got if isinstance(u, Update)]
    assert [(str(u.prefix), u.announce, u.path_id) for u in updates[:3]] == [
        ("192.0.2.0/24", False, 7),
        ("198.51.100.0/24", True, 1),
        ("198.51.100.0/24", True, 2),
    ]


def test_router_hanging_up_downs_each_of_its_peers_once() -> None:
    """Pre- and post-policy monitoring of one peer is one session: one PeerDown for it."""
    stream = (
        bmp(PEER_UP, peer_up())
        + bmp(ROUTE_MONITORING, peer_header() + golden("as4_path_merge"))
        + bmp(ROUTE_MONITORING, peer_header(FLAG_POST_POLICY) + golden("as4_path_merge"))
    )
    listener, got = run(stream)
    downs = [d for d in got if isinstance(d, PeerDown)]
    assert [(d.peer_ip, d.peer_asn, d.source) for d in downs] == [
        ("192.0.2.1", 4200000001, "bmp:127.0.0.1")
    ]
    assert got[-1] is downs[0] and listener.stats.peer_downs == 1


def test_broken_common_header_closes_the_connection() -> None:
    stream = bmp(ROUTE_MONITORING, peer_header() + golden("as4_path_merge"))
    stream = stream.replace(b"\x03", b"\x02", 1)  # BMP version 2
    listener, got = run(stream)
    assert got == [] and listener.stats.errors == 1


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([ROUTE_MONITORING, PEER_UP, PEER_DOWN, INITIATION, 1, 6, 9]),
    st.binary(max_size=120),
)
def test_any_message_body_raises_only_wire_error(mtype: int, tail: bytes) -> None:
    listener = BmpListener()
    for body in (tail, peer_header() + tail):
        with contextlib.suppress(WireError):
            listener._message(_Router("192.0.2.9"), mtype, body)


def test_counters_reach_prometheus_while_the_router_is_connected() -> None:
    """Issue 16: the feed="bmp" series move while a router stays connected."""
    from overcast.metrics import REGISTRY

    def records() -> float:
        value = REGISTRY.get_sample_value("overcast_bgp_feed_records_total", {"feed": "bmp"})
        return value or 0.0

    async def scenario() -> float:
        listener = BmpListener()
        await listener.listen("127.0.0.1", 0)
        port = listener._servers[0].sockets[0].getsockname()[1]
        before = records()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(bmp(INITIATION, b"") + bmp(PEER_UP, peer_up()))
        await writer.drain()
        try:
            for _ in range(100):  # published within a second or so, the router still there
                if records() >= before + 2:
                    break
                await asyncio.sleep(0.05)
            return records() - before
        finally:
            writer.close()
            await listener.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == 2
