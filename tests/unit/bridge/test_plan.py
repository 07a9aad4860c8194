"""The pure site plan: addressing, peers, per-peer VXLAN tunnels, ports and MTUs."""

from __future__ import annotations

import ipaddress
import pathlib

import pytest
import wgconfig

from bridge import wireguard
from bridge.keys import generate_private_key, public_key_of
from bridge.plan import PlanError, SitePlan, plan_site, vxlan_port
from overcast.config import OvercastConfig, loads
from overcast.fabric import FabricPort

CONFIG = """\
sites:
  hq:      {role: enterprise, underlay: 192.0.2.1}
  branch:  {role: enterprise, underlay: 192.0.2.2}
  cloud-a: {role: provider,   underlay: 198.51.100.1}
  cloud-b: {role: provider,   underlay: 203.0.113.1, underlay_mtu: 9000}
  lonely:  {role: enterprise, underlay: 192.0.2.9}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud-a, cloud-b]}
  hr:      {mode: l2, vni: 200, vlan: 20, sites: [hq, cloud-b]}
  apps:    {mode: l3, prefixes: [10.20.0.0/16], sites: [hq, branch, cloud-a]}
"""

KEYS = {
    s: public_key_of(generate_private_key())
    for s in ("hq", "branch", "cloud-a", "cloud-b", "lonely")
}


@pytest.fixture(scope="module")
def config() -> OvercastConfig:
    return loads(CONFIG)


def plan(config: OvercastConfig, site: str, prefix: str = "oct1") -> SitePlan:
    return plan_site(config, site, KEYS, prefix=prefix)


def test_wireguard_interface_and_peers(config: OvercastConfig) -> None:
    hq = plan(config, "hq")
    wg = hq.wireguard
    assert wg.name == "oct1wg0"
    assert wg.public_key == KEYS["hq"]
    assert wg.listen_port == 51820
    assert (str(wg.address), wg.prefixlen) == ("100.64.0.1", 24)
    assert wg.mtu == 1440  # 1500 - 20 IPv4 - 8 UDP - 32 WireGuard
    assert [p.site for p in wg.peers] == ["branch", "cloud-a", "cloud-b"]
    cloud_a = wg.peers[1]
    assert cloud_a.public_key == KEYS["cloud-a"]
    assert cloud_a.endpoint == "198.51.100.1:51820"
    assert cloud_a.allowed_ips == (ipaddress.ip_network("100.64.0.3/32"),)
    assert cloud_a.persistent_keepalive == 25


def test_peers_are_symmetric(config: OvercastConfig) -> None:
    for site in config.sites:
        for peer in plan(config, site).wireguard.peers:
            assert site in [p.site for p in plan(config, peer.site).wireguard.peers]


def test_one_vxlan_device_per_segment_and_peer(config: OvercastConfig) -> None:
    hq = plan(config, "hq")
    assert [(s.segment, [t.peer for t in s.tunnels]) for s in hq.segments] == [
        ("finance", ["cloud-a", "cloud-b"]),
        ("hr", ["cloud-b"]),
    ]
    t = hq.segments[0].tunnels[0]
    assert (t.name, t.vni, str(t.local), str(t.remote)) == (
        "vx100-2",
        100,
        "100.64.0.1",
        "100.64.0.3",
    )
    # The L3-only peer gets WireGuard but no VXLAN.
    assert "branch" not in [t.peer for t in hq.tunnels()]


def test_both_ends_agree_on_vxlan_port_and_addresses(config: OvercastConfig) -> None:
    plans = {s: plan(config, s) for s in config.sites}
    for site, p in plans.items():
        for t in p.tunnels():
            back = next(
                u for u in plans[t.peer].tunnels() if u.peer == site and u.segment == t.segment
            )
            assert (back.dstport, back.vni, back.mtu) == (t.dstport, t.vni, t.mtu)
            assert (back.local, back.remote) == (t.remote, t.local)


def test_vxlan_ports_unique_per_pair_and_same_vni_never_shares_a_port(
    config: OvercastConfig,
) -> None:
    names = list(config.sites)
    ports = {vxlan_port(config, a, b) for i, a in enumerate(names) for b in names[i + 1 :]}
    assert len(ports) == len(names) * (len(names) - 1) // 2
    assert min(ports) == 4789
    for site in names:
        used = [(t.vni, t.dstport) for t in plan(config, site).tunnels()]
        assert len(used) == len(set(used))


def test_ports_of_existing_pairs_survive_appending_a_site(config: OvercastConfig) -> None:
    bigger = loads(
        CONFIG.replace("segments:", "  extra: {role: provider, underlay: 203.0.113.9}\nsegments:")
    )
    for a in config.sites:
        for b in config.sites:
            if a != b:
                assert vxlan_port(config, a, b) == vxlan_port(bigger, a, b)


def test_segment_mtu_is_the_narrowest_path(config: OvercastConfig) -> None:
    cloud_b = plan(config, "cloud-b")
    assert cloud_b.wireguard.mtu == 8940  # its own underlay is jumbo
    finance, hr = cloud_b.segments
    # ...but the segment also reaches 1500-byte sites: 1440 - 50 VXLAN = 1390.
    assert (finance.inner_mtu, hr.inner_mtu) == (1390, 1390)
    assert all(t.mtu == 1390 for t in cloud_b.tunnels())
    assert (finance.mss_ipv4, finance.mss_ipv6) == (1350, 1330)


def test_ipv6_underlay_and_tagged_inner_frames() -> None:
    config = loads(
        """\
sites:
  a: {role: enterprise, underlay: "2001:db8::1"}
  b: {role: provider, underlay: "2001:db8::2", wireguard_port: 51999}
segments:
  s: {mode: l2, vni: 7, vlan: 7, sites: [a, b]}
bridge: {inner_vlan_tag: true}
"""
    )
    a = plan_site(config, "a", {"a": KEYS["hq"], "b": KEYS["branch"]}, prefix="x")
    assert a.wireguard.mtu == 1420  # 1500 - 40 IPv6 - 8 - 32
    assert a.wireguard.peers[0].endpoint == "[2001:db8::2]:51999"
    assert a.segments[0].inner_mtu == 1420 - 50 - 4


def test_ipv6_overlay_pool() -> None:
    config = loads(
        """\
sites:
  a: {role: enterprise, underlay: 192.0.2.1}
  b: {role: provider, underlay: 192.0.2.2}
segments:
  s: {mode: l2, vni: 7, vlan: 7, sites: [a, b]}
bridge: {overlay_pool: "fd00:6f63::/64"}
"""
    )
    a = plan_site(config, "a", {"a": KEYS["hq"], "b": KEYS["branch"]}, prefix="x")
    assert str(a.wireguard.address) == "fd00:6f63::1"
    assert a.wireguard.peers[0].allowed_ips == (ipaddress.ip_network("fd00:6f63::2/128"),)
    assert a.segments[0].inner_mtu == 1440 - 70  # VXLAN over IPv6


def test_site_without_segments_has_no_peers(config: OvercastConfig) -> None:
    lonely = plan(config, "lonely")
    assert lonely.wireguard.peers == () and lonely.segments == ()
    assert lonely.wireguard.name == "oct1wg4"


def test_fabric_ports(config: OvercastConfig) -> None:
    u = "underlay"  # a config without `underlays:` has one network of this name
    assert plan(config, "hq").fabric_ports() == (
        FabricPort(name="vx100-2", kind="tunnel", segment="finance", peer="cloud-a", underlay=u),
        FabricPort(name="vx100-3", kind="tunnel", segment="finance", peer="cloud-b", underlay=u),
        FabricPort(name="vx200-3", kind="tunnel", segment="hr", peer="cloud-b", underlay=u),
    )


def test_plan_has_no_secrets_and_round_trips_json(config: OvercastConfig) -> None:
    p = plan(config, "hq")
    assert SitePlan.model_validate_json(p.model_dump_json()) == p


@pytest.mark.parametrize(
    ("site", "keys", "prefix", "message"),
    [
        ("nowhere", KEYS, "oc", "unknown site 'nowhere'; use one of: hq, branch"),
        ("hq", {"hq": KEYS["hq"]}, "oc", "no public key for site 'branch'"),
        (
            "hq",
            KEYS | {"cloud-a": "bm90IGEga2V5"},
            "oc",
            "public key of site 'cloud-a' is not a WireGuard key",
        ),
        (
            "hq",
            KEYS,
            "much-too-long",
            "use a prefix of lower-case letters, digits or '-' of at most 12",
        ),
        ("hq", KEYS, "Bad", "interface prefix 'Bad'"),
    ],
)
def test_plan_errors_name_the_fix(
    config: OvercastConfig, site: str, keys: dict[str, str], prefix: str, message: str
) -> None:
    with pytest.raises(PlanError) as info:
        plan_site(config, site, keys, prefix=prefix)
    assert message in str(info.value)


def test_rendered_wg_config_reads_back_as_the_plan(
    config: OvercastConfig, tmp_path: pathlib.Path
) -> None:
    wg = plan(config, "hq").wireguard
    private = generate_private_key()
    path = tmp_path / "wg.conf"
    path.write_text(wireguard.render(wg, private))
    parsed = wgconfig.WGConfig(str(path))
    parsed.read_file()
    assert parsed.interface["PrivateKey"] == private
    assert parsed.interface["ListenPort"] == wg.listen_port
    assert (
        set(parsed.peers)
        == {p.public_key for p in wg.peers}
        == {KEYS[s] for s in ("branch", "cloud-a", "cloud-b")}
    )
    for peer in wg.peers:
        got = parsed.peers[peer.public_key]
        assert got["Endpoint"] == peer.endpoint
        assert got["AllowedIPs"] == ", ".join(str(n) for n in peer.allowed_ips)
