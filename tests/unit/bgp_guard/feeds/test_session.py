"""The session FSM against a scripted neighbour on loopback: malformed UPDATEs are treated as
withdrawals (RFC 7606) and counted, a broken header ends the session with a NOTIFICATION,
and the routes of a session that ends are withdrawn (as one PeerDown). Interop with real
daemons: tests/integration/bgp_guard; the same bytes against `overcast guard watch`:
tests/integration/bgp_guard/test_hostile_input.py."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.feeds.session import BgpSpeaker, connect_failure
from bgp_guard.update import EndOfRib, FeedItem, PeerDown, PeerRestarting, Update
from bgp_guard.wire import (
    HEADER_LEN,
    KEEPALIVE,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_UPDATE,
    GracefulRestart,
    Notification,
    Open,
    decode_header,
    encode_message,
)

GOLDEN = Path(__file__).parent / "golden"
PEER_ASN = 4200000001


def golden(name: str) -> bytes:
    return bytes.fromhex(json.loads((GOLDEN / f"{name}.json").read_text())["message"])


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(HEADER_LEN)
    mtype, length = decode_header(header)
    return mtype, await reader.readexactly(length - HEADER_LEN)


async def neighbour(
    speaker: BgpSpeaker, asn: int, then: list[bytes]
) -> tuple[list[FeedItem], Notification | None]:
    """Open a session to `speaker` as AS`asn`, send `then`, and return every Update (and
    PeerDown) the speaker produced plus the NOTIFICATION it sent, if any."""
    await speaker.listen("127.0.0.1", 0)
    port = speaker._servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(Open(asn, 9, "192.0.2.1", frozenset({(1, 1), (2, 1)}), asn4=True).encode())
    mtype, body = await read_message(reader)
    assert mtype == MSG_OPEN
    assert Open.decode(body).asn == 65010
    notification = None
    mtype, body = await read_message(reader)
    if mtype == MSG_NOTIFICATION:
        notification = Notification.decode(body)
    else:
        writer.write(KEEPALIVE)
        writer.write(b"".join(then))
        await writer.drain()
        while True:  # KEEPALIVEs until the speaker ends the session, or we do
            try:
                mtype, body = await asyncio.wait_for(read_message(reader), 2)
            except (asyncio.IncompleteReadError, TimeoutError):
                break
            if mtype == MSG_NOTIFICATION:
                notification = Notification.decode(body)
                break
    writer.close()
    while speaker._handlers:  # until the speaker has handled the end of the session
        await asyncio.sleep(0.01)
    got = [speaker._queue.get_nowait() for _ in range(speaker._queue.qsize())]
    await speaker.close()
    return got, notification


def run(asn: int, then: list[bytes]) -> tuple[BgpSpeaker, list[FeedItem], Notification | None]:
    async def scenario() -> tuple[BgpSpeaker, list[FeedItem], Notification | None]:
        speaker = BgpSpeaker(65010, "192.0.2.10", peers={"127.0.0.1": PEER_ASN}, hold_time=9)
        got, notification = await neighbour(speaker, asn, then)
        return speaker, got, notification

    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_malformed_updates_are_withdrawn_and_the_session_goes_on() -> None:
    broken_marker = b"\x00" * 16 + b"\x00\x13\x04"
    speaker, got, notification = run(
        PEER_ASN,
        [
            golden("ipv4_as4_set_communities"),
            golden("error_bad_segment_type"),
            golden("ipv6_mp_reach_unreach"),
            golden("error_large_communities_length"),
            golden("large_communities_bird2"),
            broken_marker,
        ],
    )
    # RFC 4271 section 6.1: message header error, Connection Not Synchronized.
    assert notification == Notification(1, 1)
    *updates, down = got
    announced = [(str(u.prefix), u.announce) for u in updates if isinstance(u, Update)]
    assert len(announced) == len(updates)
    assert announced[:3] == [
        ("203.0.113.0/24", False),
        ("198.51.100.0/24", True),
        ("198.51.100.128/25", True),
    ]
    assert ("2001:db8:100::/48", True) in announced
    # RFC 7606 treat-as-withdraw: the route of the UPDATE with a bad LARGE_COMMUNITIES.
    assert ("203.0.113.0/25", False) in announced
    large = [u.large_communities for u in updates if isinstance(u, Update)][-1]
    assert large == ((64496, 4294967295, 0), (4200000001, 100, 1))  # RFC 8092, from bird2
    # The session ended: everything still announced is gone (RFC 4271 section 8.2.2).
    assert isinstance(down, PeerDown)
    assert (down.peer_ip, down.peer_asn, down.source) == (
        "127.0.0.1",
        PEER_ASN,
        "session:127.0.0.1",
    )
    assert speaker.stats.actions == {"treat-as-withdraw": 2, "session-reset": 1}
    assert speaker.stats.errors == 0 and speaker.stats.peer_downs == 1
    assert speaker.stats.records == 5  # the five UPDATEs that had a valid header


def test_wrong_asn_gets_bad_peer_as() -> None:
    speaker, got, notification = run(64511, [])
    assert notification == Notification(2, 2)  # OPEN message error, Bad Peer AS
    assert got == [] and not speaker.established


def test_second_session_with_the_same_neighbour_is_refused() -> None:
    """RFC 4271 section 6.8: the duplicate gets Cease 6/7; the first session keeps its routes."""

    async def scenario() -> tuple[Notification, list[FeedItem]]:
        speaker = BgpSpeaker(65010, "192.0.2.10", peers={"127.0.0.1": PEER_ASN}, hold_time=9)
        await speaker.listen("127.0.0.1", 0)
        port = speaker._servers[0].sockets[0].getsockname()[1]
        hello = Open(PEER_ASN, 9, "192.0.2.1", frozenset({(1, 1)}), asn4=True).encode()
        sessions = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(hello + KEEPALIVE)
            await read_message(reader)  # the speaker's OPEN
            sessions.append((reader, writer))
        first_writer = sessions[0][1]
        first_writer.write(golden("ipv4_as4_set_communities"))
        mtype, body = await read_message(sessions[1][0])
        while mtype != MSG_NOTIFICATION:  # KEEPALIVE (OpenConfirm), then the refusal
            mtype, body = await read_message(sessions[1][0])
        got = [await anext(speaker.updates())]
        assert "127.0.0.1" in speaker.established
        for _, writer in sessions:
            writer.close()
        await speaker.close()
        return Notification.decode(body), got

    notification, got = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert notification == Notification(6, 7)
    assert [(str(u.prefix), u.announce) for u in got if isinstance(u, Update)] == [
        ("203.0.113.0/24", False)
    ]


def test_an_unreachable_neighbour_is_a_warning_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 16: a refused or unanswered connection says why, at WARNING, and once it has
    lasted a hold time the neighbour is down (a peer-down event in guard watch)."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario() -> None:
        speaker = BgpSpeaker(65010, "192.0.2.10", peers={"127.0.0.1": PEER_ASN}, hold_time=3)
        speaker.connect("127.0.0.1", port, retry=0.05)
        while "2 attempts failed" not in caplog.text:
            await asyncio.sleep(0.01)
        assert speaker.peers_down() == {}  # not yet: down for less than a hold time
        while not speaker.peers_down():
            await asyncio.sleep(0.05)
        assert speaker.peers_down() == {
            "BGP neighbour 127.0.0.1": "BGP neighbour 127.0.0.1 unreachable: connection "
            "refused: BGP is not listening there, or not for our address"
        }
        await speaker.close()

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.session"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert f"BGP neighbour 127.0.0.1 port {port} unreachable: connection refused" in caplog.text
    assert connect_failure(TimeoutError(), signed=True).endswith(
        "check the TCP-MD5 password on both routers"
    )


async def gr_session(port: int, gr: GracefulRestart | None) -> tuple[Any, Any]:
    """A session as AS PEER_ASN offering graceful restart `gr` for IPv4 unicast."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hello = Open(PEER_ASN, 9, "192.0.2.1", frozenset({(1, 1)}), True, graceful_restart=gr)
    writer.write(hello.encode() + KEEPALIVE)
    mtype, body = await read_message(reader)
    assert mtype == MSG_OPEN and Open.decode(body).graceful_restart is not None
    # KEEPALIVE, then our End-of-RIB for IPv4 unicast (RFC 4724 section 2).
    assert await read_message(reader) == (MSG_KEEPALIVE, b"")
    assert await read_message(reader) == (MSG_UPDATE, bytes(4))
    return reader, writer


def test_graceful_restart_of_a_crafted_neighbour() -> None:
    """TCP lost: restarting (no PeerDown); back with End-of-RIB: EndOfRib. Cease with the N
    bit (RFC 8538): restarting; Hard Reset, or no N bit: PeerDown. Not back within its restart
    time: PeerDown."""

    async def next_item(speaker: BgpSpeaker) -> FeedItem:
        return await asyncio.wait_for(anext(speaker.updates()), 5)

    async def scenario() -> None:
        speaker = BgpSpeaker(65010, "192.0.2.10", peers={"127.0.0.1": PEER_ASN}, hold_time=9)
        await speaker.listen("127.0.0.1", 0)
        port = speaker._servers[0].sockets[0].getsockname()[1]
        n_bit = GracefulRestart(5, notification=True, families=((1, 1, 0x80),))
        try:
            _, writer = await gr_session(port, n_bit)
            writer.close()
            assert isinstance(await next_item(speaker), PeerRestarting)
            _, writer = await gr_session(port, n_bit)
            writer.write(golden("ipv4_as4_set_communities") + encode_message(MSG_UPDATE, bytes(4)))
            while not isinstance(item := await next_item(speaker), EndOfRib):
                assert isinstance(item, Update)
            assert (item.peer_ip, item.version) == ("127.0.0.1", 4)
            writer.write(Notification(6, 2).encode())  # Cease: with N, a restart too
            assert isinstance(await next_item(speaker), PeerRestarting)
            _, writer = await gr_session(port, n_bit)
            writer.write(Notification(6, 9).encode())  # Hard Reset
            assert isinstance(await next_item(speaker), PeerDown)
            _, writer = await gr_session(port, GracefulRestart(1, families=((1, 1, 0),)))
            writer.write(Notification(6, 2).encode())  # no N bit: RFC 4724 alone
            assert isinstance(await next_item(speaker), PeerDown)
            _, writer = await gr_session(port, GracefulRestart(1, families=((1, 1, 0),)))
            writer.close()
            assert isinstance(await next_item(speaker), PeerRestarting)
            assert isinstance(await next_item(speaker), PeerDown)  # after its 1 s
        finally:
            await speaker.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_every_session_end_says_who_ended_it_and_why(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 16: no more "0 bytes read on a total of undefined expected bytes"."""

    async def established(port: int, hold: int = 9) -> tuple[Any, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(Open(PEER_ASN, hold, "192.0.2.1", frozenset({(1, 1)}), True).encode())
        writer.write(KEEPALIVE)
        await read_message(reader)  # OPEN
        return reader, writer

    async def ended(count: int) -> None:
        while caplog.text.count(" ended: ") < count:
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        speaker = BgpSpeaker(65010, "192.0.2.10", peers={"127.0.0.1": PEER_ASN}, hold_time=9)
        await speaker.listen("127.0.0.1", 0)
        port = speaker._servers[0].sockets[0].getsockname()[1]
        _, writer = await established(port)
        writer.write(Notification(6, 2, b"\x0bmaintenance").encode())
        await ended(1)
        _, writer = await established(port)
        writer.close()
        await ended(2)
        _, writer = await established(port, hold=3)  # then silence
        await ended(3)
        reader, writer = await established(port)
        await asyncio.sleep(0.1)
        await speaker.close()
        while (await read_message(reader))[0] != MSG_NOTIFICATION:
            pass
        writer.close()

    with caplog.at_level(logging.INFO, "bgp_guard.feeds.session"):
        asyncio.run(asyncio.wait_for(scenario(), 20))
    who = f"BGP session with 127.0.0.1 AS{PEER_ASN} ended: "
    for why in (
        'closed by the neighbour: NOTIFICATION 6/2 Cease, Administrative Shutdown: "maintenance"',
        "the neighbour closed the TCP connection without a NOTIFICATION",
        "closed by us: hold timer expired (no message for 3 s); sent NOTIFICATION 4/0 Hold "
        "Timer Expired",
        "closed by us: the guard is stopping; sent NOTIFICATION 6/2 Cease, Administrative Shutdown",
    ):
        assert who + why in caplog.text
    assert "undefined expected bytes" not in caplog.text


def test_long_lived_graceful_restart_keeps_routes_past_the_restart_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RFC 9494: restart time 0 but a long-lived stale time of 1 s: the routes stay for
    that second, then go."""

    async def scenario() -> list[FeedItem]:
        speaker = BgpSpeaker(65010, "192.0.2.10", peers={"127.0.0.1": PEER_ASN}, hold_time=9)
        await speaker.listen("127.0.0.1", 0)
        port = speaker._servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        hello = Open(
            PEER_ASN,
            9,
            "192.0.2.1",
            frozenset({(1, 1)}),
            True,
            graceful_restart=GracefulRestart(0, families=((1, 1, 0x80),)),
            long_lived=((1, 1, 0x80, 1),),
        )
        writer.write(hello.encode() + KEEPALIVE)
        assert Open.decode((await read_message(reader))[1]).long_lived == ()
        await read_message(reader)  # KEEPALIVE
        writer.close()
        try:
            return [await asyncio.wait_for(anext(speaker.updates()), 5) for _ in range(2)]
        finally:
            await speaker.close()

    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.session"):
        restarting, down = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert isinstance(restarting, PeerRestarting) and isinstance(down, PeerDown)
    assert down.time - restarting.time >= 0.9
    assert "long-lived RFC 9494" in caplog.text
