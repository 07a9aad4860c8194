"""Two underlay networks: one WireGuard interface per network, one VXLAN device per path,
BFD only where a peer has a second path."""

from __future__ import annotations

import ipaddress

from bridge.keys import generate_private_key, public_key_of
from bridge.plan import plan_site, vxlan_port
from overcast.config import loads

SINGLE = """\
sites:
  hq:      {role: enterprise, underlay: 192.0.2.1}
  branch:  {role: enterprise, underlay: 192.0.2.2}
  cloud-a: {role: provider,   underlay: 192.0.2.3}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud-a]}
"""
DUAL = """\
underlays:
  isp-a: {}
  isp-b: {}
sites:
  hq:      {role: enterprise, underlay: {isp-a: 192.0.2.1, isp-b: 198.51.100.1}}
  branch:  {role: enterprise, underlay: {isp-a: 192.0.2.2, isp-b: 198.51.100.2}}
  cloud-a: {role: provider,   underlay: {isp-a: 192.0.2.3}}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, branch, cloud-a]}
bridge: {failover: {bfd_interval_ms: 30}}
"""
KEYS = {s: public_key_of(generate_private_key()) for s in ("hq", "branch", "cloud-a")}


def test_one_wireguard_interface_per_network_with_its_own_overlay_and_port() -> None:
    hq = plan_site(loads(DUAL), "hq", KEYS, prefix="oc")
    a, b = hq.wireguard_interfaces
    assert (a.name, a.underlay, str(a.address), a.listen_port) == (
        "ocwg0",
        "isp-a",
        "100.64.0.1",
        51820,
    )
    assert (b.name, b.underlay, str(b.address), b.listen_port) == (
        "ocwg0-1",
        "isp-b",
        "100.64.1.1",
        51821,
    )
    assert [(p.site, p.endpoint) for p in a.peers] == [
        ("branch", "192.0.2.2:51820"),
        ("cloud-a", "192.0.2.3:51820"),
    ]
    # cloud-a is not on isp-b: branch is the only peer there.
    assert [(p.site, p.endpoint) for p in b.peers] == [("branch", "198.51.100.2:51821")]
    assert b.peers[0].allowed_ips == (ipaddress.ip_network("100.64.1.2/32"),)


def test_one_vxlan_device_per_path_and_bfd_only_with_a_second_path() -> None:
    config = loads(DUAL)
    hq = plan_site(config, "hq", KEYS, prefix="oc")
    tunnels = {t.name: t for t in hq.tunnels()}
    assert sorted(tunnels) == ["vx100-1", "vx100-1-1", "vx100-2"]
    main, backup, cloud = tunnels["vx100-1"], tunnels["vx100-1-1"], tunnels["vx100-2"]
    assert (main.underlay, str(main.remote), main.dstport) == ("isp-a", "100.64.0.2", 4789)
    # Network 1's ports come after every pair's port on network 0 (3 pairs).
    assert (backup.underlay, str(backup.remote), backup.dstport) == ("isp-b", "100.64.1.2", 4792)
    assert main.bfd == backup.bfd == {"enable": "true", "min_tx": "30", "min_rx": "30"}
    assert cloud.bfd == {}  # its only path: nothing to fail over to
    # Both ends compute the same port for a path.
    assert vxlan_port(config, "branch", "hq", "isp-b") == 4792
    ports = [t.name for t in hq.fabric_ports()]
    assert ports == list(tunnels)


def test_adding_a_second_network_keeps_the_first_networks_tunnels() -> None:
    single = plan_site(loads(SINGLE), "hq", KEYS, prefix="oc")
    dual = plan_site(loads(DUAL), "hq", KEYS, prefix="oc")
    first = {
        t.name: (t.dstport, t.remote, t.local) for t in dual.tunnels() if t.underlay == "isp-a"
    }
    assert first == {t.name: (t.dstport, t.remote, t.local) for t in single.tunnels()}
    assert single.wireguard.name == dual.wireguard.name == "ocwg0"
