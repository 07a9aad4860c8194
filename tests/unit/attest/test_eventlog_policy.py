"""Event-log replay and the policy check (pure logic, no TPM)."""

from __future__ import annotations

import hashlib

import pytest

from attest import eventlog
from attest.eventlog import Event, EventLogError
from attest.policy import Policy, violations

A = "aa" * 32
B = "bb" * 32
CFG = "cc" * 32


def test_replay_matches_the_tpm_extend_rule() -> None:
    events = [Event(15, "wireguard-go", A), Event(15, "config", CFG), Event(16, "other", B)]
    pcr = bytes(32)
    for e in events[:2]:
        digest = hashlib.sha256(e.name.encode() + b"\0" + bytes.fromhex(e.digest)).digest()
        pcr = hashlib.sha256(pcr + digest).digest()
    assert eventlog.replay(events, [15]) == {15: pcr}
    # An event moved to another name, or reordered, replays to another value.
    assert eventlog.replay([Event(15, "ovs-vswitchd", A), events[1]], [15])[15] != pcr
    assert eventlog.replay(events[1::-1], [15])[15] != pcr
    assert eventlog.replay([], [15]) == {15: eventlog.PCR_RESET}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pcr": 15}, "not a list"),
        ([{"pcr": 15, "name": "x"}], "event 0 is not"),
        ([{"pcr": 99, "name": "x", "digest": A}], "PCR 99"),
        ([{"pcr": True, "name": "x", "digest": A}], "PCR True"),
        ([{"pcr": 15, "name": "", "digest": A}], "name ''"),
        ([{"pcr": 15, "name": "x", "digest": "zz" * 32}], "not 64 hex"),
        ([{"pcr": 15, "name": "x", "digest": A, "extra": 1}], "event 0 is not"),
    ],
)
def test_malformed_logs_are_refused_naming_the_event(data: object, message: str) -> None:
    with pytest.raises(EventLogError, match=message):
        eventlog.parse(data)


def test_parse_round_trips() -> None:
    events = [Event(15, "overcast", A), Event(15, "config", CFG)]
    assert eventlog.parse([e.as_dict() for e in events]) == events


POLICY = Policy(15, {"wireguard-go": frozenset({A}), "overcast": frozenset({B})}, CFG)


def test_known_good_state_passes() -> None:
    events = [Event(15, "overcast", B), Event(15, "wireguard-go", A), Event(15, "config", CFG)]
    assert violations(POLICY, events) == []


def test_each_violation_is_named() -> None:
    events = [
        Event(15, "overcast", B),
        Event(15, "wireguard-go", "11" * 32),  # replaced binary
        Event(15, "config", "22" * 32),  # config edited at the site
        Event(15, "sshd", A),  # measured, but nothing in the policy
        Event(14, "overcast", B),  # wrong PCR
    ]
    found = violations(POLICY, events)
    assert any(v.startswith("wireguard-go: digest 1111") for v in found)
    assert any("edited at the site" in v for v in found)
    assert any(v.startswith("sshd: measured, but the policy has no entry") for v in found)
    assert any("into PCR 14, not PCR 15" in v for v in found)


def test_a_binary_replaced_and_put_back_still_fails_until_reset() -> None:
    events = [
        Event(15, "overcast", B),
        Event(15, "wireguard-go", A),
        Event(15, "config", CFG),
        Event(15, "wireguard-go", "11" * 32),
        Event(15, "wireguard-go", A),
    ]
    assert len(violations(POLICY, events)) == 1


def test_missing_measurements_fail() -> None:
    assert violations(POLICY, [Event(15, "overcast", B)]) == [
        "config: not measured at the site",
        "wireguard-go: not measured at the site",
    ]
