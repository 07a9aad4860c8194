"""The `bridge:` section and its cross-checks, through the one config loader."""

from __future__ import annotations

import pytest

from overcast.config import InvalidConfig, loads

SITES = """\
sites:
  hq:    {role: enterprise, underlay: 192.0.2.1}
  cloud: {role: provider, underlay: 198.51.100.1}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        loads(text, "t.yaml")
    return [e.render() for e in info.value.errors]


def test_defaults() -> None:
    bridge = loads(SITES).bridge
    assert str(bridge.overlay_pool) == "100.64.0.0/24"
    assert bridge.vxlan_port_base == 4789


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "bridge: {overlay_pool: 100.64.0.0/31}",
            "bridge.overlay_pool: 100.64.0.0/31 holds too few",
        ),
        ("bridge: {overlay_pool: 192.0.2.0/24}", "contains the underlay 192.0.2.1 of sites.hq"),
        (
            "bridge: {overlay_pool: 100.64.0.1/24}",
            "has host bits set; write the prefix 100.64.0.0/24",
        ),
        ("bridge: {colour: blue}", "bridge.colour: unknown key 'colour'"),
    ],
)
def test_bad_bridge_section(extra: str, message: str) -> None:
    assert any(message in e for e in errors_of(SITES + extra)), errors_of(SITES + extra)


THREE_SITES = SITES.replace("segments:", "  c: {role: provider, underlay: 203.0.113.1}\nsegments:")


def test_pool_size_counts_usable_addresses() -> None:
    loads(SITES + "bridge: {overlay_pool: 100.64.0.0/30}")  # two usable: enough for two sites
    text = THREE_SITES
    assert any(
        "100.64.0.0/30 has 2 addresses for 3 sites" in e
        for e in errors_of(text + "bridge: {overlay_pool: 100.64.0.0/30}")
    )


def test_pool_must_not_overlap_a_routed_segment() -> None:
    text = SITES + "  apps: {mode: l3, prefixes: [100.64.0.0/16], sites: [hq, cloud]}\n"
    assert any("overlaps 100.64.0.0/16 of segments.apps" in e for e in errors_of(text))


def test_mixed_underlay_families_in_one_segment() -> None:
    text = SITES.replace("198.51.100.1", '"2001:db8::1"')
    assert any(
        "segments.finance.sites: sites hq (IPv4), cloud (IPv6) mix IPv4 and IPv6" in e
        for e in errors_of(text)
    )


def test_vxlan_ports_must_fit_for_every_pair() -> None:
    loads(SITES + "bridge: {vxlan_port_base: 65535}")  # one pair, one port
    assert any(
        "3 sites need UDP ports 65534-65536 (one per site pair); lower the base to at most 65533"
        in e
        for e in errors_of(THREE_SITES + "bridge: {vxlan_port_base: 65534}")
    )
