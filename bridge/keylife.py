"""Keys over their whole life on running sites: rotate a site's key, revoke it.

Each site runs from its own key directory (`KeyStore.provision`: its private key, its
peers' public keys); the enterprise's store is the source of both. Rotation and revocation
change the enterprise store, re-provision the site directories and converge the running
interfaces:

Rotating site A's key. WireGuard accepts a packet only from the peer whose AllowedIPs hold
its source (cryptokey routing), and one prefix belongs to one peer. So:
  1. every peer B learns A's new public key as an extra peer without AllowedIPs (nothing
     changes for traffic; B can now answer a handshake from the new key);
  2. A switches to its new private key: its sessions expire, it queues traffic and
     handshakes again with the new key at once;
  3. every B moves A's AllowedIPs from the old key to the new one and drops the old.
  Steps 2 and 3 go to the interfaces together (`wireguard.apply_live`): what is lost is
  what crosses between them, a window of well under a millisecond with wireguard-go.
  Then every site is converged with `apply_site` (which finds nothing left to change).

Revoking site A: A leaves the enterprise store (`<site>.revoked` remains, so no command
makes it a new key by accident) and every peer's directory and interface: its sessions go
with its peer entry, so traffic stops at once, and a handshake from the old key finds no
peer that knows it. Site A's own directory is left alone: it still holds the old key, and
that key is worth nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge import wireguard
from bridge.apply import apply_site, wireguard_links
from bridge.keys import KeyStore
from bridge.netns import ApplyError, require_netns
from bridge.plan import SitePlan, peers_of, plan_site
from overcast.config import OvercastConfig


@dataclass(frozen=True)
class Deployed:
    """Where a site's data plane runs on this machine."""

    netns: str
    keys: Path  # the site's own key directory
    run_dir: Path


@dataclass(frozen=True)
class KeyChange:
    site: str
    old_public_key: str | None
    new_public_key: str | None  # None: revoked
    changes: tuple[str, ...]


def plans(
    config: OvercastConfig, enterprise: KeyStore, sites: list[str], prefix: str
) -> dict[str, SitePlan]:
    revoked = enterprise.revoked()
    keys = {s: enterprise.public_key(s) for s in config.sites if s not in revoked}
    return {
        s: plan_site(config, s, keys, prefix=prefix, revoked=revoked)
        for s in sites
        if s not in revoked
    }


def provision(
    config: OvercastConfig, enterprise: KeyStore, deployed: Mapping[str, Deployed]
) -> None:
    """Every deployed site's key directory as the enterprise store says (revoked sites'
    directories are left alone: what they hold opens nothing)."""
    revoked = enterprise.revoked()
    for site, where in deployed.items():
        if site not in revoked:
            enterprise.provision(site, peers_of(config, site, revoked), where.keys)


def rotate(
    config: OvercastConfig,
    site: str,
    enterprise: KeyStore,
    deployed: Mapping[str, Deployed],
    *,
    prefix: str,
) -> KeyChange:
    """Give `site` a new key pair and move every deployed site to it (module docstring)."""
    live = [s for s in deployed if s != site]
    before = plans(config, enterprise, list(deployed), prefix)
    _check_running(before, deployed)
    old, new = enterprise.rotate(site)
    provision(config, enterprise, deployed)
    after = plans(config, enterprise, list(deployed), prefix)
    changes: list[str] = []
    if site in before and old is not None:
        where = deployed[site]
        private = KeyStore(where.keys).private_key(site)
        cut = [
            wireguard.set_private_key(where.netns, wg.name, private)
            for wg in before[site].wireguard_interfaces
        ]
        pre = []
        for peer in live:
            if peer not in after or peer not in before:
                continue
            for wg in after[peer].wireguard_interfaces:
                entry = next((p for p in wg.peers if p.site == site), None)
                if entry is not None:
                    ns = deployed[peer].netns
                    pre.append(wireguard.add_peer(ns, wg.name, entry, allowed=False))
                    cut.append(wireguard.replace_peer(ns, wg.name, old, entry))
        wireguard.apply_live(pre)
        wireguard.apply_live(cut)
        changes.append(f"{site}: switched to the new key; {len(pre)} peer interface(s) moved to it")
    changes += _converge(after, deployed)
    return KeyChange(site, old, new, tuple(changes))


def revoke(
    config: OvercastConfig,
    site: str,
    enterprise: KeyStore,
    deployed: Mapping[str, Deployed],
    *,
    prefix: str,
) -> KeyChange:
    """Remove `site`'s key from the enterprise store and every deployed peer."""
    _check_running(plans(config, enterprise, [s for s in deployed if s != site], prefix), deployed)
    old = enterprise.revoke(site)
    provision(config, enterprise, deployed)
    after = plans(config, enterprise, [s for s in deployed if s != site], prefix)
    # Cut first, all peers together; the full convergence follows.
    wireguard.apply_live(
        [
            wireguard.remove_peer(deployed[s].netns, wg.name, old)
            for s, plan in after.items()
            for wg in plan.wireguard_interfaces
            if old in wireguard.show(deployed[s].netns, wg.name).peers
        ]
    )
    return KeyChange(site, old, None, tuple(_converge(after, deployed)))


def _check_running(running: Mapping[str, SitePlan], deployed: Mapping[str, Deployed]) -> None:
    """Every site said to run does, before any key changes: no half-made rotation."""
    for site, plan in running.items():
        where = deployed[site]
        require_netns(where.netns)
        names = [wg.name for wg in plan.wireguard_interfaces]
        links = wireguard_links(where.netns, names)
        missing = [n for n in names if links.get(n, (None, 0))[0] is None]
        if missing:
            raise ApplyError(
                f"site {site} does not run in namespace {where.netns} (no live WireGuard "
                f"interface {', '.join(missing)}); bring it up first or leave it out of "
                "--at; no key was changed"
            )


def _converge(after: Mapping[str, SitePlan], deployed: Mapping[str, Deployed]) -> list[str]:
    changes = []
    for site, plan in after.items():
        where = deployed[site]
        applied = apply_site(
            plan, netns=where.netns, keys=KeyStore(where.keys), run_dir=where.run_dir
        )
        changes += [f"{site}: {c}" for c in applied.changes]
    return changes


def parse_deployed(text: str, run_root: Path) -> tuple[str, Deployed]:
    """`SITE=NETNS:KEYDIR` (the CLI's --at) -> (site, Deployed)."""
    site, _, rest = text.partition("=")
    netns, _, keys = rest.partition(":")
    if not site or not netns or not keys:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SITE=NETNS:KEYDIR; e.g. hq=oc-hq:/etc/overcast/hq/keys"
        )
    return site, Deployed(netns=netns, keys=Path(keys), run_dir=run_root / netns)
