"""Golden tests for BGP UPDATE decoding: raw wire hex <-> expected updates, one file per case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.update import PathElement, Update
from bgp_guard.wire import (
    ADD_PATH_RECEIVE,
    ADD_PATH_SEND,
    Notification,
    Open,
    TreatAsWithdraw,
    WireError,
    check_header,
    decode_header,
    decode_update,
    merge_as4_path,
    split_message,
)

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))


def as_json(update: Update) -> dict[str, Any]:
    def element(e: PathElement) -> int | list[int]:
        return sorted(e) if isinstance(e, frozenset) else e

    return {
        "prefix": str(update.prefix),
        "announce": update.announce,
        "as_path": [element(e) for e in update.as_path],
        "communities": [list(c) for c in update.communities],
        "large_communities": [list(c) for c in update.large_communities],
        "next_hop": update.next_hop,
        "path_id": update.path_id,
    }


@pytest.mark.parametrize("case", GOLDEN, ids=lambda p: p.stem)
def test_golden(case: Path) -> None:
    doc = json.loads(case.read_text())
    message = bytes.fromhex(doc["message"])
    mtype, start, end = split_message(message)
    assert mtype == 2
    if "error" in doc:
        with pytest.raises(WireError) as err:
            decode_update(message, start, end, asn4=doc["asn4"], add_path=doc["add_path"])
        assert (err.value.reason, err.value.offset) == (doc["error"], doc["offset"])
        return
    msg = decode_update(message, start, end, asn4=doc["asn4"], add_path=doc["add_path"])
    updates = msg.updates(1.5, "192.0.2.9", 65009, "golden")
    assert [as_json(u) for u in updates] == doc["updates"]
    assert {(u.time, u.peer_ip, u.peer_asn, u.source) for u in updates} == {
        (1.5, "192.0.2.9", 65009, "golden")
    }


def test_golden_cases_exist() -> None:
    assert len(GOLDEN) >= 10


def test_as4_path_longer_than_as_path_is_ignored() -> None:
    # RFC 6793 section 4.2.3: such an AS4_PATH cannot be right; keep AS_PATH.
    assert merge_as4_path((64496, 23456), (1, 2, 3)) == (64496, 23456)


def test_header_checks() -> None:
    with pytest.raises(WireError, match="marker"):
        split_message(b"\x00" * 19)
    with pytest.raises(WireError, match="does not fit"):
        split_message(b"\xff" * 16 + b"\x00\x30\x02")
    with pytest.raises(WireError, match="truncated BGP message header"):
        split_message(b"\xff" * 10)


def test_open_from_a_real_collector() -> None:
    # The OPEN in the RIS-live sample (rrc00, AS12654), raw bytes as RIS published them.
    raw = bytes.fromhex(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00350104316E00B4C100041C1802060104000100010206010400020001020641040000316E"
    )
    mtype, start, end = split_message(raw)
    assert mtype == 1
    assert Open.decode(raw[start:end]) == Open(
        12654, 180, "193.0.4.28", frozenset({(1, 1), (2, 1)}), asn4=True
    )


def test_open_round_trip_with_4_byte_asn() -> None:
    sent = Open(4200000001, 90, "192.0.2.1", frozenset({(1, 1), (2, 1)}), asn4=True)
    raw = sent.encode()
    _, start, end = split_message(raw)
    assert raw[start + 1 : start + 3] == (23456).to_bytes(2)  # AS_TRANS, RFC 6793 section 9
    assert Open.decode(raw[start:end]) == sent


def test_notification_round_trip() -> None:
    raw = Notification(2, 2, b"\x01").encode()
    _, start, end = split_message(raw)
    assert Notification.decode(raw[start:end]) == Notification(2, 2, b"\x01")
    assert str(Notification(6, 5)) == "NOTIFICATION 6/5 Cease, Connection Rejected"
    shutdown = Notification(6, 2, b"\x0bmaintenance")  # RFC 9003 shutdown communication
    assert str(shutdown) == 'NOTIFICATION 6/2 Cease, Administrative Shutdown: "maintenance"'
    assert str(Notification(4, 0)) == "NOTIFICATION 4/0 Hold Timer Expired"
    assert str(Notification(3, 1, b"\x01")) == (
        "NOTIFICATION 3/1 UPDATE Message Error, Malformed Attribute List (data 01)"
    )
    assert Notification.decode(b"") == Notification(0, 0)  # never raises


def test_add_path_negotiation() -> None:
    # RFC 7911 section 4: path ids flow where one side sends and the other receives.
    ours = Open(
        65010, 90, "192.0.2.10", add_path=((1, 1, ADD_PATH_RECEIVE), (2, 1, ADD_PATH_RECEIVE))
    )
    theirs = Open(65001, 90, "192.0.2.1", add_path=((1, 1, ADD_PATH_SEND | ADD_PATH_RECEIVE),))
    _, start, end = split_message(theirs.encode())
    assert Open.decode(theirs.encode()[start:end]) == theirs
    assert theirs.sends_path_ids_to(ours) == {1}
    assert ours.sends_path_ids_to(theirs) == frozenset()


# RFC 7606 outcomes, on hand-built UPDATE bodies.
ORIGIN_IGP = bytes((0x40, 1, 1, 0))
AS_PATH_64500 = bytes((0x40, 2, 6, 2, 1)) + (64500).to_bytes(4, "big")
NEXT_HOP = bytes((0x40, 3, 4, 192, 0, 2, 1))
NLRI = bytes((24, 198, 51, 100))  # 198.51.100.0/24
GOOD = ORIGIN_IGP + AS_PATH_64500 + NEXT_HOP


def update_body(attrs: bytes, nlri: bytes = NLRI, withdrawn: bytes = b"") -> bytes:
    return (
        len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big") + attrs + nlri
    )


def mp_reach(afi: int, safi: int = 1, flags: int = 0x80) -> bytes:
    value = afi.to_bytes(2, "big") + bytes((safi, 16)) + bytes(16) + b"\x00"
    value += bytes((48, 0x20, 0x01, 0x0D, 0xB8, 0, 1))  # 2001:db8:1::/48
    return bytes((flags, 14, len(value))) + value


def withdrawn_by(body: bytes, **kw: bool) -> list[tuple[str, bool]]:
    with pytest.raises(TreatAsWithdraw) as err:
        decode_update(body, asn4=True, mandatory=True, **kw)
    assert err.value.message is not None
    return [(str(u.prefix), u.announce) for u in err.value.message.withdrawals(0, "x", 1, "t")]


@pytest.mark.parametrize(
    ("attrs", "subcode"),
    [
        (bytes((0xE0, 1, 1, 0)) + AS_PATH_64500 + NEXT_HOP, 4),  # ORIGIN flags 0xe0
        (ORIGIN_IGP + bytes((0x80, 2, 6, 2, 1)) + bytes(4) + NEXT_HOP, 4),  # AS_PATH 0x80
        (bytes((0x40, 1, 1, 7)) + AS_PATH_64500 + NEXT_HOP, 6),  # ORIGIN 7
        (ORIGIN_IGP + bytes((0x40, 2, 2, 9, 0)) + NEXT_HOP, 11),  # empty/unknown segment
        (GOOD + bytes((0xC0, 8, 3, 1, 2, 3)), 5),  # COMMUNITIES of 3 bytes
        (GOOD + bytes((0x80, 4, 2, 0, 0)), 5),  # MULTI_EXIT_DISC of 2 bytes
        (ORIGIN_IGP + AS_PATH_64500, 3),  # NEXT_HOP missing
        (GOOD + bytes((0x40, 5, 200)), 5),  # attribute runs past the list (section 4)
    ],
)
def test_rfc7606_treat_as_withdraw(attrs: bytes, subcode: int) -> None:
    with pytest.raises(TreatAsWithdraw) as err:
        decode_update(update_body(attrs), asn4=True, mandatory=True)
    assert err.value.subcode == subcode
    assert withdrawn_by(update_body(attrs)) == [("198.51.100.0/24", False)]


def test_rfc7606_treat_as_withdraw_covers_mp_reach() -> None:
    body = update_body(mp_reach(2) + bytes((0xE0, 1, 1, 0)) + AS_PATH_64500, nlri=b"")
    assert withdrawn_by(body) == [("2001:db8:1::/48", False)]


def test_rfc7606_attribute_discard() -> None:
    extra = bytes((0x40, 6, 1, 0))  # ATOMIC_AGGREGATE must be empty (section 7.6)
    extra += bytes((0xC0, 7, 3, 1, 2, 3))  # AGGREGATOR of 3 bytes (section 7.7)
    extra += ORIGIN_IGP.replace(b"\x00", b"\x02")  # a second ORIGIN (section 3 g)
    msg = decode_update(update_body(GOOD + extra), asn4=True, mandatory=True)
    assert [code for code, _ in msg.attrs.discarded] == [6, 7, 1]
    assert msg.attrs.origin == 0  # the first ORIGIN counts
    assert [(str(u.prefix), u.announce) for u in msg.updates(0, "x", 1, "t")] == [
        ("198.51.100.0/24", True)
    ]


@pytest.mark.parametrize(
    ("attrs", "subcode"),
    [
        (GOOD + mp_reach(2) + mp_reach(2), 1),  # MP_REACH_NLRI twice (section 3 g)
        (GOOD + bytes((0x40, 99, 0)), 2),  # unrecognized well-known attribute
        (GOOD + bytes((0x80, 14, 4, 0, 2, 1, 40)), 9),  # next hop runs past (section 7.11)
    ],
)
def test_rfc7606_session_reset(attrs: bytes, subcode: int) -> None:
    with pytest.raises(WireError) as err:
        decode_update(update_body(attrs), asn4=True, mandatory=True)
    assert not isinstance(err.value, TreatAsWithdraw)
    assert err.value.subcode == subcode


def test_malformed_nlri_is_a_session_reset() -> None:
    with pytest.raises(WireError) as err:
        decode_update(update_body(GOOD, nlri=bytes((33, 1, 2, 3, 4, 5))), asn4=True)
    assert err.value.subcode == 10 and not isinstance(err.value, TreatAsWithdraw)


def test_mp_reach_of_an_unknown_family_is_skipped() -> None:
    msg = decode_update(update_body(GOOD + mp_reach(99)), asn4=True, mandatory=True)
    assert msg.attrs.other_families == ((99, 1),) and msg.attrs.mp_reach == []
    assert [str(u.prefix) for u in msg.updates(0, "x", 1, "t")] == ["198.51.100.0/24"]


def test_zero_padding_is_not_routes() -> None:
    """The 5,000-byte probe of issue 17: NLRI of zeros (0.0.0.0/0 again and again) without
    attributes is treat-as-withdraw, one withdrawal of 0.0.0.0/0."""
    assert withdrawn_by(update_body(b"", nlri=bytes(4950))) == [("0.0.0.0/0", False)]


def test_message_lengths() -> None:
    big = b"\xff" * 16 + (5000).to_bytes(2, "big") + b"\x02"
    with pytest.raises(WireError) as err:
        decode_header(big, 0, 4096)
    assert (err.value.subcode, err.value.data) == (2, b"\x13\x88")
    assert decode_header(big, 0, 65535) == (2, 5000)
    for mtype, length in ((3, 19), (4, 20), (1, 28), (2, 22), (1, 5000)):
        with pytest.raises(WireError) as err:
            check_header(mtype, length, frozenset({1, 2, 3, 4}))
        assert (err.value.subcode, err.value.data) == (2, length.to_bytes(2, "big"))
    with pytest.raises(WireError) as err:
        check_header(5, 23, frozenset({1, 2, 3, 4}))
    assert (err.value.subcode, err.value.data) == (3, b"\x05")


def test_open_extended_message_and_unsupported_parameters() -> None:
    ours = Open(65010, 90, "192.0.2.10", frozenset({(1, 1)}), True, extended_message=True)
    assert Open.decode(ours.encode()[19:]).extended_message
    body = bytearray(Open(65010, 90, "192.0.2.10").encode()[19:])
    body[9] = 3
    body += bytes((1, 1, 0))  # parameter type 1 (authentication, long deprecated)
    assert Open.decode(bytes(body)).unsupported_parameters == (1,)
