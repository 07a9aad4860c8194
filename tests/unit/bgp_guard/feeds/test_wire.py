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
    WireError,
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
