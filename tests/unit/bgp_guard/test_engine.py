"""Engine behaviour that the golden cases do not pin: RIB dedupe, ADD-PATH slots, the
prefix index, and event life cycles across peers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bgp_guard import communities
from bgp_guard.asrel import load_asrel
from bgp_guard.engine import Guard
from bgp_guard.prefixindex import PrefixIndex
from bgp_guard.rib import Rib, key_prefix, prefix_key
from bgp_guard.sinks.text import render
from bgp_guard.update import EndOfRib, PeerDown, PeerRestarting, Prefix, Update

from .helpers import guard_config, update

P = Prefix.parse
OURS = {"prefixes": {"192.0.2.0/24": {"origins": [64500]}}}


def test_prefix_index_longest_and_covering() -> None:
    index: PrefixIndex[str] = PrefixIndex()
    for text in ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "2001:db8::/32", "0.0.0.0/0"):
        index.add(P(text), text)
    assert index.longest(P("10.1.2.128/25")) == (24, ["10.1.2.0/24"])
    assert index.longest(P("10.1.3.0/24")) == (16, ["10.1.0.0/16"])
    assert [i for _, (i,) in index.covering(P("10.1.2.0/24"))] == [
        "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24",
    ]  # fmt: skip
    assert index.longest(P("2001:db9::/32")) is None
    assert index.longest(P("2001:db8:ffff::/48")) == (32, ["2001:db8::/32"])


def test_prefix_keys_are_distinct_across_families() -> None:
    texts = ("0.0.0.0/0", "::/0", "0.0.0.0/1", "::/1", "::/128", "2001:db8::1/128")
    keys = {prefix_key(P(t)) for t in texts}
    assert len(keys) == 6
    assert [str(key_prefix(prefix_key(P(t)))) for t in texts] == list(texts)


def test_rib_interns_paths_and_dedupes() -> None:
    rib = Rib()
    a, b = rib.slot("198.51.100.1", None), rib.slot("198.51.100.1", 7)  # ADD-PATH: 2 slots
    assert a != b and rib.slot("198.51.100.1", None) == a
    k = prefix_key(P("192.0.2.0/24"))
    assert rib.apply(a, k, (1, 2, 3))
    assert not rib.apply(a, k, (1, 2, 3))  # same path again: no change
    assert rib.apply(b, k, (1, 2, 3))
    assert rib.route(a, k) is rib.route(b, k)  # one tuple for both
    assert rib.distinct_paths == 1 and len(rib) == 2
    assert rib.apply(a, k, None) and not rib.apply(a, k, None)
    assert len(rib) == 1


def test_hijack_replaced_by_legit_route_is_withdrawn() -> None:
    guard = Guard(guard_config(OURS))
    hijack = {"peer": "a", "prefix": "192.0.2.0/24", "path": [64510, 65066]}
    assert [e["state"] for e in guard.process(update({"t": 1, **hijack}))] == ["ongoing"]
    legit = {"t": 2, "peer": "a", "prefix": "192.0.2.0/24", "path": [64510, 64500]}
    assert [e["state"] for e in guard.process(update(legit))] == ["withdrawn"]
    # back again: ongoing once more, not a second event
    assert [e["state"] for e in guard.process(update({"t": 3, **hijack}))] == ["ongoing"]
    assert len(guard.table.events) == 1


def test_one_event_many_peers_until_all_drop_it() -> None:
    guard = Guard(guard_config(OURS))
    out = []
    for t, peer in enumerate("abc"):
        out += guard.process(
            update({"t": t, "peer": peer, "prefix": "192.0.2.128/25", "path": [1, 65066]})
        )
    assert [e["state"] for e in out] == ["ongoing"]
    for t, peer in enumerate("ab"):
        assert guard.process(update({"t": 10 + t, "peer": peer, "prefix": "192.0.2.128/25",
                                     "withdraw": True})) == []  # fmt: skip
    out = guard.process(
        update({"t": 20, "peer": "c", "prefix": "192.0.2.128/25", "withdraw": True})
    )
    assert [(e["state"], e["peer_count"]) for e in out] == [("withdrawn", 3)]
    event = out[0]
    assert event["peers"] == ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert event["first_seen"] == 0 and event["last_seen"] == 2


def test_resolution_happens_on_feed_time() -> None:
    guard = Guard(guard_config({**OURS, "resolve_after": 30}))
    guard.process(update({"t": 0, "prefix": "192.0.2.0/24", "path": [1, 65066]}))
    guard.process(update({"t": 1, "prefix": "192.0.2.0/24", "withdraw": True}))
    assert guard.process(update({"t": 30, "prefix": "203.0.113.0/24", "path": [1, 2]})) == []
    out = guard.process(update({"t": 31.5, "prefix": "203.0.113.0/24", "path": [1, 3]}))
    assert [e["state"] for e in out] == ["resolved"]


def test_unmonitored_updates_fire_nothing() -> None:
    guard = Guard(guard_config(OURS))
    for t in range(100):
        assert guard.process(update({"t": t, "prefix": f"10.{t}.0.0/16", "path": [1, 2, 3]})) == []
    # Nothing could make them matter (no path checks beyond ours, no own ASNs, ASPA scope
    # "monitored"): not even held.
    assert guard.summary()["rib_routes"] == 0 and guard.wanted() is not None
    # An ASPA file loaded later re-verifies every held route under scope "all": then they are.
    keep = Guard(guard_config({**OURS, "aspa": {"scope": "all"}}))
    for t in range(100):
        keep.process(update({"t": t, "prefix": f"10.{t}.0.0/16", "path": [1, 2, 3]}))
    assert keep.summary()["rib_routes"] == 100 and keep.wanted() is None


def test_rib_compaction_forgets_unused_paths() -> None:
    rib = Rib()
    slot = rib.slot("198.51.100.1", None)
    k = prefix_key(P("192.0.2.0/24"))
    for n in range(10):
        rib.apply(slot, k, (1, n))
    assert rib.distinct_paths == 10
    rib.compact()
    assert rib.distinct_paths == 1 and rib.route(slot, k) == (1, 9)


def test_leak_scope_all_checks_every_prefix(tmp_path: Path) -> None:
    rel = tmp_path / "as-rel.txt"
    rel.write_text("64520|64500|-1\n64520|64502|-1\n64521|64502|-1\n")
    leaky = {"t": 1, "prefix": "203.0.113.0/24", "path": [64510, 64521, 64502, 64520, 64500]}
    for scope, fired in (("monitored", []), ("all", ["route-leak"])):
        guard = Guard(guard_config({**OURS, "leak_scope": scope}), asrel=load_asrel(rel))
        assert [e["type"] for e in guard.process(update(leaky))] == fired


def test_transitions_are_counted_for_prometheus() -> None:
    from overcast.metrics import REGISTRY

    def count() -> float:
        labels = {"type": "exact-origin", "state": "ongoing"}
        return REGISTRY.get_sample_value("overcast_bgp_guard_events_total", labels) or 0.0

    before = count()
    Guard(guard_config(OURS)).process(
        update({"t": 1, "prefix": "192.0.2.0/24", "path": [1, 65066]})
    )
    assert count() == before + 1


def test_finished_events_leave_the_table() -> None:
    """A long-running watch must not accumulate events: resolved ones and pending ones
    nobody carried for resolve_after seconds are dropped."""
    guard = Guard(guard_config({**OURS, "min_peers": 2, "resolve_after": 10}))
    lone = {"peer": "a", "prefix": "192.0.2.128/25", "path": [1, 65066]}
    assert guard.process(update({"t": 0, **lone})) == []  # pending: one peer only
    guard.process(update({"t": 1, "peer": "a", "prefix": "192.0.2.128/25", "withdraw": True}))
    for peer in "ab":
        guard.process(update({"t": 2, "peer": peer, "prefix": "192.0.2.0/24", "path": [1, 65067]}))
    for peer in "ab":
        guard.process(update({"t": 3, "peer": peer, "prefix": "192.0.2.0/24", "withdraw": True}))
    assert len(guard.table.events) == 2
    assert [e["state"] for e in guard.finish(20)] == ["resolved"]
    assert guard.table.events == {} and guard.summary()["events"] == {"resolved": 1}
    # the same hijack again is a new event, seen afresh
    out = guard.process(
        update({"t": 30, "peer": "a", "prefix": "192.0.2.128/25", "path": [1, 65066]})
    )
    assert out == [] and guard.table.events[next(iter(guard.table.events))].first_seen == 30


def test_empty_path_is_the_peers_own_origin() -> None:
    # peer "a" is AS64510: over iBGP it announces our prefix with an empty AS_PATH
    guard = Guard(guard_config(OURS))
    (event,) = guard.process(update({"t": 1, "prefix": "192.0.2.0/24", "path": []}))
    assert (event["type"], event["offending_as"]) == ("exact-origin", 64510)
    mine = Guard(guard_config({"prefixes": {"192.0.2.0/24": {"origins": [64510]}}}))
    assert mine.process(update({"t": 1, "prefix": "192.0.2.0/24", "path": []})) == []


def test_visibility_share() -> None:
    """1 withdrawal of 3 peers passes an absolute threshold of 1 but not a share of 1/2."""
    guard = Guard(
        guard_config({**OURS, "visibility_min_withdrawn": 1, "visibility_min_share": 0.5})
    )
    for peer in "abc":
        guard.process(update({"t": 1, "peer": peer, "prefix": "192.0.2.0/24", "path": [1, 64500]}))
    assert (
        guard.process(update({"t": 2, "peer": "a", "prefix": "192.0.2.0/24", "withdraw": True}))
        == []
    )
    (event,) = guard.process(
        update({"t": 3, "peer": "b", "prefix": "192.0.2.0/24", "withdraw": True})
    )
    assert event["rationale"] == "192.0.2.0/24 was withdrawn by 2 of the 3 peers that carried it."


def test_peer_down_withdraws_every_route_of_that_peer_only() -> None:
    """All ADD-PATH slots of the peer lose their routes; other peers keep theirs; the events
    the routes carried are released (a dropped session is implicit withdrawal)."""
    guard = Guard(guard_config(OURS))
    hijack = {"prefix": "192.0.2.0/24", "path": [64510, 65066]}
    for path_id in (1, 2):
        guard.process(update({"t": 1, "peer": "a", "path_id": path_id, **hijack}))
    guard.process(update({"t": 1, "peer": "a", "prefix": "203.0.113.0/24", "path": [64510]}))
    guard.process(update({"t": 1, "peer": "b", **hijack}))
    assert len(guard.rib) == 3  # 203.0.113.0/24 is none of ours: not held
    a_down = PeerDown(5.0, "198.51.100.1", 64510, "mrt:test")
    assert guard.process(a_down) == []  # peer b still carries the hijack
    assert len(guard.rib) == 1 and guard.summary()["peer_downs"] == 1
    assert guard.process(a_down) == []  # again: nothing left to withdraw
    out = guard.process(PeerDown(6.0, "198.51.100.2", 64511))
    # No visibility loss: the hijacked routes never made our prefix visible.
    assert [(e["type"], e["state"], e["time"]) for e in out] == [
        ("exact-origin", "withdrawn", 6.0),
    ]
    assert len(guard.rib) == 0 and guard.updates == 4


def test_graceful_restart_withdraws_only_what_is_not_announced_again() -> None:
    """RFC 4724: a restarting peer's routes stay (stale, no event moves); at its End-of-RIB
    the ones it did not announce again are withdrawn, per IP version."""
    guard = Guard(guard_config(OURS))
    a = ("198.51.100.1", 64510)
    for prefix in ("192.0.2.0/24", "192.0.2.0/25"):
        guard.process(update({"t": 1, "peer": "a", "prefix": prefix, "path": [64510, 65066]}))
    ongoing = {k: e.state for k, e in guard.table.events.items()}
    assert guard.process(PeerRestarting(2.0, *a)) == []
    # Back: the /24 again (nothing changes), the /25 not.
    assert guard.process(update({"t": 3, "prefix": "192.0.2.0/24", "path": [64510, 65066]})) == []
    assert guard.process(EndOfRib(4.0, *a, version=6)) == []  # not the family of the /25
    assert {k: e.state for k, e in guard.table.events.items()} == ongoing
    out = guard.process(EndOfRib(5.0, *a, version=4))
    assert [(e["prefix"], e["state"]) for e in out] == [("192.0.2.0/25", "withdrawn")]
    assert len(guard.rib) == 1 and guard.summary()["peer_downs"] == 0
    # A peer that never comes back: the PeerDown takes the stale routes too.
    guard.process(PeerRestarting(6.0, *a))
    out = guard.process(PeerDown(7.0, *a))
    assert ("192.0.2.0/24", "withdrawn") in [(e["prefix"], e["state"]) for e in out]
    assert len(guard.rib) == 0


def test_flagged_community_and_communities_in_events() -> None:
    """Issue 16: events carry the route's communities; a listed community (BLACKHOLE,
    RFC 7999) on our prefix is an event of its own, named in JSON and text."""
    config = guard_config(
        {"prefixes": {"192.0.2.0/24": {"origins": [64500], "flag_communities": ["BLACKHOLE"]}}}
    )
    guard = Guard(config)
    blackhole = Update(
        1.0,
        "198.51.100.1",
        64510,
        Prefix.parse("192.0.2.0/32"),
        True,
        (64510, 65066),
        ((65535, 666), (64510, 1)),
        large_communities=((64510, 8092, 1),),
    )
    events = {e["type"]: e for e in guard.process(blackhole)}
    flagged = events["community"]
    assert flagged["offending_as"] == 65066
    assert "carries 65535:666 (BLACKHOLE)" in flagged["rationale"]
    assert "origin AS65066 (not ours)" in flagged["rationale"]
    for event in events.values():  # the sub-prefix hijack too
        assert event["communities"] == ["65535:666", "64510:1"]
        assert event["large_communities"] == ["64510:8092:1"]
    line = render(flagged)
    assert line.endswith("Communities: 65535:666 (BLACKHOLE) 64510:1 64510:8092:1.")
    plain = update({"t": 2, "peer": "b", "prefix": "192.0.2.0/24", "path": [64511, 64500]})
    assert guard.process(plain) == []  # ours, no community: nothing to say


def test_flag_communities_are_checked_in_the_config() -> None:
    with pytest.raises(ValidationError, match="'BLACKHOLD' is not a community"):
        guard_config(
            {"prefixes": {"192.0.2.0/24": {"origins": [1], "flag_communities": ["BLACKHOLD"]}}}
        )
    assert communities.parse("no-export") == (65535, 65281)
    assert communities.parse("64500:1:2") == (64500, 1, 2)
    with pytest.raises(ValueError, match="up to 65535"):
        communities.parse("70000:1")
