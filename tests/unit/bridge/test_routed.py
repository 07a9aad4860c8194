"""Routed (L3) segments in the pure plan: who announces what, AllowedIPs, routes, per-path
MSS, the IPv6 minimum MTU, revoked peers; and the nftables clamp rules rendered from it."""

from __future__ import annotations

import ipaddress

import pytest

from bridge import mss
from bridge.keys import generate_private_key, public_key_of
from bridge.plan import PlanError, SitePlan, plan_site
from overcast.config import InvalidConfig, OvercastConfig, loads

CONFIG = """\
sites:
  hq:      {role: enterprise, underlay: 192.0.2.1}
  branch:  {role: enterprise, underlay: 192.0.2.2, underlay_mtu: 1460}
  cloud-a: {role: provider,   underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud-a]}
  apps:
    mode: l3
    prefixes: [10.20.0.0/16, "2001:db8:20::/48"]
    sites: [hq, branch, cloud-a]
    announce:
      hq: [10.20.1.0/24]
      branch: [10.20.2.0/24, "2001:db8:20:2::/64"]
      cloud-a: [10.20.3.0/24]
"""
KEYS = {s: public_key_of(generate_private_key()) for s in ("hq", "branch", "cloud-a")}


def plan(site: str, text: str = CONFIG, revoked: frozenset[str] = frozenset()) -> SitePlan:
    return plan_site(loads(text), site, KEYS, prefix="oct", revoked=revoked)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_announced_prefixes_ride_allowed_ips_and_routes() -> None:
    hq = plan("hq")
    allowed = {p.site: p.allowed_ips for p in hq.wireguard.peers}
    assert allowed == {
        "branch": (net("100.64.0.2/32"), net("10.20.2.0/24"), net("2001:db8:20:2::/64")),
        "cloud-a": (net("100.64.0.3/32"), net("10.20.3.0/24")),
    }
    assert [(str(r.prefix), r.peer, r.path_mtu, r.mss) for r in hq.routes] == [
        # hq - branch: branch's underlay is 1460, so WireGuard 1400 on that path.
        ("10.20.2.0/24", "branch", 1400, 1360),
        ("2001:db8:20:2::/64", "branch", 1400, 1340),
        ("10.20.3.0/24", "cloud-a", 1440, 1400),
    ]
    assert hq.announced == (net("10.20.1.0/24"),)


def test_a_moved_prefix_moves_peer_and_route() -> None:
    moved = CONFIG.replace("cloud-a: [10.20.3.0/24]", "cloud-a: []").replace(
        "hq: [10.20.1.0/24]", "hq: [10.20.1.0/24, 10.20.3.0/24]"
    )
    branch = plan("branch", moved)
    assert [(str(r.prefix), r.peer) for r in branch.routes] == [
        ("10.20.1.0/24", "hq"),
        ("10.20.3.0/24", "hq"),
    ]
    # Where it lives now, it is no route at all.
    assert "10.20.3.0/24" not in [str(r.prefix) for r in plan("hq", moved).routes]


def test_revoked_peer_leaves_allowed_ips_routes_and_tunnels() -> None:
    hq = plan("hq", revoked=frozenset({"cloud-a"}))
    assert [p.site for p in hq.wireguard.peers] == ["branch"]
    assert {r.peer for r in hq.routes} == {"branch"}
    assert list(hq.tunnels()) == []
    with pytest.raises(PlanError, match="site 'cloud-a' is revoked; give it a new key"):
        plan("cloud-a", revoked=frozenset({"cloud-a"}))


def test_ipv6_over_a_path_below_1280_is_refused() -> None:
    narrow = CONFIG.replace("underlay_mtu: 1460", "underlay_mtu: 1300")
    with pytest.raises(PlanError, match=r"below IPv6's minimum of 1280 \(RFC 8200 section 5\)"):
        plan("hq", narrow)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "cloud-a: [10.20.3.0/24]",
            "lonely: [10.20.3.0/24]",
            "segments.apps.announce.lonely: site 'lonely' is not in this segment's sites",
        ),
        (
            "cloud-a: [10.20.3.0/24]",
            "cloud-a: [10.30.0.0/24]",
            "segments.apps.announce.cloud-a.0: 10.30.0.0/24 is outside the segment's prefixes",
        ),
        (
            "cloud-a: [10.20.3.0/24]",
            "cloud-a: [10.20.2.128/25]",
            "segments.apps.announce.cloud-a.0: 10.20.2.128/25 overlaps 10.20.2.0/24 announced "
            "by site branch",
        ),
    ],
)
def test_bad_announcements_name_the_fix(old: str, new: str, expected: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        loads(CONFIG.replace(old, new))
    assert expected in str(err.value)


def test_clamp_rules_per_path_and_family() -> None:
    hq = plan("hq")
    routed = mss.render(mss.ROUTED, "t", mss.routed_clamps(hq))
    assert (
        'oifname "octwg0" ip daddr 10.20.2.0/24 tcp flags & (syn | rst) == syn '
        "tcp option maxseg size > 1360 tcp option maxseg size set 1360"
    ) in routed
    assert 'oifname "octwg0" ip6 daddr 2001:db8:20:2::/64' in routed
    assert "hook postrouting priority mangle" in routed
    stretched = mss.render(mss.STRETCHED, "t", mss.stretched_clamps(hq))
    # finance: hq and cloud-a at 1500 -> WireGuard 1440 -> VXLAN 1390.
    assert 'type filter hook egress device "vx100-2" priority 0;' in stretched
    assert "meta protocol ip tcp flags & (syn | rst) == syn tcp option maxseg size > 1350" in (
        stretched
    )
    assert "meta protocol ip6 tcp flags & (syn | rst) == syn tcp option maxseg size > 1330" in (
        stretched
    )
    # The digest changes with the rules, so a changed plan rewrites the table.
    assert mss.digest(mss.ROUTED, mss.routed_clamps(hq)) != mss.digest(
        mss.ROUTED, mss.routed_clamps(plan("branch"))
    )
    assert mss.render(mss.ROUTED, "t", ()) == "table inet t\ndelete table inet t\n"


def test_config_without_announcements_routes_nothing() -> None:
    text = CONFIG.split("    announce:")[0]
    config: OvercastConfig = loads(text)
    assert plan_site(config, "hq", KEYS, prefix="oct").routes == ()
