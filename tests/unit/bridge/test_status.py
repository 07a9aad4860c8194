"""Tunnel rows from a plan and what was read (pure), and the metrics made from them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from bridge.keys import generate_private_key, public_key_of
from bridge.metrics import TunnelCollector
from bridge.plan import plan_site
from bridge.status import TunnelStatus, render, tunnel_rows
from bridge.wireguard import InterfaceStatus, PeerStatus
from overcast.config import loads

CONFIG = """\
sites:
  hq:    {role: enterprise, underlay: 192.0.2.1}
  cloud: {role: provider, underlay: 198.51.100.1, underlay_mtu: 1460}
  dc:    {role: enterprise, underlay: 192.0.2.3}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}
  apps: {mode: l3, prefixes: [10.20.0.0/16], sites: [hq, dc]}
"""
KEYS = {s: public_key_of(generate_private_key()) for s in ("hq", "cloud", "dc")}
NOW = 1_000_000


def rows() -> tuple[TunnelStatus, ...]:
    plan = plan_site(loads(CONFIG), "hq", KEYS, prefix="oct")
    wg = plan.wireguard
    cloud = PeerStatus(KEYS["cloud"], "198.51.100.1:51820", frozenset(), NOW - 12, 2048, 4096, 25)
    live = InterfaceStatus(private_key="", listen_port=51820, peers={KEYS["cloud"]: cloud})
    return tunnel_rows(plan, {wg.name: live}, {wg.name: ("wireguard-go", 1440)}, NOW)


def test_one_row_per_peer_and_path() -> None:
    cloud, dc = rows()
    seen = (cloud.site, cloud.backend, cloud.endpoint, cloud.handshake_age_s)
    assert seen == ("cloud", "wireguard-go", "198.51.100.1:51820", 12)
    # The effective MTU is capped by cloud's narrower underlay: 1460 - 60.
    assert (cloud.mtu, cloud.inner_mtu, cloud.up) == (1400, 1350, True)
    # dc is routed only (no VXLAN), and its key is not on the live interface.
    assert (dc.configured, dc.handshake_age_s, dc.inner_mtu, dc.up) == (False, None, None, False)
    table = render((cloud, dc))
    assert "12s ago" in table[1] and "2.0 KiB" in table[1] and "4.0 KiB" in table[1]
    assert "no peer" in table[2]


def test_metrics_per_tunnel() -> None:
    registry = CollectorRegistry()
    registry.register(TunnelCollector("hq", rows))
    text = generate_latest(registry).decode()
    labels = 'interface="octwg0",peer="cloud",site="hq",underlay="underlay"'
    assert f"overcast_bridge_tunnel_up{{{labels}}} 1.0" in text
    assert f"overcast_bridge_tunnel_handshake_age_seconds{{{labels}}} 12.0" in text
    assert f"overcast_bridge_tunnel_receive_bytes_total{{{labels}}} 2048.0" in text
    assert f"overcast_bridge_tunnel_mtu_bytes{{{labels}}} 1400.0" in text
    assert 'backend="wireguard-go"' in text
    assert 'overcast_bridge_tunnel_up{interface="octwg0",peer="dc"' in text
    assert 'handshake_age_seconds{interface="octwg0",peer="dc"' not in text
