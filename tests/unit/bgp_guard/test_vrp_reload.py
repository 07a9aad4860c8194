"""A VRP reload re-validates the routes already in the RIB (RFC 6811 section 2), but only
those a changed VRP covers: RPKI events are raised for routes that became invalid and
resolved for routes that no longer are. With a RIB built here, then with the real RIS file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.cli import build_guard
from bgp_guard.detect import rov
from bgp_guard.engine import Guard
from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.rib import key_prefix
from bgp_guard.rpki import Vrp, VrpSet
from bgp_guard.update import PathElement, Prefix
from tests.conftest import shared_data

from .helpers import guard_config, update

P = Prefix.parse
CONFIG = Path(__file__).parent / "replay_ris" / "overcast.yaml"  # as test_replay_ris.py
OURS = {
    "192.0.2.0/24": {"origins": [64500]},
    "198.51.100.0/22": {"origins": [64500], "max_length": 24},
}


def roa(asn: int, prefix: str, max_length: int = 24) -> Vrp:
    return Vrp(asn, P(prefix), max_length)


def announce(guard: Guard, t: float, peer: str, prefix: str, origin: int) -> list[dict[str, Any]]:
    return guard.process(update({"t": t, "peer": peer, "prefix": prefix, "path": [64510, origin]}))


def rpki(events: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    return [
        (e["type"], e["state"], e["prefix"], e["offending_as"])
        for e in events
        if e["type"] in rov.KINDS
    ]


Spy = Callable[[Guard], list[Prefix]]


@pytest.fixture
def rechecked(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """From the call on, the prefix of every route `guard` re-validates (one per route)."""

    def spy_on(guard: Guard) -> list[Prefix]:
        seen: list[Prefix] = []
        holders = guard.rib.holders

        def spy(key: int) -> list[tuple[int, tuple[PathElement, ...]]]:
            found = holders(key)
            seen.extend([key_prefix(key)] * len(found))
            return found

        monkeypatch.setattr(guard.rib, "holders", spy)
        return seen

    return spy_on


def test_route_turned_invalid_raises_and_turned_valid_resolves() -> None:
    good, bad = VrpSet([roa(64500, "192.0.2.0/24")]), VrpSet([roa(64501, "192.0.2.0/24")])
    guard = Guard(guard_config({"prefixes": OURS}), vrps=good)
    assert announce(guard, 1, "a", "192.0.2.0/24", 64500) == []
    assert announce(guard, 2, "b", "192.0.2.0/24", 64500) == []
    events = guard.replace_vrps(bad, 10)
    assert [(e["type"], e["offending_as"]) for e in events[:2]] == [
        ("roa-change", 64500),
        ("roa-change", 64501),
    ]
    assert rpki(events) == [("rpki-invalid", "ongoing", "192.0.2.0/24", 64500)]
    invalid = events[-1]
    assert (invalid["time"], invalid["peers"]) == (10, ["198.51.100.1"])
    assert invalid["rationale"] == (
        "192.0.2.0/24 from AS64500 is RPKI invalid: no covering VRP matches "
        "(covering: AS64501 192.0.2.0/24 max-length 24)."
    )
    assert guard.replace_vrps(bad, 11) == []  # the same set again: nothing to re-check
    events = guard.replace_vrps(good, 20)
    assert rpki(events) == [("rpki-invalid", "resolved", "192.0.2.0/24", 64500)]
    assert events[-1]["rationale"] == (
        "192.0.2.0/24 from AS64500 is now RPKI valid (matching VRP: AS64500 192.0.2.0/24 "
        "max-length 24) after a VRP reload."
    )
    assert events[-1]["peers"] == ["198.51.100.1", "198.51.100.2"]
    assert guard.table.events == {} and guard.table.by_route == {}
    # Invalid again: a new event, not the resolved one back.
    assert rpki(guard.replace_vrps(bad, 30)) == [("rpki-invalid", "ongoing", "192.0.2.0/24", 64500)]


def test_each_origin_moves_on_its_own() -> None:
    """Peer a carries the prefix from AS64500, b from AS64501 (an exact-origin hijack too):
    swapping the ROA resolves one RPKI event and raises the other, and leaves the hijack."""
    guard = Guard(guard_config({"prefixes": OURS}), vrps=VrpSet([roa(64501, "192.0.2.0/24")]))
    assert rpki(announce(guard, 1, "a", "192.0.2.0/24", 64500)) == [
        ("rpki-invalid", "ongoing", "192.0.2.0/24", 64500)
    ]
    announce(guard, 2, "b", "192.0.2.0/24", 64501)
    events = guard.replace_vrps(VrpSet([roa(64500, "192.0.2.0/24")]), 10)
    assert rpki(events) == [
        ("rpki-invalid", "resolved", "192.0.2.0/24", 64500),
        ("rpki-invalid", "ongoing", "192.0.2.0/24", 64501),
    ]
    kinds = {e.finding.kind for e in guard.table.events.values()}
    assert kinds == {"exact-origin", "rpki-invalid"}


def test_not_found_reporting_and_min_peers() -> None:
    config = guard_config({"prefixes": OURS, "rpki_not_found": True, "min_peers": 2})
    guard = Guard(config, vrps=VrpSet([]))
    announce(guard, 1, "a", "192.0.2.0/24", 64500)  # not-found, pending: one peer only
    events = guard.replace_vrps(VrpSet([roa(64501, "192.0.2.0/24")]), 10)
    assert rpki(events) == []  # not-found -> invalid, still one peer: pending, unannounced
    assert [e.state for e in guard.table.events.values()] == ["pending"]
    announce(guard, 11, "b", "192.0.2.0/24", 64500)
    events = guard.replace_vrps(VrpSet([roa(64500, "192.0.2.0/24", 23)]), 20)
    # The /23 ROA does not cover the /24 (RFC 6811 section 2: only covering VRPs count).
    assert rpki(events) == []
    events = guard.replace_vrps(VrpSet([]), 30)  # the /24 ROA goes: invalid -> not-found
    assert rpki(events) == [
        ("rpki-invalid", "resolved", "192.0.2.0/24", 64500),
        ("rpki-not-found", "ongoing", "192.0.2.0/24", 64500),
    ]
    assert events[-2]["rationale"] == (
        "192.0.2.0/24 from AS64500 is now not covered by any ROA (RPKI not-found) after a "
        "VRP reload."
    )


def test_only_routes_a_changed_vrp_covers_are_rechecked(rechecked: Spy) -> None:
    guard = Guard(guard_config({"prefixes": OURS}), vrps=VrpSet([]))
    for peer in ("a", "b", "c"):
        for prefix in ("192.0.2.0/24", "198.51.100.0/22", "198.51.100.0/24", "198.51.101.0/24"):
            announce(guard, 1, peer, prefix, 64500)
        announce(guard, 1, peer, "203.0.113.0/24", 64500)  # not ours: never validated
    checks = rechecked(guard)
    # A ROA for a more-specific of a monitored prefix: only the routes inside it.
    events = guard.replace_vrps(VrpSet([roa(64501, "198.51.101.0/24")]), 10)
    assert checks == [P("198.51.101.0/24")] * 3
    assert rpki(events) == [("rpki-invalid", "ongoing", "198.51.101.0/24", 64500)]
    assert events[0]["type"] == "roa-change" and events[0]["about"] == "198.51.100.0/22"
    checks.clear()
    # A ROA covering a monitored prefix: every route under it, nothing under the other.
    guard.replace_vrps(VrpSet([roa(64501, "198.51.101.0/24"), roa(64500, "198.51.100.0/22")]), 20)
    assert sorted(set(checks)) == [P("198.51.100.0/22"), P("198.51.100.0/24"), P("198.51.101.0/24")]
    assert len(checks) == 9
    # A ROA change for address space nobody here announces: nothing re-checked.
    checks.clear()
    guard.replace_vrps(
        VrpSet(
            [roa(64501, "198.51.101.0/24"), roa(64500, "198.51.100.0/22"), roa(1, "10.0.0.0/8")]
        ),
        30,
    )
    assert checks == []


def test_withdrawn_routes_are_forgotten(rechecked: Spy) -> None:
    guard = Guard(guard_config({"prefixes": OURS}), vrps=VrpSet([]))
    announce(guard, 1, "a", "198.51.100.0/24", 64500)
    guard.process(update({"t": 2, "peer": "a", "prefix": "198.51.100.0/24", "withdraw": True}))
    checks = rechecked(guard)
    assert guard.replace_vrps(VrpSet([roa(64501, "198.51.100.0/24")]), 10)[0]["type"] == (
        "roa-change"
    )
    assert checks == [] and guard._held[P("198.51.100.0/22")] == set()


def test_real_ris_file_then_two_vrp_sets(rechecked: Spy) -> None:
    """The real RIS 2016 file replayed (15,539 routes from 35 peers at its end, of which
    the guard holds the 3,382 that can matter to it: to a monitored prefix or crossing our
    AS12956), then ROAs
    that turn held routes invalid: AS18196's 202.134.167.0/24 (15 peers) and AS63410's
    72.249.96.0/23 inside our 72.249.0.0/17 (7 peers); then the original VRPs back."""
    guard = build_guard(str(CONFIG))
    original = guard.vrps
    assert original is not None
    for item in MrtFeed(shared_data("bgp") / "ris-updates.20160811.1600.gz"):
        guard.process(item)
    end = guard.finish(1470931500.0)
    assert len(guard.rib) == 3_382
    checks = rechecked(guard)
    stricter = VrpSet(
        [*original.vrps, roa(64500, "202.134.167.0/24"), roa(30496, "72.249.96.0/23", 23)]
    )
    events = guard.replace_vrps(stricter, 1470931600.0)
    assert Counter(checks) == {P("202.134.167.0/24"): 15, P("72.249.96.0/23"): 7}  # of 3,382
    assert [(e["type"], e["prefix"], e["about"]) for e in events if e["type"] == "roa-change"] == [
        ("roa-change", "72.249.96.0/23", "72.249.0.0/17"),
        ("roa-change", "202.134.167.0/24", "202.134.167.0/24"),
    ]
    # min_peers is 2 in this config: each event goes ongoing at its second peer.
    assert rpki(events) == [
        ("rpki-invalid", "ongoing", "72.249.96.0/23", 63410),
        ("rpki-invalid", "ongoing", "202.134.167.0/24", 18196),
    ]
    held = {e.finding.prefix: len(e.carriers) for e in guard.table.events.values()
            if e.finding.kind == "rpki-invalid"}  # fmt: skip
    assert held == {P("72.249.96.0/23"): 7, P("202.134.167.0/24"): 15}
    events = guard.replace_vrps(original, 1470931700.0)
    assert rpki(events) == [
        ("rpki-invalid", "resolved", "72.249.96.0/23", 63410),
        ("rpki-invalid", "resolved", "202.134.167.0/24", 18196),
    ]
    assert all("not-found" in e["rationale"] for e in events if e["type"] in rov.KINDS)
    assert not any(e["type"] in rov.KINDS and e["state"] == "ongoing" for e in end)
