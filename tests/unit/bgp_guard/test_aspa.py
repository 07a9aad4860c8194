"""ASPA files (rpki-client, Routinator, CSV), verification details the draft's examples do not
cover, re-verification on an ASPA reload, and the reload itself in `guard watch`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bgp_guard.aspa import (
    Aspa,
    AspaSet,
    Hop,
    Outcome,
    Procedure,
    changed_customers,
    load_aspas,
    verify,
)
from bgp_guard.asrel import AsRelationships
from bgp_guard.engine import Guard
from bgp_guard.errors import InputError
from bgp_guard.watch import DataFile
from overcast.metrics import REGISTRY
from overcast.model import ConfigError

from .helpers import guard_config, update

UP, DOWN = Procedure.UPSTREAM, Procedure.DOWNSTREAM


def write(tmp_path: Path, doc: Any, name: str = "rpki.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# --- files --------------------------------------------------------------------------------


def test_rpki_client_json(tmp_path: Path) -> None:
    doc = {
        "metadata": {"buildtime": "2026-12-06T06:00:00Z"},
        "roas": [{"asn": 64500, "prefix": "192.0.2.0/24", "maxLength": 24}],
        "aspas": [
            {"customer_asid": 64500, "expires": 1790002800, "providers": [64501, 64502]},
            {"customer_asid": 64503, "expires": 1790002800, "providers": [0]},
        ],
    }
    aspas = load_aspas(write(tmp_path, doc))
    assert aspas.providers(64500) == aspas.providers(64500, 6) == frozenset({64501, 64502})
    assert aspas.hop(64503, 64501) is Hop.NOT_PROVIDER  # AS0: no providers at all
    assert aspas.hop(64501, 64500) is Hop.NO_ATTESTATION


def test_rpki_client_per_afi_and_provider_objects(tmp_path: Path) -> None:
    """rpki-client 7.x/8.0: ASPAs split per family, and providers limited to one family."""
    doc = {
        "provider_authorizations": {
            "ipv4": [{"customer_asid": 64500, "providers": [64501]}],
            "ipv6": [
                {
                    "customer_asid": 64500,
                    "providers": [{"asid": 64502}, {"asid": 64503, "afi_limit": "ipv6"}],
                }
            ],
        }
    }
    aspas = load_aspas(write(tmp_path, doc))
    assert aspas.providers(64500, 4) == frozenset({64501})
    assert aspas.providers(64500, 6) == frozenset({64502, 64503})


def test_routinator_json_old_and_new(tmp_path: Path) -> None:
    """Routinator 0.13 wrote one object per family ("afi"); later versions none, with
    "AS" strings either way; jsonext adds "source"; Krill's "AS64503(v4)" limits a provider."""
    doc = {
        "aspas": [
            {"customer": "AS64500", "afi": "ipv4", "providers": ["AS64501"], "ta": "ripe"},
            {"customer": "AS64500", "afi": "ipv6", "providers": ["AS64502"], "ta": "ripe"},
            {"customer": "AS64510", "providers": ["AS64511", "AS64512(v4)"], "source": []},
        ]
    }
    aspas = load_aspas(write(tmp_path, doc))
    assert (aspas.providers(64500, 4), aspas.providers(64500, 6)) == (
        frozenset({64501}),
        frozenset({64502}),
    )
    assert aspas.providers(64510, 4) == frozenset({64511, 64512})
    assert aspas.providers(64510, 6) == frozenset({64511})


def test_several_aspas_of_one_customer_are_merged(tmp_path: Path) -> None:
    csv = "Customer,Providers,AFI\n64500,64501 64502\n# a second CA\nAS64500,AS64503;AS64504,\n"
    aspas = load_aspas(write(tmp_path, csv, "aspas.csv"))
    assert aspas.providers(64500) == frozenset({64501, 64502, 64503, 64504})
    assert len(aspas) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ('{"roas": []}', "no 'aspas' list; give rpki-client -j output"),
        ('{"aspas": [{"customer_asid": "AS6450x", "providers": [1]}]}', "aspas[0]: 'AS6450x'"),
        ('{"aspas": [{"customer_asid": 1}]}', "aspas[0]: no 'providers' list"),
        ('{"aspas": [{"customer": 1, "afi": "ipx", "providers": []}]}', "'ipx' is not ipv4"),
        ("{not json", "not JSON"),
        ("64500\n", "line 1: expected 'customer,providers[,afi]'"),
        ("64500,\n", "line 1: no providers; write AS0"),
    ],
)
def test_bad_files_say_where_and_what(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_aspas(write(tmp_path, content))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read ASPA file"):
        load_aspas(tmp_path / "missing.json")


# --- verification ---------------------------------------------------------------------------

ASPAS = AspaSet(
    [
        Aspa(15169, frozenset({0})),  # Google: no transit providers
        Aspa(37282, frozenset({1299, 3356})),  # MainOne (stand-ins for its providers)
        Aspa(4809, frozenset({4134})),  # China Telecom CN2 (a stand-in)
        Aspa(64500, frozenset({64501}), 4),
        Aspa(64500, frozenset({64502}), 6),
    ]
)


def test_mainone_leak_as_china_telecom_would_verify_it() -> None:
    """AS4809 heard Google's routes from its peer AS37282: upstream verification."""
    verdict = verify((37282, 15169), ASPAS, UP, neighbour_asn=37282)
    assert verdict.outcome is Outcome.INVALID and verdict.offender == 37282
    assert verdict.reason.startswith("AS37282 is not an attested provider of AS15169")


def test_prepends_are_collapsed() -> None:
    path = (64501, 64501, 64500, 64500, 64500)
    assert verify(path, ASPAS, UP).outcome is Outcome.VALID


def test_provider_sets_are_per_family() -> None:
    assert verify((64502, 64500), ASPAS, UP, 4).outcome is Outcome.INVALID
    assert verify((64502, 64500), ASPAS, UP, 6).outcome is Outcome.VALID


def test_as_set_empty_path_and_neighbour_mismatch_are_invalid() -> None:
    assert verify((64501, frozenset({64500, 64503})), ASPAS, DOWN).outcome is Outcome.INVALID
    assert verify((), ASPAS, DOWN).outcome is Outcome.INVALID
    verdict = verify((64501, 64500), ASPAS, UP, neighbour_asn=64510)
    assert verdict.outcome is Outcome.INVALID and "neighbour AS64510" in verdict.reason


def test_changed_customers() -> None:
    new = AspaSet([Aspa(15169, frozenset({0})), Aspa(37282, frozenset({1299}))])
    assert changed_customers(ASPAS, new) == frozenset({37282, 4809, 64500})
    assert changed_customers(ASPAS, ASPAS) == set()


# --- the guard ---------------------------------------------------------------------------

CONFIG = {"prefixes": {"192.0.2.0/24": {"origins": [15169]}}}
LEAK = {"t": 10, "peer": "b", "prefix": "192.0.2.0/24", "path": [4809, 37282, 15169]}
GOOD = {"t": 11, "peer": "a", "prefix": "192.0.2.0/24", "path": [3356, 15169]}


def test_reload_raises_and_resolves_only_what_changed() -> None:
    without_cn2 = AspaSet([Aspa(15169, frozenset({0})), Aspa(37282, frozenset({1299, 3356}))])
    guard = Guard(guard_config(CONFIG), aspas=without_cn2)
    assert guard.process(update(LEAK)) == []  # Unknown without AS4809's ASPA
    assert guard.process(update(GOOD)) == []
    # AS4809 publishes: only the route through AS4809 is re-verified, and it is Invalid.
    assert [(r[0], r[2]) for r in guard._routes_through({4809})] == [(0, (4809, 37282, 15169))]
    events = guard.replace_aspas(ASPAS, 100.0)
    assert [(e["type"], e["state"], e["offending_as"]) for e in events] == [
        ("aspa-invalid", "ongoing", 37282)
    ]
    assert (
        REGISTRY.get_sample_value("overcast_bgp_guard_aspa_customers") == 4
    )  # AS64500: 2 ASPAs, 1 AS
    assert guard.replace_aspas(ASPAS, 110.0) == []  # nothing changed: nothing re-verified
    # AS4809 adds AS37282 as a provider: the leak is a legitimate path now.
    events = guard.replace_aspas(AspaSet([*_all(ASPAS), Aspa(4809, frozenset({37282}))]), 120.0)
    assert [(e["type"], e["state"]) for e in events] == [("aspa-invalid", "resolved")]
    assert "no longer ASPA invalid" in events[0]["rationale"]


def _all(aspas: AspaSet) -> list[Aspa]:
    return [Aspa(c, p, v) for v in (4, 6) for c, p in aspas.table(v).items()]


def test_reload_turns_a_route_leak_into_one_event_citing_both() -> None:
    config = guard_config(CONFIG)
    rels = AsRelationships()
    rels.add_peers(15169, 37282)
    rels.add_peers(37282, 4809)
    guard = Guard(config, asrel=rels)
    assert [e["type"] for e in guard.process(update(LEAK))] == ["route-leak"]
    events = guard.replace_aspas(ASPAS, 50.0)
    assert [(e["type"], e["state"]) for e in events] == [
        ("route-leak", "resolved"),
        ("aspa-invalid", "ongoing"),
    ]
    assert "now reported as aspa-invalid" in events[0]["rationale"]
    assert "The CAIDA AS relationships agree" in events[1]["rationale"]


def test_scope_ours_checks_paths_through_our_asns() -> None:
    config = guard_config({"own_asns": {37282: {}}, "aspa": {"scope": "ours"}})
    guard = Guard(config, aspas=ASPAS)
    (event,) = guard.process(update(LEAK))
    assert (event["type"], event["about"]) == ("aspa-invalid", "AS37282")
    other = {"t": 12, "peer": "a", "prefix": "198.51.100.0/24", "path": [64502, 64500]}
    assert guard.process(update(other)) == []  # Invalid, but not through our ASNs


def test_a_relationship_set_twice_is_a_config_error() -> None:
    config = guard_config(
        {
            "aspa": {"neighbours": {"192.0.2.1": "peer"}},
            "feeds": {
                "bgp": {
                    "local_asn": 64511,
                    "router_id": "192.0.2.10",
                    "listen": "192.0.2.10",
                    "neighbours": {"192.0.2.1": {"asn": 64500, "relationship": "customer"}},
                }
            },
        }
    )
    assert [e.path for e in config.problems()] == ["guard.aspa.neighbours.192.0.2.1"]
    assert isinstance(config.problems()[0], ConfigError)


def test_watch_reloads_a_changed_aspa_file_and_keeps_the_old_on_a_bad_one(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, {"aspas": [{"customer_asid": 64500, "providers": [64501]}]})
    watched = DataFile(path, load_aspas)
    assert watched.reload() is None  # unchanged
    path.write_text(json.dumps({"aspas": [{"customer_asid": 64500, "providers": [64502]}]}))
    os.utime(path, (1, 1))
    new = watched.reload()
    assert new is not None and new.providers(64500) == frozenset({64502})
    path.write_text("")  # a validator rewriting the file
    os.utime(path, (2, 2))
    assert watched.reload() is None
