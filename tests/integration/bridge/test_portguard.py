"""`bridge up` with a userspace OVS: the tunnel ports it attaches are the switch's alone.

A netdev OVS reads its ports with packet sockets, so without the guard the site's kernel
receives every frame arriving on a tunnel port too (bridge.portguard). Here branch has an
address on its tunnel to hq, and hq one on its tunnel port: hq's kernel answers branch's
ping while the port is unguarded, and stops answering once `apply_site` guards it, while
the switch still counts every frame. A switch port also never sends IPv6 (MLD, router
solicitations), not even as it first comes up. The ports an operator plugs hosts into are
guarded as well, by the next `bridge up` after they join the switch; until then `bridge
status` names them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from bridge.apply import apply_site, guard_table, remove_site, unguarded_ports
from bridge.portguard import guarded_ports
from controller.ovsdb import Ovsdb
from overcast import exitcodes
from overcast.cli import main
from tests.conftest import require_binaries
from tests.integration.bridge.sites import CONFIG, Lab, eventually, in_ns, links
from tests.integration.controller.netns import OvsSwitch
from tests.integration.lab.packets import Capture

# Long enough for a new link's first MLD report and router solicitation (RFC 4861 section
# 6.3.7: at most MAX_RTR_SOLICITATION_DELAY, 1 s, after its link-local address is usable).
IPV6_QUIET = 3.0

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def ipv6_disabled(ns: str, ifname: str) -> bool:
    out = in_ns(ns, "sysctl", "-n", f"net/ipv6/conf/{ifname}/disable_ipv6").stdout
    return out.strip() == "1"


def rx_packets(sw: OvsSwitch, bridge: str, port: str) -> int:
    found = re.search(r"rx pkts=(\d+)", sw.ofctl("dump-ports", bridge, port))
    assert found, f"no rx counter for {port} on {bridge}"
    return int(found.group(1))


def ipv6_from(capture: Capture, mac: str) -> list[str]:
    return [p.summary() for p in capture.packets if IPv6 in p and p[Ether].src == mac.lower()]


def test_the_site_kernel_never_sees_a_frame_on_a_switch_port(lab: Lab) -> None:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "nft", "sysctl")
    hq, branch = lab.plan("hq"), lab.plan("branch")
    ns, far = lab.netns["hq"], lab.netns["branch"]
    port = next(t.name for t in hq.tunnels() if t.peer == "branch")
    there = next(t.name for t in branch.tunnels() if t.peer == "hq")
    table = guard_table("hq")
    apply_site(branch, netns=far, keys=lab.keys, run_dir=lab.run_dir)
    in_ns(far, "ip", "addr", "add", "198.51.100.2/30", "dev", there)

    def kernel_answers() -> bool:
        in_ns(far, "ip", "neigh", "flush", "dev", there)
        return lab.ping("branch", "198.51.100.1")

    sw = OvsSwitch(ns)
    try:
        with Ovsdb(sw.remote) as db:
            db.ensure_bridge(hq.switch)  # the userspace (netdev) datapath
            # Without a switch the bridge leaves the tunnel to the kernel: it answers.
            apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir)
            in_ns(ns, "ip", "addr", "add", "198.51.100.1/30", "dev", port)
            eventually("hq's kernel to answer on its tunnel", kernel_answers)

            result = apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            names = sorted(t.name for t in hq.tunnels())
            assert f"disabled IPv6 on {', '.join(names)}" in result.changes
            assert any(
                c.startswith(f"guarded switch ports {', '.join(names)}") for c in result.changes
            )
            listed = in_ns(ns, "nft", "list", "table", "netdev", table).stdout
            assert all(n in listed for n in names) and "policy drop" in listed
            # Only switch ports lose IPv6: WireGuard and the underlay keep it.
            assert all(ipv6_disabled(ns, n) for n in names)
            assert not ipv6_disabled(ns, hq.wireguard.name)
            assert not any(ipv6_disabled(ns, f"u-{s}") for s in ("branch", "cloud"))

            before = rx_packets(sw, hq.switch, port)
            assert not kernel_answers(), "hq's kernel answered on a guarded switch port"
            # The frames did arrive: the switch read them, only the kernel did not.
            assert rx_packets(sw, hq.switch, port) > before

            # The guard is what stops them: gone, the kernel answers; re-applied, it does not.
            in_ns(ns, "nft", "delete", "table", "netdev", table)
            eventually("hq's kernel to answer without the guard", kernel_answers)
            again = apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert [c for c in again.changes if c.startswith("guarded")] != []
            assert not kernel_answers()
            final = apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert final.changes == ()

            removed = remove_site(hq, netns=ns, run_dir=lab.run_dir, switch=db)
            assert f"removed nftables netdev {table}" in removed
            tables = in_ns(ns, "nft", "list", "tables", "netdev").stdout
            assert table not in tables

            # Built afresh as a switch port, the tunnel never speaks IPv6, not even once
            # as it comes up; built as a plain tunnel, it does (the capture can see it).
            for switched in (None, db):
                with Capture({"branch": (far, there)}) as capture:
                    apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=switched)
                    mac = str(links(ns)[port]["address"])
                    spoke = capture.wait_for(lambda _, m=mac: ipv6_from(capture, m), IPV6_QUIET)
                assert spoke == (switched is None), ipv6_from(capture, mac)
                remove_site(hq, netns=ns, run_dir=lab.run_dir, switch=switched)
    finally:
        sw.close()


def test_access_ports_plugged_into_the_switch_are_guarded_by_the_next_up(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "nft", "sysctl")
    hq, ns, table = lab.plan("hq"), lab.netns["hq"], guard_table("hq")
    tunnels = {t.name for t in hq.tunnels()}
    config = tmp_path / "overcast.yaml"
    config.write_text(CONFIG)
    for port in ("acc1", "acc2"):  # host-facing ends, as an operator would plug them in
        in_ns(ns, "ip", "link", "add", port, "type", "veth", "peer", "name", f"{port}h")
        in_ns(ns, "ip", "link", "set", port, "up")

    def guarded() -> frozenset[str]:
        return guarded_ports(in_ns(ns, "nft", "list", "table", "netdev", table).stdout)

    def status(remote: str) -> tuple[list[str], str]:
        argv = ["--site", "hq", "--keys", str(lab.keys.directory), "--prefix", lab.prefix]
        code = main(["bridge", "status", str(config), *argv, "--netns", ns, "--ovsdb", remote])
        out = capsys.readouterr().out
        # No peer is up here, so status fails anyway: the report is what is checked.
        assert code == exitcodes.FAILURE
        main(["bridge", "status", str(config), *argv, "--netns", ns, "--ovsdb", remote, "--json"])
        return json.loads(capsys.readouterr().out)["unguarded_ports"], out

    sw = OvsSwitch(ns)
    try:
        with Ovsdb(sw.remote) as db:
            db.ensure_bridge(hq.switch)  # the userspace (netdev) datapath
            db.ensure_port(hq.switch, "acc1")
            result = apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            # The bridge's own internal port stays the kernel's way into the switch.
            assert guarded() == {"acc1", *tunnels}
            assert ipv6_disabled(ns, "acc1") and not ipv6_disabled(ns, "acc2")
            assert any(c.startswith("guarded switch ports acc1, ") for c in result.changes)
            assert unguarded_ports(hq, netns=ns, switch=db) == ()

            db.ensure_port(hq.switch, "acc2")
            assert unguarded_ports(hq, netns=ns, switch=db) == ("acc2",)
            unguarded, text = status(sw.remote)
            assert unguarded == ["acc2"] and "unguarded switch ports: acc2" in text

            apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert guarded() == {"acc1", "acc2", *tunnels} and ipv6_disabled(ns, "acc2")
            assert status(sw.remote)[0] == []

            # A port taken off the switch is the kernel's again.
            db.remove_port(hq.switch, "acc1")
            apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert guarded() == {"acc2", *tunnels}
            remove_site(hq, netns=ns, run_dir=lab.run_dir, switch=db)
    finally:
        sw.close()
