"""Faults on one site's access to one underlay network, the way a provider fails.

Each fault acts in the underlay network's own namespace (the provider's side), on the
port facing the site, and `clear` undoes exactly it. All three leave the site's own
interfaces, addresses and routes alone, so nothing at the site knows of the fault but BFD.

- `link`: the access link goes down (carrier lost at the site, as when a fibre is cut).
- `blackhole`: the provider silently drops everything to and from the site (an nftables
  bridge-family drop in its network), as a routing blackhole or a bad ACL does.
- `loss`: 100 % loss on the link in both directions. netem (`loss 100%`) when the kernel
  has it; otherwise a pfifo queue of zero packets, which drops every packet at enqueue,
  the same place netem drops (this machine kind's kernel is built without sch_netem).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from lab import names, netns
from lab.plan import LabPlan

Fault = Literal["link", "blackhole", "loss"]
FAULTS: tuple[Fault, ...] = ("link", "blackhole", "loss")
TABLE = "overcast-fault"


def inject(plan: LabPlan, site: str, underlay: str, fault: Fault) -> None:
    """Break `site`'s access to `underlay` with `fault`."""
    ns, port, site_if = _where(plan, site, underlay)
    if fault == "link":
        netns.run(ns, ["ip", "link", "set", port, "down"])
    elif fault == "blackhole":
        rules = (
            f"table bridge {TABLE}-{port} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f'    iifname "{port}" drop\n'
            f'    oifname "{port}" drop\n'
            "  }\n"
            "}\n"
        )
        netns.run(ns, ["nft", "-f", "-"], stdin=rules)
    else:
        _drop_all(((ns, port), (plan.site(site).netns, site_if)))


def clear(plan: LabPlan, site: str, underlay: str, fault: Fault) -> None:
    """Undo `inject(plan, site, underlay, fault)`; clearing a fault not there is fine."""
    ns, port, site_if = _where(plan, site, underlay)
    if fault == "link":
        netns.run(ns, ["ip", "link", "set", port, "up"])
    elif fault == "blackhole":
        netns.run(ns, ["nft", "delete", "table", "bridge", f"{TABLE}-{port}"], check=False)
    else:
        _both_ends(plan, site, ns, port, site_if, _no_qdisc)


def provider_down(plan: LabPlan, underlay: str) -> None:
    """The whole underlay network fails: its bridge (every site's access to it) goes down."""
    netns.run(plan.underlay(underlay).netns, ["ip", "link", "set", names.WAN_BRIDGE, "down"])


def provider_up(plan: LabPlan, underlay: str) -> None:
    netns.run(plan.underlay(underlay).netns, ["ip", "link", "set", names.WAN_BRIDGE, "up"])


def _where(plan: LabPlan, site: str, underlay: str) -> tuple[str, str, str]:
    net = plan.underlay(underlay)
    if underlay not in plan.site(site).underlays:
        raise netns.LabCommandError(f"site {site} is not on underlay {underlay}")
    return net.netns, names.uplink_port(site), net.site_if


def _both_ends(
    plan: LabPlan, site: str, ns: str, port: str, site_if: str, do: Callable[[str, str], None]
) -> None:
    """`do` on both ends of the link at once, so neither direction heals (or breaks) a
    second before the other (`ip netns exec` takes that long on a busy machine)."""
    ends = ((ns, port), (plan.site(site).netns, site_if))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(do, where, dev) for where, dev in ends]:
            done.result()


def _no_qdisc(ns: str, dev: str) -> None:
    netns.run(ns, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def _drop_all(ends: tuple[tuple[str, str], tuple[str, str]]) -> None:
    """100 % loss on both ends of the link within microseconds: both netlink sockets are
    opened first, then the two requests sent back to back. (Two `tc` processes started in
    parallel can land 50-100 ms apart on a busy machine, and the gap the probes measure then
    includes that skew: one direction broken before the other.)"""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    (ns_a, dev_a), (ns_b, dev_b) = ends
    with IPRoute(netns=ns_a, flags=0) as a, IPRoute(netns=ns_b, flags=0) as b:
        links = [(a, a.link_lookup(ifname=dev_a)[0]), (b, b.link_lookup(ifname=dev_b)[0])]
        try:
            for ipr, index in links:
                ipr.tc("replace", "netem", index, loss=100)
        except NetlinkError:  # no sch_netem in this kernel
            for ipr, index in links:
                ipr.tc("replace", "pfifo", index, limit=0)
