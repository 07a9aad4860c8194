"""`overcast bridge ...`: WireGuard keys and the data-plane plan of a site."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.keys import KeyStore, KeyStoreError
from bridge.plan import PlanError, SitePlan, peers_of, plan_site
from overcast import exitcodes
from overcast.cli import CommandError, add_json_flag, emit, load_config

DEFAULT_PREFIX = "oc"


def register(sub: Any) -> None:
    bridge = sub.add_parser(
        "bridge",
        help="WireGuard keys and each site's tunnels, VXLAN devices and MTUs",
        description=(
            "The bridge is each site's data plane: one WireGuard interface with every site it "
            "shares a segment with as a peer, and per L2 segment one VXLAN device per peer "
            "site, inside WireGuard. MTUs are computed from the sites' underlay MTU. The "
            "enterprise generates and holds all WireGuard keys; sites receive their own "
            "private key and their peers' public keys only."
        ),
        epilog=(
            "examples:\n"
            "  overcast bridge keys overcast.yaml --keys /etc/overcast/keys\n"
            "  overcast bridge plan overcast.yaml --site hq --keys /etc/overcast/keys\n"
            "  overcast bridge plan overcast.yaml --site hq --keys /etc/overcast/keys --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = bridge.add_subparsers(dest="bridge_command", metavar="BRIDGE_COMMAND", required=True)

    p = cmds.add_parser(
        "keys",
        help="generate missing WireGuard key pairs and print the public keys",
        description=(
            "Make sure DIR holds a key pair for every site of CONFIG: <site>.key (the private "
            "key, mode 0600, never printed) and <site>.pub. Existing keys are kept. Prints "
            "each site's public key, which is what you may hand out."
        ),
        epilog="example:\n  overcast bridge keys overcast.yaml --keys /etc/overcast/keys --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    _keys_flag(p)
    add_json_flag(p)
    p.set_defaults(handler=_keys)

    p = cmds.add_parser(
        "plan",
        help="print what a site's data plane will be (no changes are made)",
        description=(
            "Compute SITE's WireGuard interface, peers, VXLAN devices and MTUs from CONFIG "
            "and the public keys in DIR, and print them. Nothing is changed and no private "
            "key is read or printed. Hosts on a stretched segment must use its inner MTU, or "
            "have TCP clamped to the MSS shown."
        ),
        epilog="example:\n  overcast bridge plan overcast.yaml --site hq --keys ./keys --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="path to overcast.yaml")
    p.add_argument("--site", required=True, help="the site to plan, e.g. hq")
    _keys_flag(p)
    p.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"start of the WireGuard interface name, unique on this machine (default {DEFAULT_PREFIX})",
    )
    add_json_flag(p)
    p.set_defaults(handler=_plan)


def _keys_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys", metavar="DIR", type=Path, required=True, help="the enterprise's key directory"
    )


def _keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        public = KeyStore(args.keys).ensure_all(config.sites)
    except (KeyStoreError, OSError) as exc:
        raise CommandError(f"cannot set up keys in {args.keys}: {exc}") from None
    text = "\n".join(f"{site:<10} {key}" for site, key in public.items())
    emit(public, args.json, text)
    return exitcodes.OK


def _plan(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.site not in config.sites:
        raise CommandError(
            f"unknown site {args.site!r}; use one of: {', '.join(config.sites)}", exitcodes.USAGE
        )
    store = KeyStore(args.keys)
    try:
        keys = {s: store.public_key(s) for s in (args.site, *peers_of(config, args.site))}
        plan = plan_site(config, args.site, keys, prefix=args.prefix)
    except KeyStoreError as exc:
        raise CommandError(str(exc)) from None
    except PlanError as exc:
        raise CommandError(str(exc), exitcodes.USAGE) from None
    data = plan.model_dump(mode="json") | {
        "fabric_ports": [p.model_dump(mode="json") for p in plan.fabric_ports()]
    }
    emit(data, args.json, _text(plan))
    return exitcodes.OK


def _text(plan: SitePlan) -> str:
    wg = plan.wireguard
    lines = [
        f"site {plan.site}: WireGuard {wg.name} {wg.address}/{wg.prefixlen} "
        f"port {wg.listen_port} mtu {wg.mtu}",
        f"  public key {wg.public_key}",
        f"  peers: {len(wg.peers)}",
    ]
    for peer in wg.peers:
        allowed = ", ".join(str(n) for n in peer.allowed_ips)
        lines.append(f"    {peer.site:<10} {peer.endpoint:<22} allowed {allowed}")
    for seg in plan.segments:
        lines.append(
            f"  segment {seg.segment}: vni {seg.vni} vlan {seg.vlan} on {plan.switch}, "
            f"inner MTU {seg.inner_mtu}, TCP MSS {seg.mss_ipv4} (IPv4) / {seg.mss_ipv6} (IPv6)"
        )
        for t in seg.tunnels:
            lines.append(
                f"    {t.name:<14} to {t.peer:<10} {t.local} -> {t.remote} udp/{t.dstport}"
            )
    return "\n".join(lines)
