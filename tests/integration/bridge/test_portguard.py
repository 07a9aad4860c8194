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

from bridge import portguard
from bridge.apply import apply_site, guard_table, port_guards, remove_site
from bridge.plan import SitePlan
from bridge.portguard import guarded_ports
from controller.ovsdb import Ovsdb
from overcast import exitcodes
from overcast.cli import main
from tests.conftest import require_binaries
from tests.integration.bridge.sites import CONFIG, Lab, eventually, in_ns, links, sh
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


def unguarded(plan: SitePlan, ns: str, db: Ovsdb) -> list[str]:
    return [g.port.name for g in port_guards(plan, netns=ns, switch=db) if g.unguarded]


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
            assert unguarded(hq, ns, db) == []

            db.ensure_port(hq.switch, "acc2")
            assert unguarded(hq, ns, db) == ["acc2"]
            left, text = status(sw.remote)
            assert left == ["acc2"] and re.search(r"acc2 +system +switch port +UNGUARDED", text)

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


# hq alone: no peers, so `bridge status` fails only for the switch's ports.
ALONE = "sites:\n  hq: {role: enterprise, underlay: 192.0.2.1}\n"


@pytest.mark.parametrize("lab", [ALONE], indirect=True)
def test_internal_ports_stay_the_kernels_while_system_ports_are_the_switchs(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host on hq's switch reaches hq's kernel through an internal port (mgmt) that the
    guard leaves alone; the kernel side of the host's own switch port (sw0, a veth) hears
    nothing once guarded. Guarding mgmt too, as the rule before interface types did, cuts
    the kernel off, and `bridge status` says so."""
    require_binaries("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "nft", "sysctl")
    hq, ns, table = lab.plan("hq"), lab.netns["hq"], guard_table("hq")
    host = f"{ns}-host"
    config = tmp_path / "overcast.yaml"
    config.write_text(ALONE)

    def answers(address: str) -> bool:
        in_ns(host, "ip", "neigh", "flush", "dev", "eth0")
        return in_ns(host, "ping", "-n", "-c", "1", "-W", "1", address, check=False).returncode == 0

    def status(*extra: str) -> tuple[int, str]:
        argv = ["--site", "hq", "--keys", str(lab.keys.directory), "--prefix", lab.prefix]
        code = main(["bridge", "status", str(config), *argv, "--netns", ns, "--ovsdb", *extra])
        return code, capsys.readouterr().out

    sh("ip", "netns", "add", host)
    sw = OvsSwitch(ns)
    try:
        sh("ip", "link", "add", "sw0", "netns", ns, "type", "veth",
           "peer", "name", "eth0", "netns", host)  # fmt: skip
        in_ns(host, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
        in_ns(host, "ip", "addr", "add", "203.0.113.2/24", "dev", "eth0")
        in_ns(host, "ip", "link", "set", "eth0", "up")
        # hq's kernel answers ARP only on the interface holding the address, so an answer
        # from 203.0.113.1 means its kernel heard the frame on sw0, not on mgmt.
        in_ns(ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
        with Ovsdb(sw.remote) as db:
            # Userspace datapath; a learning switch, as no controller is needed here.
            db.ensure_bridge(hq.switch, fail_mode="standalone")
            db.ensure_port(hq.switch, "mgmt", type="internal")
            db.ensure_port(hq.switch, "sw0")
            for port, address in (("mgmt", "198.51.100.1/24"), ("sw0", "203.0.113.1/24")):
                in_ns(ns, "ip", "addr", "add", address, "dev", port)
                in_ns(ns, "ip", "link", "set", port, "up")
            # Unguarded, hq's kernel answers on both: the sw0 check below can fail.
            eventually("hq's kernel to answer on mgmt", lambda: answers("198.51.100.1"))
            eventually("hq's kernel to answer on sw0", lambda: answers("203.0.113.1"))
            code, _ = status(sw.remote)
            assert code == exitcodes.FAILURE

            result = apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            eventually("hq's kernel to answer on mgmt, guarded", lambda: answers("198.51.100.1"))
            before = rx_packets(sw, hq.switch, "sw0")
            assert not answers("203.0.113.1"), "hq's kernel answered on a guarded switch port"
            assert rx_packets(sw, hq.switch, "sw0") > before  # the switch still read them
            assert any(c.startswith("guarded switch ports sw0 ") for c in result.changes)
            listing = in_ns(ns, "nft", "list", "table", "netdev", table).stdout
            assert guarded_ports(listing) == {"sw0"}
            assert ipv6_disabled(ns, "sw0")
            assert not ipv6_disabled(ns, "mgmt") and not ipv6_disabled(ns, hq.switch)

            code, out = status(sw.remote, "--json")
            report = json.loads(out)
            assert code == exitcodes.OK, out
            assert {p["name"]: (p["type"], p["role"], p["guarded"]) for p in
                    report["switch"]["ports"]} == {
                hq.switch: ("internal", "kernel port", False),
                "mgmt": ("internal", "kernel port", False),
                "sw0": ("system", "switch port", True),
            }  # fmt: skip
            assert report["unguarded_ports"] == report["cut_off_ports"] == []

            # The rule before types: every port but the bridge's own. mgmt goes dead.
            portguard.ensure_guard(ns, table, ["mgmt", "sw0"], [])
            assert not answers("198.51.100.1"), "hq's kernel answered on a guarded kernel port"
            code, out = status(sw.remote)
            assert code == exitcodes.FAILURE
            assert re.search(r"mgmt +internal +kernel port +CUT OFF", out), out
            # And with no guard at all, sw0 is the one status fails for.
            in_ns(ns, "nft", "delete", "table", "netdev", table)
            code, out = status(sw.remote, "--json")
            assert code == exitcodes.FAILURE
            assert json.loads(out)["unguarded_ports"] == ["sw0"]

            again = apply_site(hq, netns=ns, keys=lab.keys, run_dir=lab.run_dir, switch=db)
            assert any(c.startswith("guarded switch ports sw0 ") for c in again.changes)
            eventually("hq's kernel to answer on mgmt again", lambda: answers("198.51.100.1"))
            assert not answers("203.0.113.1")
            assert status(sw.remote)[0] == exitcodes.OK
            remove_site(hq, netns=ns, run_dir=lab.run_dir, switch=db)
    finally:
        sw.close()
        sh("ip", "netns", "del", host, check=False)
