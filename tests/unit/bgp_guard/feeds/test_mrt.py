"""MRT decoding against every shared RIS / RouteViews file.

Record counts come from SOURCES.md where it states them; the other figures and the spot
checks were cross-checked once against mrtparse (identical multisets of peer, prefix,
announce/withdraw, AS path and communities for every file).
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import io
import json
import logging
import struct
from collections import Counter
from pathlib import Path

import pytest

from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.update import PeerDown, Prefix, Update
from overcast import exitcodes
from overcast.cli import main
from overcast.metrics import REGISTRY
from tests.conftest import shared_data

# file: (records, updates, withdrawals, peer downs). Peer downs are the STATE_CHANGE records
# leaving Established: the 2016 file has 22 (6 -> 1); rrc06 (3 <-> 2) and the 2015 file
# (1 -> 2 -> 4 -> 5 -> 6) have state changes that never leave Established.
EXPECTED = {
    "ris-updates.20160811.1600.gz": (17_406, 41_212, 1_956, 22),
    "ris-rrc06.updates.1427846400.gz": (795, 1_557, 122, 0),
    "routeviews-jinx.updates.1427846400.bz2": (1_756, 8_611, 451, 0),
    "ris-updates.20070211.0141.gz": (23_394, 53_506, 2_270, 0),
    "ris-updates.et-header.2015.gz": (89_686, 577_740, 3, 0),
    "ris-updates.long_withdrawal.gz": (1, 4_096, 4_096, 0),
    "ris-bview.20020722.2337.gz": (115_521, 115_521, 0, 0),
    "ris-bview.ipv4_unicast_add_path.gz": (32, 62, 0, 0),
}
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def data() -> Path:
    return shared_data("bgp")


def split(feed: MrtFeed) -> tuple[list[Update], list[PeerDown]]:
    updates: list[Update] = []
    downs: list[PeerDown] = []
    for item in feed:
        if isinstance(item, PeerDown):
            downs.append(item)
        elif isinstance(item, Update):
            updates.append(item)
    return updates, downs


@functools.cache
def read_all(path: Path) -> tuple[MrtFeed, list[Update], list[PeerDown]]:
    """Each file is decoded once per test run (the largest takes over a second)."""
    feed = MrtFeed(path)
    return feed, *split(feed)


def read(path: Path) -> tuple[MrtFeed, list[Update]]:
    feed, updates, _ = read_all(path)
    return feed, updates


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts(data: Path, name: str) -> None:
    feed, updates, downs = read_all(data / name)
    records, n_updates, withdrawals, peer_downs = EXPECTED[name]
    assert feed.stats.as_dict() == {
        "records": records,
        "updates": n_updates,
        "peer_downs": peer_downs,
        "errors": 0,
    }
    assert (len(updates), len(downs)) == (n_updates, peer_downs)
    assert sum(not u.announce for u in updates) == withdrawals
    assert {u.source for u in updates} | {d.source for d in downs} <= {f"mrt:{name}"}


def test_bgp4mp_as4_spot_check(data: Path) -> None:
    _, updates = read(data / "ris-rrc06.updates.1427846400.gz")
    first = updates[0]
    assert first == Update(
        1427846404.0,
        "202.249.2.185",
        25152,
        Prefix.parse("192.108.199.0/24"),
        True,
        (25152, 2914, 1880),
        ((2914, 420), (2914, 1214), (2914, 2213), (2914, 3200)),
        "202.249.2.185",
        "mrt:ris-rrc06.updates.1427846400.gz",
    )
    v6 = [u for u in updates if u.prefix == Prefix.parse("2a02:2158::/32") and u.announce]
    assert {u.as_path for u in v6} == {
        (25152, 6939, 13237, 35226),
        (25152, 2497, 4725, 6939, 13237, 35226),
    }
    assert {u.peer_ip for u in v6} == {"2001:200:0:fe00::6249:0"}


def test_extended_timestamp_keeps_microseconds(data: Path) -> None:
    _, updates = read(data / "ris-updates.et-header.2015.gz")
    assert updates[0].time == pytest.approx(1445565695.584878, abs=1e-6)
    assert len({u.time for u in updates[:1000]}) > 10


def test_ipv6_mp_reach_next_hop(data: Path) -> None:
    _, updates = read(data / "ris-updates.20160811.1600.gz")
    first = updates[0]
    assert (first.peer_ip, first.peer_asn, str(first.prefix)) == (
        "2001:7f8:54::188",
        59689,
        "2804:14d::/40",
    )
    assert first.next_hop == "2001:7f8:54::10"
    assert first.as_path == (59689, 6939, 3356, 4230, 28573)


def test_long_withdrawal_is_all_of_one_ipv6_range(data: Path) -> None:
    _, updates = read(data / "ris-updates.long_withdrawal.gz")
    covering = Prefix.parse("2001:db8::/32")
    assert all(covering.covers(u.prefix) and u.prefix.length == 64 for u in updates)
    assert len({u.prefix for u in updates}) == 4096


def test_table_dump_v1(data: Path) -> None:
    _, updates = read(data / "ris-bview.20020722.2337.gz")
    assert updates[0].as_path == (1853, 1239, 80)
    assert str(updates[0].prefix) == "3.0.0.0/8"
    assert (updates[0].peer_ip, updates[0].peer_asn) == ("193.203.0.1", 1853)
    assert all(u.announce and u.time == 1027381055.0 for u in updates[:100])


def test_table_dump_v2_add_path(data: Path) -> None:
    _, updates = read(data / "ris-bview.ipv4_unicast_add_path.gz")
    first = updates[0]
    assert (str(first.prefix), first.path_id, first.peer_ip, first.peer_asn) == (
        "10.0.10.0/24",
        36,
        "10.0.15.1",
        65015,
    )
    assert first.as_path == (65015, 65014, 65013, 65012, 65011)
    # ADD-PATH: the same prefix from one peer under several path identifiers.
    ids = Counter((u.peer_ip, u.prefix) for u in updates)
    assert max(ids.values()) >= 2
    assert len({(u.peer_ip, u.prefix, u.path_id) for u in updates}) == len(updates)


def test_compression_by_magic_not_name(data: Path, tmp_path: Path) -> None:
    raw = gzip.decompress((data / "ris-rrc06.updates.1427846400.gz").read_bytes())
    expected, _ = split(MrtFeed.from_bytes(raw))
    for name, blob in [
        ("plain.gz", raw),
        ("bzipped", bz2.compress(raw)),
        ("gz.bz2", gzip.compress(raw)),
    ]:
        (tmp_path / name).write_bytes(blob)
        assert [(u.prefix, u.as_path) for u in split(MrtFeed(tmp_path / name))[0]] == [
            (u.prefix, u.as_path) for u in expected
        ]


def mrt_record(rtype: int, subtype: int, body: bytes, ts: int = 1) -> bytes:
    return struct.pack(">IHHI", ts, rtype, subtype, len(body)) + body


def test_bad_record_is_counted_logged_and_skipped(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = gzip.decompress((data / "ris-rrc06.updates.1427846400.gz").read_bytes())
    # A BGP4MP_MESSAGE_AS4 whose BGP message has a broken marker, between two good files' worth.
    bad = mrt_record(16, 4, struct.pack(">IIHH", 65001, 65002, 0, 1) + bytes(8) + b"\x00" * 19)
    feed = MrtFeed.from_bytes(raw + bad + raw, "spliced")
    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.mrt"):
        updates = list(feed)
    assert feed.stats.as_dict() == {
        "records": 2 * 795 + 1,
        "updates": 2 * 1557,
        "peer_downs": 0,
        "errors": 1,
    }
    assert len(updates) == 2 * 1557
    offset = len(raw) + 12 + 20  # record header, BGP4MP_AS4 header + addresses
    assert f"spliced byte {offset}: BGP marker is not all ones" in caplog.text


def test_truncated_file_ends_feed_with_one_error(data: Path) -> None:
    raw = gzip.decompress((data / "ris-rrc06.updates.1427846400.gz").read_bytes())
    feed = MrtFeed.from_bytes(raw[:-10])
    updates = list(feed)
    assert feed.stats.errors == 1
    assert feed.stats.records == 794
    assert 0 < len(updates) < 1557


def test_corrupt_gzip_is_an_error_not_a_crash(data: Path, tmp_path: Path) -> None:
    blob = bytearray((data / "ris-rrc06.updates.1427846400.gz").read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\x00" * 64
    (tmp_path / "broken.gz").write_bytes(bytes(blob))
    feed = MrtFeed(tmp_path / "broken.gz")
    list(feed)
    assert feed.stats.errors == 1


def test_counters_reach_prometheus(data: Path) -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"overcast_bgp_feed_{name}_total", {"feed": "mrt"}) or 0.0

    before = {n: sample(n) for n in ("records", "updates", "errors")}
    raw = gzip.decompress((data / "ris-rrc06.updates.1427846400.gz").read_bytes())
    feed = MrtFeed.from_bytes(raw + b"\x00" * 5)  # a truncated trailing header: one error
    list(feed)
    assert {n: sample(n) - before[n] for n in before} == {
        "records": 795,
        "updates": 1557,
        "errors": 1,
    }


# BGP4MP STATE_CHANGE (RFC 6396 section 4.4.1), built here: peer 192.0.2.1 AS64496, IPv4.
def state_change(old: int, new: int, asn4: bool = False) -> tuple[int, bytes]:
    asns = struct.pack(">IIHH" if asn4 else ">HHHH", 64496, 64497, 0, 1)
    body = asns + bytes([192, 0, 2, 1, 192, 0, 2, 99]) + struct.pack(">HH", old, new)
    return (5 if asn4 else 0), body


def announce_from(peer: int) -> bytes:
    """BGP4MP_MESSAGE_AS4 from 192.0.2.<peer>: announces 198.51.100.0/24 and /25."""
    message = bytes.fromhex(
        json.loads((GOLDEN / "ipv4_as4_set_communities.json").read_text())["message"]
    )
    head = struct.pack(">IIHH", 64490 + peer, 64497, 0, 1) + bytes([192, 0, 2, peer, 192, 0, 2, 99])
    return mrt_record(16, 4, head + message, ts=100)


def test_state_change_leaving_established_is_a_peer_down() -> None:
    records = [
        mrt_record(16, *state_change(6, 1), ts=10),  # Established -> Idle
        mrt_record(16, *state_change(1, 2), ts=11),  # Idle -> Connect: nothing to withdraw
        mrt_record(16, *state_change(5, 6, asn4=True), ts=12),  # coming up: nothing either
        mrt_record(16, *state_change(6, 3, asn4=True), ts=13),  # Established -> Active
        # BGP4MP_ET: the microsecond field first (RFC 6396 section 3).
        mrt_record(17, 0, struct.pack(">I", 250_000) + state_change(6, 1)[1], ts=14),
        mrt_record(16, 0, state_change(6, 1)[1][:-2], ts=15),  # new state cut off
    ]
    feed = MrtFeed.from_bytes(b"".join(records), "states")
    updates, downs = split(feed)
    assert updates == []
    assert downs == [
        PeerDown(10.0, "192.0.2.1", 64496, "mrt:states"),
        PeerDown(13.0, "192.0.2.1", 64496, "mrt:states"),
        PeerDown(14.25, "192.0.2.1", 64496, "mrt:states"),
    ]
    assert feed.stats.as_dict() == {"records": 6, "updates": 0, "peer_downs": 3, "errors": 1}


def test_real_ris_state_changes(data: Path) -> None:
    """rrc00, 2016-08-11 16:00: five route-server peers flap; the first goes down at 16:00:01."""
    _, _, downs = read_all(data / "ris-updates.20160811.1600.gz")
    assert downs[0] == PeerDown(
        1470931201.0, "37.49.232.25", 60427, "mrt:ris-updates.20160811.1600.gz"
    )
    assert Counter(d.peer_ip for d in downs) == {
        "37.49.237.31": 5,
        "2001:7f8:54::32": 5,
        "2001:7f8:54::1:31": 5,
        "2001:7f8:54:5::25": 4,
        "37.49.232.25": 3,
    }
    assert downs == sorted(downs, key=lambda d: d.time)


def test_replay_sees_dropped_peers_lose_visibility(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: three peers announce a monitored prefix, two sessions drop (recorded only
    as STATE_CHANGEs, no withdrawals), and `guard replay` reports the visibility loss."""
    down = [
        mrt_record(16, 0, struct.pack(">HHHH", 64490 + p, 64497, 0, 1)
                   + bytes([192, 0, 2, p, 192, 0, 2, 99]) + struct.pack(">HH", 6, 1), ts=200)
        for p in (1, 2)
    ]  # fmt: skip
    (tmp_path / "updates.mrt").write_bytes(b"".join([*map(announce_from, (1, 2, 3)), *down]))
    (tmp_path / "overcast.yaml").write_text(
        "sites: {}\nguard:\n  visibility_min_withdrawn: 2\n"
        "  prefixes: {198.51.100.0/24: {origins: [65001]}}\n"
    )
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["guard", "replay", "--json", "--config", str(tmp_path / "overcast.yaml"),
              str(tmp_path / "updates.mrt")])  # fmt: skip
    lost = [json.loads(line) for line in out.getvalue().splitlines()]
    lost = [e for e in lost if e["type"] == "visibility-loss"]
    assert [(e["state"], e["time"], e["peers"]) for e in lost] == [
        ("ongoing", 200.0, ["192.0.2.1", "192.0.2.2"])
    ]
    assert lost[0]["rationale"] == (
        "198.51.100.0/24 was withdrawn by 2 of the 3 peers that carried it."
    )
    assert code == exitcodes.ALERT
    # Peer 192.0.2.3's /24 and /25 are all that is left.
    assert "2 peer session(s) down, 2 routes from 3 peers" in capsys.readouterr().err


BIRD2 = Path(__file__).parent / "bird2"  # see its SOURCES.md
BIRD2_LARGE = {
    "198.51.100.0/24": ((64496, 4294967295, 0), (4200000001, 100, 1)),
    "203.0.113.0/25": ((64511, 2, 3),),
    "2001:db8:100::/48": ((4200000001, 6, 6),),
}


def test_large_communities_from_real_bird2_bgp4mp_and_rib() -> None:
    """RFC 8092 attribute 32 as bird2 sends it (BGP4MP) and stores it (TABLE_DUMP_V2)."""
    feed = MrtFeed(BIRD2 / "large-communities.bgp4mp.mrt")
    updates, _ = split(feed)
    assert feed.stats.as_dict() == {"records": 8, "updates": 3, "peer_downs": 0, "errors": 0}
    assert {str(u.prefix): u.large_communities for u in updates} == BIRD2_LARGE
    first = updates[0]
    assert (first.peer_ip, first.peer_asn, first.communities) == (
        "192.0.2.1",
        4200000001,
        ((64496, 7),),
    )
    rib = MrtFeed(BIRD2 / "large-communities.rib.mrt")
    entries, _ = split(rib)
    assert rib.stats.errors == 0
    assert {str(u.prefix): u.large_communities for u in entries} == {
        p: lc for p, lc in BIRD2_LARGE.items() if ":" not in p
    }
    assert {(u.peer_ip, u.peer_asn, u.as_path) for u in entries} == {
        ("192.0.2.1", 4200000001, (4200000001,))
    }


def test_bad_large_communities_is_a_counted_bad_record(caplog: pytest.LogCaptureFixture) -> None:
    good = (BIRD2 / "large-communities.bgp4mp.mrt").read_bytes()
    message = bytes.fromhex(
        json.loads((GOLDEN / "error_large_communities_length.json").read_text())["message"]
    )
    head = struct.pack(">IIHH", 4200000001, 65010, 0, 1) + bytes([192, 0, 2, 1, 192, 0, 2, 2])
    feed = MrtFeed.from_bytes(good + mrt_record(16, 4, head + message) + good, "lc")
    with caplog.at_level(logging.WARNING, "bgp_guard.feeds.mrt"):
        updates = list(feed)
    assert feed.stats.as_dict() == {"records": 17, "updates": 6, "peer_downs": 0, "errors": 1}
    assert len(updates) == 6
    offset = len(good) + 12 + 20 + 43  # record header, BGP4MP_AS4 header, into the message
    assert f"lc byte {offset}: LARGE_COMMUNITIES of 8 bytes, not a non-zero multiple of 12" in (
        caplog.text
    )
