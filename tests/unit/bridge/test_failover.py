"""The hold-down: traffic returns to a better path only after it stayed up, never to a
flapping one, and never at the cost of leaving a peer with no path."""

from __future__ import annotations

import ipaddress
from pathlib import Path as FilePath

from bridge import mss
from bridge.failover import Bfd, HoldDown, Move, Path, PathGroup, path_groups
from bridge.keys import generate_private_key, public_key_of
from bridge.plan import SitePlan, plan_site
from bridge.watch import PathWatch, VswitchdControl
from overcast.config import loads

A, B = "vx100-1", "vx100-1-1"
GROUP = PathGroup(
    "finance",
    "branch",
    (Path(A, "finance", "branch", "isp-a"), Path(B, "finance", "branch", "isp-b")),
)
UP, DOWN = Bfd("up", "up"), Bfd("down", "down")


def hold(seconds: float = 5.0) -> HoldDown:
    return HoldDown((GROUP,), seconds)


def test_path_groups_come_from_the_plan_in_preference_order() -> None:
    config = loads("""
underlays: {isp-a: {}, isp-b: {}}
sites:
  hq:     {role: enterprise, underlay: {isp-b: 198.51.100.1, isp-a: 192.0.2.1}}
  branch: {role: enterprise, underlay: {isp-a: 192.0.2.2, isp-b: 198.51.100.2}}
  cloud:  {role: provider, underlay: {isp-b: 198.51.100.3}}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud]}
""")
    keys = {s: public_key_of(generate_private_key()) for s in config.sites}
    assert path_groups(plan_site(config, "hq", keys, prefix="oc")) == (GROUP,)  # cloud: one path


def test_paths_up_at_start_are_used_at_once() -> None:
    h = hold()
    assert h.update(0, {A: UP, B: UP}) == []
    assert h.roles({A: UP, B: UP}) == {A: "active", B: "standby"}
    assert h.held == set()


def test_failover_then_failback_only_after_the_hold_down() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    assert h.update(1, {A: DOWN, B: UP}) == [Move("finance", "branch", A, B, failback=False)]
    assert h.held == {A}  # down, and kept from the group when it returns
    assert h.update(10, {A: UP, B: UP}) == []
    assert h.roles({A: UP, B: UP}) == {A: "held", B: "active"}
    assert h.next_release(10) == 15
    assert h.update(14.9, {A: UP, B: UP}) == []
    assert h.update(15, {A: UP, B: UP}) == [Move("finance", "branch", B, A, failback=True)]
    assert h.held == set()


def test_a_flapping_path_never_draws_traffic_back() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    h.update(1, {A: DOWN, B: UP})
    for t in range(10, 40, 3):  # up 2 s, down 1 s, over and over: never 5 s in a row
        assert h.update(t, {A: UP, B: UP}) == []
        assert h.update(t + 2, {A: DOWN, B: UP}) == []
    assert h.update(40, {A: UP, B: UP}) == []
    assert h.update(45, {A: UP, B: UP}) == [Move("finance", "branch", B, A, failback=True)]


def test_a_held_path_is_released_at_once_when_the_other_dies() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    h.update(1, {A: DOWN, B: UP})
    h.update(10, {A: UP, B: UP})
    assert h.update(11, {A: UP, B: DOWN}) == [Move("finance", "branch", B, A, failback=True)]
    assert h.held == {B}


def test_a_path_coming_up_for_the_first_time_is_not_held() -> None:
    h = hold()
    h.update(0, {A: DOWN, B: DOWN})  # a site being brought up: no session up yet
    assert h.update(5, {A: DOWN, B: UP}) == [Move("finance", "branch", None, B, failback=False)]
    # Nothing failed: the preferred path is used as soon as it first comes up.
    assert h.update(6, {A: UP, B: UP}) == [Move("finance", "branch", B, A, failback=True)]
    assert h.held == set()


def test_with_nothing_up_the_first_path_back_is_used_at_once() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    h.update(1, {A: DOWN, B: DOWN})
    assert h.held == set()  # holding is only ever in favour of another live path
    assert h.update(5, {A: DOWN, B: UP}) == [Move("finance", "branch", None, B, failback=False)]
    assert h.update(6, {A: UP, B: UP}) == []
    assert h.held == {A}


def test_with_no_path_up_the_last_active_one_keeps_forwarding() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    assert h.update(1, {A: DOWN, B: DOWN}) == [Move("finance", "branch", A, None, False)]
    assert h.forced == {A} and h.held == set()  # kept forwarding, never held as well
    assert h.update(1.5, {A: DOWN, B: DOWN}) == [] and h.forced == {A}
    # Whichever session is up again first takes over from the last resort.
    assert h.update(2, {A: DOWN, B: UP}) == [Move("finance", "branch", None, B, False)]
    assert h.forced == set()
    assert h.update(3, {A: UP, B: UP}) == [] and h.held == {A}  # then A's hold-down


def test_the_last_resort_follows_the_path_that_carried_traffic() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    h.update(1, {A: DOWN, B: UP})  # failover to B
    h.update(2, {A: DOWN, B: DOWN})
    assert h.forced == {B}
    # A timed-out session is back in about a second: no hold-down with nothing else up.
    assert h.update(3, {A: DOWN, B: UP}) == [Move("finance", "branch", None, B, False)]
    assert h.forced == set() and h.held == {A}  # B carries on, A waits out its hold-down


def test_a_bounce_between_two_reports_is_seen_by_the_flap_counter() -> None:
    h = hold()
    h.update(0, {A: UP, B: UP})
    # A went down and up again between reports: OVS counted two forwarding changes.
    assert h.update(1, {A: Bfd("up", "up", flap_count=2), B: UP}) == [
        Move("finance", "branch", A, B, failback=False)
    ]
    assert h.held == {A}
    assert h.update(6, {A: Bfd("up", "up", flap_count=2), B: UP})[0].failback
    # Releasing a held port flips OVS's frozen flag once: that is not a flap.
    assert h.update(7, {A: Bfd("up", "up", flap_count=3), B: UP}) == []
    assert h.held == set()


ROUTED = """
underlays: {isp-a: {}, isp-b: {}}
sites:
  hq:     {role: enterprise, underlay: {isp-a: 192.0.2.1, isp-b: 198.51.100.1}}
  branch: {role: enterprise, underlay: {isp-a: 192.0.2.2, isp-b: 198.51.100.2}, underlay_mtu: 1460}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}
  apps:
    mode: l3
    prefixes: [10.20.0.0/16]
    sites: [hq, branch]
    announce: {hq: [10.20.1.0/24], branch: [10.20.2.0/24]}
"""


def routed_plan() -> SitePlan:
    config = loads(ROUTED)
    keys = {s: public_key_of(generate_private_key()) for s in config.sites}
    return plan_site(config, "hq", keys, prefix="oc")


def test_a_routed_prefix_rides_every_shared_network() -> None:
    hq = routed_plan()
    (route,) = hq.routes
    assert (str(route.prefix), route.interface) == ("10.20.2.0/24", "ocwg0")
    assert route.underlays == ("isp-a", "isp-b") and route.interfaces == ("ocwg0", "ocwg0-1")
    assert route.interface_on("isp-b") == "ocwg0-1"
    # Either network's tunnel may carry it, so each has it in branch's AllowedIPs, and the
    # MSS clamp is on both interfaces.
    for wg in hq.wireguard_interfaces:
        (peer,) = wg.peers
        assert ipaddress.ip_network("10.20.2.0/24") in peer.allowed_ips
    assert {c.device for c in mss.routed_clamps(hq)} == {"ocwg0", "ocwg0-1"}


class Routes:
    """A stand-in for the site's routing table: what the watcher asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def replace(self, prefix: object, interface: str) -> bool:
        self.calls.append((str(prefix), interface))
        return True


def test_routed_prefixes_follow_the_peers_active_path() -> None:
    routes = Routes()
    watch = PathWatch(
        routed_plan(),
        hold_down_s=5.0,
        ovsdb="unix:/nonexistent",
        vswitchd=VswitchdControl(FilePath("/nonexistent")),
        router=routes,  # type: ignore[arg-type]
    )
    watch._route({A: "active", B: "standby"})
    watch._route({A: "active", B: "standby"})  # nothing changed: nothing done
    watch._route({A: "down", B: "active"})  # failover
    watch._route({A: "down", B: "down"})  # no path at all: the route stays
    watch._route({A: "held", B: "active"})
    watch._route({A: "active", B: "standby"})  # failback after the hold-down
    assert routes.calls == [
        ("10.20.2.0/24", "ocwg0"),
        ("10.20.2.0/24", "ocwg0-1"),
        ("10.20.2.0/24", "ocwg0"),
    ]


ROUTED_ONLY = """
underlays: {isp-a: {}, isp-b: {}}
sites:
  hq:      {role: enterprise, underlay: {isp-a: 192.0.2.1, isp-b: 198.51.100.1}}
  branch:  {role: enterprise, underlay: {isp-a: 192.0.2.2, isp-b: 198.51.100.2}}
  cloud-a: {role: provider,   underlay: {isp-a: 192.0.2.3}}
segments:
  apps:
    mode: l3
    prefixes: [10.20.0.0/16]
    sites: [hq, branch, cloud-a]
    announce: {hq: [10.20.1.0/24], branch: [10.20.2.0/24], cloud-a: [10.20.3.0/24]}
"""


def routed_only(site: str, text: str = ROUTED_ONLY) -> SitePlan:
    config = loads(text)
    keys = {s: public_key_of(generate_private_key()) for s in config.sites}
    return plan_site(config, site, keys, prefix="oc")


def test_a_pair_with_only_routed_segments_gets_a_bfd_only_tunnel_per_path() -> None:
    hq, branch = routed_only("hq"), routed_only("branch")
    # One per path to branch, none to cloud-a (one network: nothing to fail over to).
    assert [(t.name, t.peer, t.underlay, t.vni) for t in hq.liveness] == [
        ("bfd1", "branch", "isp-a", 0),
        ("bfd1-1", "branch", "isp-b", 0),
    ]
    # The two ends of each session: the same UDP port, addresses mirrored, BFD on both.
    for mine, theirs in zip(hq.liveness, branch.liveness, strict=True):
        assert (mine.dstport, mine.local, mine.remote) == (
            theirs.dstport,
            theirs.remote,
            theirs.local,
        )
        assert mine.bfd == theirs.bfd == {"enable": "true", "min_tx": "50", "min_rx": "50"}
    # They join the switch, but carry no segment: the controller never hears of them.
    assert [t.name for t in hq.vxlan_devices()] == ["bfd1", "bfd1-1"]
    assert hq.fabric_ports() == () and list(hq.tunnels()) == []
    # The watcher follows them like a segment's paths (segment None), and moves the route.
    (group,) = path_groups(hq)
    assert (group.segment, group.peer, [p.port for p in group.paths]) == (
        None,
        "branch",
        ["bfd1", "bfd1-1"],
    )
    routes = Routes()
    watch = PathWatch(
        hq,
        hold_down_s=5.0,
        ovsdb="unix:/nonexistent",
        vswitchd=VswitchdControl(FilePath("/nonexistent")),
        router=routes,  # type: ignore[arg-type]
    )
    watch._route({"bfd1": "down", "bfd1-1": "active"})
    assert routes.calls == [("10.20.2.0/24", "ocwg0-1")]


def test_a_pair_with_an_l2_segment_needs_no_bfd_only_tunnel() -> None:
    both = ROUTED_ONLY + "  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch]}\n"
    hq = routed_only("hq", both)
    assert hq.liveness == ()
    # The routes follow the L2 segment's paths instead.
    assert [(g.segment, g.peer) for g in path_groups(hq)] == [("finance", "branch")]
