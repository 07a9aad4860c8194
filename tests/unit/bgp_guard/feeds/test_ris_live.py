"""RIS-live JSON lines -> Updates, on the shared sample and on broken lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bgp_guard.feeds import ris_live
from bgp_guard.feeds.ris_live import RisLiveFeed
from bgp_guard.update import PeerDown, Prefix, Update
from bgp_guard.wire import decode_update, split_message
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def sample() -> Path:
    return shared_data("bgp") / "ris-live-stream.json"


def test_sample_stream(sample: Path) -> None:
    feed = RisLiveFeed.from_file(sample)
    *updates, down = list(feed)
    # 7 lines: one UPDATE; a ris_error and a last line cut short (no closing brace) are
    # errors; the OPEN, NOTIFICATION and KEEPALIVE carry no routes; RIS_PEER_STATE "down"
    # means rrc01 dropped every route of that peer.
    assert feed.stats.as_dict() == {"records": 7, "updates": 1, "peer_downs": 1, "errors": 2}
    assert down == PeerDown(1553625081.88, "195.66.224.59", 24931, "ris-live")
    assert updates == [
        Update(
            1553627987.89,
            "72.22.223.9",
            11708,
            Prefix.parse("45.161.192.0/23"),
            True,
            (
                11708,
                32097,
                1299,
                52320,
                263009,
                263009,
                263009,
                263009,
                263009,
                52993,
                268481,
                268481,
            ),
            (),
            "72.22.223.9",
            "ris-live",
        )
    ]


def test_json_fields_agree_with_raw_bytes(sample: Path) -> None:
    data = json.loads(sample.read_text().splitlines()[0])["data"]
    raw = bytes.fromhex(data["raw"])
    _, start, end = split_message(raw)
    from_raw = decode_update(raw, start, end, asn4=True).updates(
        data["timestamp"], data["peer"], int(data["peer_asn"]), "ris-live"
    )
    assert list(RisLiveFeed([json.dumps({"type": "ris_message", "data": data})])) == from_raw


def message(**data: object) -> str:
    base: dict[str, object] = {
        "timestamp": 1.0,
        "peer": "192.0.2.1",
        "peer_asn": "64496",
        "type": "UPDATE",
    }
    return json.dumps({"type": "ris_message", "data": base | data})


def test_as_set_communities_and_withdrawals() -> None:
    line = message(
        path=[64496, 65001, [65002, 65003]],
        community=[[64496, 1]],
        announcements=[{"next_hop": "2001:db8::1", "prefixes": ["2001:db8:1::/48"]}],
        withdrawals=["198.51.100.0/24"],
    )
    withdrawn, announced = list(RisLiveFeed([line]))
    assert isinstance(withdrawn, Update) and isinstance(announced, Update)
    assert (withdrawn.prefix, withdrawn.announce) == (Prefix.parse("198.51.100.0/24"), False)
    assert announced.as_path == (64496, 65001, frozenset({65002, 65003}))
    assert announced.origin == frozenset({65002, 65003})
    assert announced.communities == ((64496, 1),)
    assert announced.next_hop == "2001:db8::1"


BAD_LINES = [
    "{not json",
    "[1, 2]",
    json.dumps({"type": "ris_message", "data": "x"}),
    message(withdrawals=["198.51.100.1/24"]),  # host bits set
    message(withdrawals=["not a prefix"]),
    message(peer_asn="AS64496"),
    message(timestamp=None),
    message(path=[64496, "x"], announcements=[{"prefixes": ["192.0.2.0/24"]}]),
    message(community=[[1, 2, 3]], announcements=[{"prefixes": ["192.0.2.0/24"]}]),
    message(announcements=[{"prefixes": "192.0.2.0/24"}]),
    json.dumps({"type": "ris_message", "data": {"type": "UPDATE"}}),
    json.dumps({"type": "ris_message", "data": {"type": "RIS_PEER_STATE", "state": "down"}}),
    "\udcff",
]


def test_bad_lines_are_counted_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = message(withdrawals=["192.0.2.0/24"])
    lines = [good, *BAD_LINES, "", good]
    feed = RisLiveFeed(lines, "test-stream")
    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.ris-live"):
        updates = list(feed)
    assert len(updates) == 2
    assert feed.stats.as_dict() == {
        "records": 2 + len(BAD_LINES),
        "updates": 2,
        "peer_downs": 0,
        "errors": len(BAD_LINES),
    }
    for number in range(2, 2 + len(BAD_LINES)):
        assert f"test-stream line {number}:" in caplog.text


def test_a_filter_keeps_only_the_updates_wanted(caplog: pytest.LogCaptureFixture) -> None:
    ours = Prefix.parse("192.0.2.0/24")
    lines = [
        message(path=[64496, 64500], announcements=[{"next_hop": "192.0.2.1", "prefixes": ["198.51.100.0/24"]}]),
        message(withdrawals=["198.51.100.0/24", "192.0.2.128/25"]),  # one of them is wanted
        message(path=[64496], announcements=[{"next_hop": "192.0.2.1", "prefixes": ["10.0.0.0/33"]}]),
        json.dumps({"type": "ris_message", "data": {"type": "RIS_PEER_STATE", "state": "down",
                    "timestamp": 2.0, "peer": "192.0.2.1", "peer_asn": "64496"}}),
    ]  # fmt: skip
    feed = RisLiveFeed([line.encode() for line in lines], wanted=ours.covers)
    items = list(feed)
    assert [(type(i).__name__, str(getattr(i, "prefix", ""))) for i in items] == [
        ("Update", "192.0.2.128/25"),  # the other prefix of its line is dropped
        ("PeerDown", ""),
    ]
    # the unparsable prefix was not skipped: decoding reported it
    assert feed.stats.as_dict() == {
        "records": 4, "updates": 1, "peer_downs": 1, "errors": 1, "skipped": 1, "dropped": 1,
    }  # fmt: skip
    assert "10.0.0.0/33" in caplog.text


def test_a_file_is_read_in_chunks_that_split_lines_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [message(withdrawals=[f"192.0.2.{n}/32"]) for n in range(6)]
    lines[3] = "{cut short"
    path = tmp_path / "ris.json"
    path.write_bytes(("\r\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:])).encode())
    monkeypatch.setattr(ris_live, "_CHUNK", 7)  # lines longer than a chunk, and parts of one
    feed = RisLiveFeed.from_file(path)
    assert [str(u.prefix) for u in feed if isinstance(u, Update)] == [
        "192.0.2.0/32", "192.0.2.1/32", "192.0.2.2/32", "192.0.2.4/32", "192.0.2.5/32",
    ]  # fmt: skip
    assert feed.stats.as_dict() == {"records": 6, "updates": 5, "peer_downs": 0, "errors": 1}
    assert f"{path} line 4:" in caplog.text  # the blank line 5 counts in the numbering


def test_a_line_the_typed_decoder_refuses_gets_the_same_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lines msgspec refuses go to `decode`, whose messages name the problem."""
    lines = [
        message(peer_asn="AS64496", withdrawals=["192.0.2.0/24"]),
        message(path=[64496, 2**32], announcements=[{"prefixes": ["192.0.2.0/24"]}]),
        message(community=[[64496, 65536]], announcements=[{"prefixes": ["192.0.2.0/24"]}]),
        message(withdrawals=["192.0.2.1/24"]),
    ]
    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.ris-live"):
        assert list(RisLiveFeed([line.encode() for line in lines], "s")) == []
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "ASN 'AS64496' is not a number",
        "ASN 4294967296 is outside 0..4294967295",
        "community [64496, 65536] has a part above 65535",
        "bad prefix '192.0.2.1/24': 192.0.2.1/24 has host bits set",
    ]
