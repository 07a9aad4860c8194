"""The length guard in front of os-ken: every well-formed message passes (and os-ken agrees
it is well-formed), every zero or overlong length is refused before os-ken loops on it."""

from __future__ import annotations

import contextlib
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.ofproto import ofproto_protocol, ofproto_v1_3_parser

from controller import ofguard
from controller.ofcheck import Malformed, check, message_name
from tests.openflow_samples import (
    bad_variants,
    samples,
    zero_length_flow_stats,
    zero_length_group_desc,
)

SAMPLES = samples()
BAD = bad_variants()


def _parse(data: bytes) -> Any:
    version, type_, length, xid = struct.unpack_from("!BBHI", data)
    dp = ofproto_protocol.ProtocolDesc(version)
    return ofproto_v1_3_parser.msg_parser(dp, version, type_, length, xid, bytearray(data))


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Fail (rather than hang the run) if os-ken loops."""

    def expired(*_: object) -> None:
        raise TimeoutError("os-ken's parser did not return: it loops on this message")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_well_formed_message_passes_and_os_ken_reads_it(name: str) -> None:
    data = SAMPLES[name].data
    check(data)
    with _deadline(5):
        parsed = _parse(data)
    assert parsed is not None and parsed.msg_len == len(data)


@pytest.mark.parametrize(("name", "data"), BAD, ids=[name for name, _ in BAD])
def test_every_zero_or_overlong_length_is_refused(name: str, data: bytes) -> None:
    with pytest.raises(Malformed):
        check(data)


def test_the_messages_from_issue_17_are_refused_and_say_why() -> None:
    flow = zero_length_flow_stats()
    assert len(flow) == 72
    with pytest.raises(Malformed, match="MULTIPART_REPLY FLOW entry 1 at byte 16: length 0"):
        check(flow)
    with pytest.raises(Malformed, match="GROUP_DESC entry 1 at byte 16: length 0"):
        check(zero_length_group_desc())
    assert message_name(flow) == "MULTIPART_REPLY_FLOW"


def test_every_multipart_type_and_structure_is_covered() -> None:
    kinds = {name for name in SAMPLES if name.startswith("mp_")}
    assert len(kinds) == 15  # OpenFlow 1.3 multipart types 0-13 and experimenter
    covered = {f.what for wire in SAMPLES.values() for f in wire.lengths}
    assert {
        "flow stats",
        "match",
        "OXM 3",
        "apply_actions",
        "output",
        "set_field",
        "set_field OXM",
        "nx ct",
        "bucket",
        "group desc",
        "group stats",
        "meter stats",
        "meter config",
        "meter band",
        "table features",
        "instructions property",
        "id",
        "queue",
        "queue property",
        "hello element",
        "packet_in2 property",
    } <= covered


def test_messages_a_switch_never_sends_and_other_versions_are_refused() -> None:
    flow_mod = bytes([4, 14, 0, 8, 0, 0, 0, 1])
    with pytest.raises(Malformed, match="not one a switch sends"):
        check(flow_mod)
    with pytest.raises(Malformed, match="version 0x7"):
        check(bytes([7, 0, 0, 8, 0, 0, 0, 1]))
    with pytest.raises(Malformed, match="version 0x5 message type 10"):
        check(bytes([5, 10, 0, 8, 0, 0, 0, 1]))
    check(bytes([1, 0, 0, 8, 0, 0, 0, 1]))  # an OpenFlow 1.0 HELLO is fine
    with pytest.raises(Malformed, match="header length 9"):
        check(bytes([4, 2, 0, 9, 0, 0, 0, 1]))


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    changes=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_whatever_passes_the_check_os_ken_parses_to_an_end(
    name: str, changes: list[tuple[int, int]]
) -> None:
    data = bytearray(SAMPLES[name].data)
    for where, value in changes:
        data[8 + where % (len(data) - 8)] = value  # keep the header: framing is os-ken's
    try:
        check(bytes(data))
    except Malformed:
        return
    # A parse error is caught by the guard; only a loop would be fatal.
    with _deadline(5), contextlib.suppress(Exception):
        _parse(bytes(data))


class _Datapath:
    def __init__(self) -> None:
        self.state, self.id, self.address = MAIN_DISPATCHER, 0xC0FFEE, ("192.0.2.9", 40000)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        self.state = DEAD_DISPATCHER


def _guarded(dp: _Datapath, data: bytes) -> Any:
    version, type_, length, xid = struct.unpack_from("!BBHI", data)
    return ofguard._guarded_msg(dp, version, type_, length, xid, bytearray(data))


def test_the_guard_counts_logs_and_closes_on_a_bad_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = ofguard.MALFORMED.labels("MULTIPART_REPLY_GROUP_DESC")
    before = counter._value.get()
    dp = _Datapath()
    assert _guarded(dp, zero_length_group_desc()) is None
    assert dp.closed == 1 and counter._value.get() == before + 1
    assert "closing the OpenFlow connection from 192.0.2.9:40000 (dpid 0xc0ffee)" in caplog.text
    assert "length 0" in caplog.text
    # What the closed connection had already sent is not parsed, and not counted again.
    assert _guarded(dp, SAMPLES["mp_port_desc"].data) is None
    assert counter._value.get() == before + 1


def test_the_guard_passes_good_messages_to_os_ken() -> None:
    dp = _Datapath()
    msg = _guarded(dp, SAMPLES["mp_group_desc"].data)
    assert type(msg).__name__ == "OFPGroupDescStatsReply" and dp.closed == 0
    assert [g.group_id for g in msg.body] == [200, 201]
