"""Property tests: whatever bytes or JSON arrive, a parser raises only its own error type and
a feed never raises at all (it counts the bad record and goes on). Examples are bounded so the
suite stays fast."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.feeds.ris_live import RisLiveFeed, _Filter, _Judged, decode
from bgp_guard.update import FeedItem, Prefix, Update
from bgp_guard.wire import Open, WireError, decode_attributes, decode_update
from tests.conftest import shared_data

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOLDEN = [
    bytes.fromhex(json.loads(p.read_text())["message"])[19:]
    for p in sorted((Path(__file__).parent / "golden").glob("*.json"))
]


@FAST
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_update_random_bytes(body: bytes, asn4: bool, add_path: bool) -> None:
    try:
        decode_update(body, asn4=asn4, add_path=add_path)
    except WireError as exc:
        assert 0 <= exc.offset <= len(body)


@FAST
@given(st.sampled_from(GOLDEN), st.data())
def test_update_mutated_golden(body: bytes, data: st.DataObject) -> None:
    """Flip bytes of real messages: deeper paths than random bytes reach."""
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    for candidate in (bytes(mutated), bytes(mutated[:cut])):
        with contextlib.suppress(WireError):
            decode_update(
                candidate, asn4=data.draw(st.booleans()), add_path=data.draw(st.booleans())
            )


@FAST
@given(st.binary(max_size=200), st.booleans())
def test_rib_attributes_random_bytes(blob: bytes, asn4: bool) -> None:
    with contextlib.suppress(WireError):
        decode_attributes(blob, 0, len(blob), asn4=asn4, rib_entry=True)


@functools.cache
def records() -> list[bytes]:
    """The first few hundred records of real update and RIB files, split by their headers."""
    out: list[bytes] = []
    for name in ("ris-rrc06.updates.1427846400.gz", "ris-bview.ipv4_unicast_add_path.gz"):
        raw = gzip.decompress((shared_data("bgp") / name).read_bytes())
        off = 0
        while off < len(raw) and len(out) < 100:
            (length,) = struct.unpack_from(">I", raw, off + 8)
            out.append(raw[off : off + 12 + length])
            off += 12 + length
    return out


def feed_survives(stream: bytes) -> None:
    feed = MrtFeed.from_bytes(stream)
    updates = list(feed)
    assert feed.stats.updates == len(updates)
    assert feed.stats.errors <= feed.stats.records + 1


@FAST
@given(st.binary(max_size=400))
def test_mrt_random_bytes(stream: bytes) -> None:
    feed_survives(stream)


@settings(FAST, max_examples=200)
@given(st.data())
def test_mrt_mutated_records(data: st.DataObject) -> None:
    picked = data.draw(st.lists(st.sampled_from(records()), min_size=1, max_size=5))
    stream = bytearray(b"".join(picked))
    for _ in range(data.draw(st.integers(1, 6))):
        # Keep the 12-byte MRT headers mostly intact so the flips land in record bodies.
        pos = data.draw(st.integers(0, len(stream) - 1))
        stream[pos] = data.draw(st.integers(0, 255))
    feed_survives(bytes(stream))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": JSON | st.floats(),
        "peer": JSON,
        "peer_asn": JSON | st.integers(-1, 2**33).map(str),
        "type": st.just("UPDATE") | JSON,
        "path": st.lists(st.integers(-1, 2**33) | st.lists(st.integers(0, 9)), max_size=4) | JSON,
        "community": st.lists(st.lists(st.integers(-1, 70000), max_size=3), max_size=3) | JSON,
        "announcements": st.lists(
            st.fixed_dictionaries(
                {
                    "prefixes": st.lists(
                        st.sampled_from(["192.0.2.0/24", "2001:db8::/33", "x", "10.0.0.1/8"]) | JSON
                    )
                },
                optional={"next_hop": JSON},
            )
        )
        | JSON,
        "withdrawals": st.lists(st.sampled_from(["192.0.2.0/24", "1.2.3.4/40"]) | JSON) | JSON,
    },
)


@FAST
@given(st.lists(FIELDS | JSON, max_size=5), st.lists(st.text(max_size=20), max_size=2))
def test_ris_live_never_raises(messages: list[object], junk: list[str]) -> None:
    lines = [json.dumps({"type": "ris_message", "data": m}) for m in messages] + junk
    feed = RisLiveFeed(lines)
    updates = list(feed)
    assert feed.stats.updates == len(updates)


@FAST
@given(st.lists(FIELDS | JSON, max_size=5), st.booleans())
def test_ris_live_fast_path_changes_nothing_found(messages: list[object], filtered: bool) -> None:
    """The feed's typed fast path against `decode` alone, line by line (behind the filter's
    screen, with a filter): the same Updates (the wanted ones) and the same errors."""
    lines = [json.dumps({"type": "ris_message", "data": m}).encode() for m in messages]
    wanted = Prefix.parse("192.0.2.0/24").covers if filtered else None
    feed = RisLiveFeed(lines, wanted=wanted)
    got = list(feed)
    screen = None if wanted is None else _Filter(_Judged(wanted))
    expected: list[FeedItem] = []
    errors = 0
    for line in lines:
        if screen is not None and screen.skips(line):
            continue
        try:
            items = decode(line)
        except ValueError:
            errors += 1
            continue
        expected += [
            i for i in items if wanted is None or not isinstance(i, Update) or wanted(i.prefix)
        ]
    assert (got, feed.stats.errors) == (expected, errors)


@FAST
@given(st.binary(max_size=80))
def test_open_random_bytes(body: bytes) -> None:
    with contextlib.suppress(WireError):
        Open.decode(body)
