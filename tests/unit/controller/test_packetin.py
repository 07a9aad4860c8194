"""Packet-ins read without os-ken: the fields the app uses are the ones os-ken's own parser
finds, batches keep each switch's order, and the guard routes them (no switch needed)."""

from __future__ import annotations

import struct
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER
from os_ken.ofproto import ofproto_protocol, ofproto_v1_3, ofproto_v1_3_parser

from controller import ofguard
from controller.ofcheck import check
from controller.packetin import Inbox, PacketIn, parse
from tests.openflow_samples import ARP, METADATA, Wire, match, message, oxm, packet_in

DP = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)


def _in_port(number: int) -> Wire:
    return oxm(0, struct.pack("!I", number))


@settings(max_examples=60, deadline=None)
@given(
    in_port=st.one_of(st.none(), st.integers(1, 0xFFFFFF00)),
    before=st.booleans(),
    frame=st.binary(min_size=0, max_size=200),
    reason=st.integers(0, 2),
    table_id=st.integers(0, 10),
    cookie=st.integers(0, 2**64 - 1),
)
def test_the_fields_read_are_os_kens(
    in_port: int | None, before: bool, frame: bytes, reason: int, table_id: int, cookie: int
) -> None:
    fields = [_in_port(in_port)] if in_port is not None else []
    fields = [METADATA, *fields] if before else [*fields, METADATA]
    m = match(*fields)
    head = Wire(struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), reason, table_id, cookie))
    data = message(10, head + m + Wire(b"\0\0" + frame)).data
    check(data)
    ours = parse(DP, data)
    theirs = ofproto_v1_3_parser.OFPPacketIn.parser(DP, 4, 10, len(data), 7, bytearray(data))
    assert (ours.reason, ours.table_id, ours.cookie) == (
        theirs.reason,
        theirs.table_id,
        theirs.cookie,
    )
    assert ours.in_port == theirs.match.get("in_port")
    assert ours.data == bytes(theirs.data) == frame


def _pin(port: int) -> bytes:
    return packet_in(match(_in_port(port)), ARP).data


def test_batches_keep_order_and_a_full_batch_opens_the_next() -> None:
    posted: list[list[PacketIn]] = []
    inbox = Inbox(posted.append, limit=3)
    for port in range(1, 6):
        inbox.put("dp", _pin(port))
    # Two events: one for the first three, one for the rest, in arrival order.
    assert [[p.in_port for p in b] for b in posted] == [[1, 2, 3], [4, 5]]
    inbox.take(posted[1])
    inbox.put("dp", _pin(6))  # the app has taken that batch: a new one
    inbox.cut()
    inbox.put("dp", _pin(7))  # another message came in between: a new one
    assert [[p.in_port for p in b] for b in posted[2:]] == [[6], [7]]


def test_a_batch_taken_by_the_app_gets_nothing_more() -> None:
    posted: list[list[PacketIn]] = []
    inbox = Inbox(posted.append)
    inbox.put("dp", _pin(1))
    taken = inbox.take(posted[0])
    inbox.put("dp", _pin(2))
    assert [p.in_port for p in taken] == [1] and len(posted) == 2


def test_many_receive_threads_lose_nothing() -> None:
    posted: list[list[PacketIn]] = []
    lock = threading.Lock()

    def post(batch: list[PacketIn]) -> None:
        with lock:
            posted.append(batch)

    inbox = Inbox(post, limit=7)
    data = _pin(1)

    def receive(dp: str) -> None:
        for _ in range(500):
            inbox.put(dp, data)

    threads = [threading.Thread(target=receive, args=(f"dp{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(b) for b in posted) == 2000 and all(len(b) <= 7 for b in posted)


class _Datapath:
    def __init__(self, state: str) -> None:
        self.state, self.id, self.address, self.closed = state, 1, ("192.0.2.9", 40000), 0

    def close(self) -> None:
        self.closed += 1


def test_the_guard_routes_checked_packet_ins_to_the_inbox() -> None:
    posted: list[list[PacketIn]] = []
    inbox = Inbox(posted.append)
    data = _pin(3)
    version, type_, length, xid = struct.unpack_from("!BBHI", data)
    try:
        ofguard.install(inbox)
        dp = _Datapath(MAIN_DISPATCHER)
        assert ofguard._guarded_msg(dp, version, type_, length, xid, bytearray(data)) is None
        assert [p.in_port for b in posted for p in b] == [3] and posted[0][0].datapath is dp
        # Before the handshake is done, a packet-in goes nowhere (as os-ken's handlers).
        early = _Datapath(CONFIG_DISPATCHER)
        ofguard._guarded_msg(early, version, type_, length, xid, bytearray(data))
        assert sum(map(len, posted)) == 1
        # A malformed one still closes its connection and reaches nobody.
        bad = bytearray(data)
        struct.pack_into("!H", bad, 26, 200)  # the match runs past the message
        ofguard._guarded_msg(dp, version, type_, length, xid, bad)
        assert dp.closed == 1 and sum(map(len, posted)) == 1
    finally:
        ofguard.install()
