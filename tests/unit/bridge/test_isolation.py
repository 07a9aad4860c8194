"""Routed segments kept apart: which sites filter, and the nftables rules from the plan."""

from __future__ import annotations

from bridge import isolation
from bridge.keys import generate_private_key, public_key_of
from bridge.plan import SitePlan, plan_site
from overcast.config import loads

# Two routed segments on hq and branch (the integration test builds them too).
ROUTED = """\
  apps:
    mode: l3
    prefixes: [10.20.0.0/16, "2001:db8:20::/48"]
    sites: [hq, branch]
    announce: {hq: [10.20.1.0/24], branch: [10.20.2.0/24]}
  db:
    mode: l3
    prefixes: [10.30.0.0/16]
    sites: [hq, branch]
    announce: {hq: [10.30.1.0/24], branch: [10.30.2.0/24]}
"""
CONFIG = f"""\
sites:
  hq:     {{role: enterprise, underlay: 192.0.2.1}}
  branch: {{role: enterprise, underlay: 192.0.2.2}}
  cloud:  {{role: provider,   underlay: 198.51.100.1}}
segments:
  finance: {{mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}}
{ROUTED}"""
KEYS = {s: public_key_of(generate_private_key()) for s in ("hq", "branch", "cloud")}


def plan(site: str, text: str = CONFIG) -> SitePlan:
    return plan_site(loads(text), site, KEYS, prefix="oct")


def test_each_segment_is_refused_the_others_per_family() -> None:
    assert isolation.rules(plan("hq").routed_segments) == [
        "ip saddr { 10.20.0.0/16 } ip daddr { 10.30.0.0/16 } counter reject with icmpx "
        'type admin-prohibited comment "from apps"',
        "ip saddr { 10.30.0.0/16 } ip daddr { 10.20.0.0/16 } counter reject with icmpx "
        'type admin-prohibited comment "from db"',
    ]  # no IPv6 rule: db has no IPv6 prefix, so there is nothing to keep apart


def test_a_site_on_no_routed_segment_has_no_table() -> None:
    cloud = plan("cloud")
    assert cloud.routed_segments == ()
    assert isolation.render("cloud", cloud.routed_segments) == (
        "table inet overcast-segments-cloud\ndelete table inet overcast-segments-cloud\n"
    )


def test_one_routed_segment_needs_no_table_and_a_change_changes_the_digest() -> None:
    one = CONFIG[: CONFIG.index("  db:")]
    assert isolation.rules(plan("hq", one).routed_segments) == []
    both = isolation.render("hq", plan("hq").routed_segments)
    assert "type filter hook forward priority filter; policy accept;" in both
    wider = isolation.render(
        "hq", plan("hq", CONFIG.replace("10.30.0.0/16", "10.30.0.0/15")).routed_segments
    )
    assert both != wider and both.splitlines()[3] != wider.splitlines()[3]  # the comment
