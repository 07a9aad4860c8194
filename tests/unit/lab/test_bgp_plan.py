"""The BGP lab's plan, router configs and guard config, without daemons: who peers with
whom, what each AS should hold, and that the guard built from the plan's own files flags
the leak and the hijack the scenarios stage (the integration tests stage them for real)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from bgp_guard.asrel import load_asrel
from bgp_guard.engine import Guard
from bgp_guard.update import Prefix, Update
from lab import names
from lab.bgp import bird
from lab.bgp.plan import (
    AsSpec,
    Topology,
    TopologyError,
    asrel_text,
    expected_routes,
    guard_config,
    plan_bgp_lab,
)
from lab.scenarios import hijack, leak
from overcast.config import loads

ROOT = Path("/run/overcast")


def nets(*prefixes: str) -> frozenset[ipaddress.IPv4Network]:
    return frozenset(ipaddress.IPv4Network(p) for p in prefixes)


def test_routes_climb_to_providers_then_only_descend() -> None:
    held = expected_routes(leak.TOPOLOGY)
    ours, customers = "203.0.113.0/24", "198.51.100.0/24"
    assert held["provider-a"] == nets(ours, customers)
    assert held["customer"] == nets(ours, customers)
    # The customer must not pass provider-a's route up to provider-b: that is the leak.
    assert held["provider-b"] == nets(customers)
    assert held["ours"] == nets(ours, customers)


def test_sessions_follow_the_relationships_and_the_guard_hears_its_peers() -> None:
    plan = plan_bgp_lab(leak.TOPOLOGY, "oc1234", ROOT)
    customer = plan.router("customer")
    assert [(s.name, s.asn, s.relationship, s.leak) for s in customer.sessions] == [
        ("provider_a", 64501, "provider", False),
        ("provider_b", 64502, "provider", True),
    ]
    assert [s.relationship for s in plan.router("provider-a").sessions] == [
        "customer",
        "customer",
        "collector",
    ]
    assert [r.name for r in plan.guard.neighbours] == ["provider-a", "provider-b"]
    assert plan.guard_routes() == 3
    # Named after the lab id, so `overcast lab down` finds them all by name.
    assert set(plan.namespaces) == {
        "oc1234.peering",
        "oc1234.guard",
        "oc1234.as64500",
        "oc1234.as64501",
        "oc1234.as64502",
        "oc1234.as64510",
    }
    assert customer.dir == ROOT / "oc1234" / "bgp" / "as64510"


def test_bird_exports_to_providers_only_own_and_customer_routes_until_the_leak() -> None:
    plan = plan_bgp_lab(leak.TOPOLOGY, "oc1234", ROOT)
    customer = plan.router("customer")
    careful = bird.config(customer)
    rule = "export where source = RTS_STATIC || (64510, 1, 1) ~ bgp_large_community;"
    assert careful.count(rule) == 2
    leaking = bird.config(customer, leaking=True)
    assert leaking.count(rule) == 1 and "neighbor 192.0.2.3 as 64502" in leaking
    upstream = bird.config(plan.router("provider-a"))
    assert "bgp_large_community.add((64501, 1, 1)); bgp_local_pref = 200;" in upstream
    assert "neighbor 192.0.2.100 as 65010" in upstream  # the guard: import none, export all
    attacker = bird.config(plan_bgp_lab(hijack.TOPOLOGY, "oc1234", ROOT).router("attacker"))
    assert "protocol static held { ipv4; disabled; route 203.0.113.128/25 blackhole; }" in attacker


def _guard(topology: Topology, tmp_path: Path) -> Guard:
    plan = plan_bgp_lab(topology, "oc1234", tmp_path)
    config = loads(guard_config(plan, topology), source="lab guard").guard
    (tmp_path / "as-rel.txt").write_text(asrel_text(topology))
    assert config.asrel_file == "as-rel.txt"
    return Guard(config, asrel=load_asrel(tmp_path / "as-rel.txt"))


def _route(prefix: str, path: tuple[int, ...]) -> Update:
    return Update(1.0, "192.0.2.2", path[0], Prefix.parse(prefix), True, path)


def test_the_guard_config_flags_the_staged_leak_and_names_the_leaker(tmp_path: Path) -> None:
    guard = _guard(leak.TOPOLOGY, tmp_path)
    assert guard.process(_route("203.0.113.0/24", (64501, 64500))) == []
    (event,) = guard.process(_route("203.0.113.0/24", (64502, 64510, 64501, 64500)))
    assert (event["type"], event["offending_as"]) == ("route-leak", 64510)


def test_the_guard_config_flags_the_staged_hijack(tmp_path: Path) -> None:
    guard = _guard(hijack.TOPOLOGY, tmp_path)
    assert guard.process(_route("203.0.113.0/24", (64501, 64500))) == []
    (event,) = guard.process(_route("203.0.113.128/25", (64501, 64511)))
    assert (event["type"], event["artemis"], event["offending_as"]) == (
        "subprefix-origin",
        "S|0|-|-",
        64511,
    )


@pytest.mark.parametrize(
    ("ases", "message"),
    [
        ((AsSpec("a", 64500, providers=("b",)),), "no other AS 'b'"),
        ((AsSpec("a", 64500), AsSpec("a", 64501)), "its own name and ASN"),
        ((AsSpec("a", 64500), AsSpec("b", 64501, leaks_to=("a",))), "not providers"),
    ],
)
def test_a_topology_that_does_not_add_up_is_refused(ases: tuple[AsSpec, ...], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        plan_bgp_lab(Topology(ases, ours="a"), "oc1234", ROOT)


def test_lab_down_all_finds_a_bgp_labs_namespaces_by_name() -> None:
    plan = plan_bgp_lab(leak.TOPOLOGY, "oc1234", ROOT)
    assert names.lab_ids_of(plan.namespaces) == ["oc1234"]
    assert sorted(names.lab_netns("oc1234", [*plan.namespaces, "oc9999.guard"])) == sorted(
        plan.namespaces
    )


# birdc's answers, as bird 2.0.12 (Debian 12) gave them in the leak lab.
PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     10:24:17.239
ours       BGP        ---        up     10:24:18.041  Established
customer   BGP        ---        start  10:24:21.328  Active        Socket: Connection refused
guard      BGP        ---        up     10:24:20.479  Established
"""
EXPORTED = """BIRD 2.0.12 ready.
Table master4:
198.51.100.0/24      unicast [customer 10:24:21.368] * (100) [AS64510i]
\tvia 192.0.2.4 on lan
203.0.113.0/24       unicast [ours 10:24:18.065] * (100) [AS64500i]
\tvia 192.0.2.1 on lan
"""


def test_birdc_answers_are_read_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    router = plan_bgp_lab(leak.TOPOLOGY, "oc1234", ROOT).router("provider-a")
    answers = {("show", "protocols"): PROTOCOLS, ("show", "route", "export", "guard"): EXPORTED}
    monkeypatch.setattr(bird, "birdc", lambda _, *command: answers[command])
    assert bird.established(router) == {"ours": True, "customer": False, "guard": True}
    assert bird.exported(router, "guard") == nets("198.51.100.0/24", "203.0.113.0/24")
