"""Three sites in throwaway namespaces, a veth underlay between each pair, real wireguard-go
(or the kernel module when present) and real kernel VXLAN devices.

Every site pair shares the segment, so each namespace holds two VXLAN devices with the
same VNI: this also checks on the real kernel that per-pair UDP ports keep them apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import wireguard
from bridge.apply import apply_site, owner_alias, remove_site
from bridge.keys import KeyStore
from bridge.netns import ApplyError
from controller.ovsdb import Ovsdb
from overcast.config import loads
from tests.conftest import require_binaries
from tests.integration.bridge.sites import CONFIG, Lab, eventually, in_ns, links, sh
from tests.integration.controller.netns import OvsSwitch

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def test_sites_handshake_ping_and_carry_full_size_frames(lab: Lab) -> None:
    plans = {site: lab.plan(site) for site in lab.netns}
    applied = {
        site: apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
        for site, plan in plans.items()
    }
    hq = plans["hq"]

    # WireGuard: the overlay answers and the handshake is recorded.
    for peer in hq.wireguard.peers:
        remote = plans[peer.site].wireguard.address
        eventually(f"ping hq -> {peer.site} over WireGuard", lambda r=remote: lab.ping("hq", r))
    shown = in_ns(lab.netns["hq"], "wg", "show", hq.wireguard.name, "latest-handshakes").stdout
    handshakes = dict(line.split("\t") for line in shown.splitlines())
    assert set(handshakes) == {p.public_key for p in hq.wireguard.peers}
    assert all(int(t) > 0 for t in handshakes.values())
    assert all(
        s.latest_handshake > 0
        for s in wireguard.show(lab.netns["hq"], hq.wireguard.name).peers.values()
    )

    # VXLAN: two devices per site with one VNI, told apart by the per-pair port.
    for site, plan in plans.items():
        present = links(lab.netns[site])
        assert present[plan.wireguard.name]["mtu"] == plan.wireguard.mtu == 1440
        for t in plan.tunnels():
            info = present[t.name]["linkinfo"]["info_data"]  # type: ignore[index]
            assert (info["id"], info["port"], info["remote"]) == (t.vni, t.dstport, str(t.remote))
            assert present[t.name]["mtu"] == t.mtu == 1390
            assert present[t.name]["ifalias"] == owner_alias(site)
        assert len({t.dstport for t in plan.tunnels()}) == 2

    # A full inner-MTU frame with DF crosses VXLAN inside WireGuard; one byte more does not fit.
    lab.full_frames_cross(plans, "hq", "cloud")

    # Re-applying changes nothing, and the tunnels stay up.
    indexes = {site: {n: links(ns)[n]["ifindex"] for n in applied[site].links}
               for site, ns in lab.netns.items()}  # fmt: skip
    for site, plan in plans.items():
        again = apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
        assert again.changes == ()
        assert again.wireguard_pid == applied[site].wireguard_pid
        assert {n: links(lab.netns[site])[n]["ifindex"] for n in again.links} == indexes[site]

    # Removing everything leaves only the underlay, no process and no socket.
    for site, plan in plans.items():
        ns = lab.netns[site]
        removed = remove_site(plan, netns=ns, run_dir=lab.run_dir)
        assert set(links(ns)) == {"lo", *(f"u-{s}" for s in lab.netns if s != site)}
        if applied[site].backend == "wireguard-go":
            assert f"stopped wireguard-go for {plan.wireguard.name}" in removed
            pid = applied[site].wireguard_pid
            assert not Path(f"/proc/{pid}").exists()
        assert not wireguard.uapi_socket(plan.wireguard.name).exists()
        assert remove_site(plan, netns=ns, run_dir=lab.run_dir) == ()
    assert list(lab.run_dir.iterdir()) == []


IPV6 = """\
sites:
  hq:    {role: enterprise, underlay: "2001:db8::1"}
  cloud: {role: provider, underlay: "2001:db8::2"}
segments:
  finance: {mode: l2, vni: 100, vlan: 10, sites: [hq, cloud]}
bridge: {overlay_pool: "fd00:6f63::/64"}
"""


@pytest.mark.parametrize("lab", [IPV6], indirect=True)
def test_ipv6_underlay_and_overlay(lab: Lab) -> None:
    plans = {site: lab.plan(site) for site in lab.netns}
    for site, plan in plans.items():
        apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
    cloud = plans["cloud"].wireguard.address
    eventually("ping6 hq -> cloud over WireGuard", lambda: lab.ping("hq", cloud))
    hq = plans["hq"]
    assert hq.wireguard.peers[0].endpoint == "[2001:db8::2]:51820"
    present = links(lab.netns["hq"])
    assert present[hq.wireguard.name]["mtu"] == 1420  # 1500 - 40 IPv6 - 8 UDP - 32
    (tunnel,) = hq.tunnels()
    assert present[tunnel.name]["mtu"] == tunnel.mtu == 1350  # VXLAN over IPv6: 70
    assert present[tunnel.name]["linkinfo"]["info_data"]["remote6"] == str(cloud)  # type: ignore[index]
    lab.full_frames_cross(plans, "hq", "cloud")
    for site, plan in plans.items():
        assert (
            apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir).changes
            == ()
        )


def test_changed_plan_converges(lab: Lab) -> None:
    first = lab.plan("hq")
    ns = lab.netns["hq"]
    apply_site(first, netns=ns, keys=lab.keys, run_dir=lab.run_dir)
    assert {t.name for t in first.tunnels()} <= set(links(ns))

    # branch leaves the segment and so stops being hq's peer; the pool moves.
    changed = loads(
        CONFIG.replace("[hq, branch, cloud]", "[hq, cloud]")
        + "bridge: {overlay_pool: 100.64.7.0/24}\n"
    )
    second = lab.plan("hq", changed)
    result = apply_site(second, netns=ns, keys=lab.keys, run_dir=lab.run_dir)
    gone = {t.name for t in first.tunnels()} - {t.name for t in second.tunnels()}
    assert gone and all(f"deleted {name}" in result.changes for name in gone)
    present = links(ns)
    assert not gone & set(present)
    assert [p.site for p in second.wireguard.peers] == ["cloud"]
    status = wireguard.show(ns, second.wireguard.name)
    assert set(status.peers) == {second.wireguard.peers[0].public_key}
    addrs = sh("ip", "-4", "-j", "-n", ns, "addr", "show", "dev", second.wireguard.name).stdout
    assert [a["local"] for a in json.loads(addrs)[0]["addr_info"]] == ["100.64.7.1"]
    for t in second.tunnels():  # replaced: new remote address
        assert present[t.name]["linkinfo"]["info_data"]["remote"] == str(t.remote)  # type: ignore[index]
    assert apply_site(second, netns=ns, keys=lab.keys, run_dir=lab.run_dir).changes == ()


def test_errors_name_the_fix(lab: Lab) -> None:
    plan = lab.plan("hq")
    with pytest.raises(ApplyError, match=r"does not exist; create it first \(ip netns add"):
        apply_site(plan, netns="ocbr-no-such-ns", keys=lab.keys, run_dir=lab.run_dir)
    other = KeyStore(lab.run_dir / "other-keys")
    other.ensure("hq")
    with pytest.raises(ApplyError, match="does not belong to the plan's public key"):
        apply_site(plan, netns=lab.netns["hq"], keys=other, run_dir=lab.run_dir)
    # The interface name is taken by a non-WireGuard link.
    in_ns(lab.netns["hq"], "ip", "link", "add", plan.wireguard.name, "type", "veth",
          "peer", "name", "oc-tmp")  # fmt: skip
    with pytest.raises(ApplyError, match="not a live WireGuard interface; remove it"):
        apply_site(plan, netns=lab.netns["hq"], keys=lab.keys, run_dir=lab.run_dir)


def test_tunnels_join_the_site_switch(lab: Lab) -> None:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool")
    ns = lab.netns["hq"]
    first = lab.plan("hq")
    sw = OvsSwitch(ns)
    try:
        with Ovsdb(sw.remote) as db:
            with pytest.raises(ApplyError, match=r"OVS bridge .* does not exist; create it"):
                apply_site(first, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert first.wireguard.name not in links(ns)  # nothing half-built
            db.ensure_bridge(first.switch)
            result = apply_site(first, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            names = [t.name for t in first.tunnels()]
            assert all(f"added port {n} to {first.switch}" in result.changes for n in names)
            assert all(db.ofport(n) for n in names)
            again = apply_site(first, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert again.changes == ()

            # A tunnel that leaves the plan leaves the switch too.
            changed = loads(CONFIG.replace("[hq, branch, cloud]", "[hq, cloud]"))
            second = lab.plan("hq", changed)
            apply_site(second, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            kept = [t.name for t in second.tunnels()]
            assert set(db.ports(first.switch)) == {first.switch, *kept}

            remove_site(second, netns=ns, run_dir=lab.run_dir, switch=db)
            assert db.ports(first.switch) == [first.switch]
    finally:
        sw.close()


def test_reapply_recovers_a_lost_tunnel(lab: Lab) -> None:
    """The tunnel dies behind our back (wireguard-go killed, or the kernel link deleted) and
    a re-apply brings it back. Both backends are covered, so this never skips in CI."""
    plans = {site: lab.plan(site) for site in ("hq", "cloud")}
    applied = {
        site: apply_site(plan, netns=lab.netns[site], keys=lab.keys, run_dir=lab.run_dir)
        for site, plan in plans.items()
    }
    cloud = plans["cloud"].wireguard.address
    eventually("ping hq -> cloud", lambda: lab.ping("hq", cloud))
    name = plans["hq"].wireguard.name
    pid = applied["hq"].wireguard_pid
    if applied["hq"].backend == "wireguard-go":
        assert pid is not None
        sh("kill", "-KILL", str(pid))
        eventually("the tunnel to vanish", lambda: name not in links(lab.netns["hq"]))
        # Killed behind our back, it is still reaped: no zombie stays in /proc.
        eventually("wireguard-go to be reaped", lambda: not Path(f"/proc/{pid}").exists())
    else:
        sh("ip", "-n", lab.netns["hq"], "link", "del", name)
    assert not lab.ping("hq", cloud), "the tunnel still carries traffic"

    again = apply_site(plans["hq"], netns=lab.netns["hq"], keys=lab.keys, run_dir=lab.run_dir)
    assert again.changes, "re-apply found nothing to repair"
    if again.backend == "wireguard-go":
        assert again.wireguard_pid not in (None, pid)
        assert any(c.startswith(f"started wireguard-go for {name}") for c in again.changes)
    eventually("ping hq -> cloud after recovery", lambda: lab.ping("hq", cloud))
