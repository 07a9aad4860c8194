"""The bridge's gate for attested join (attest/): only admitted sites have peers.

The verifier decides which sites are admitted; this makes every deployed site's data plane
say so. A site outside the admitted set is treated like a revoked one (`plan_site`'s
`revoked`): it is nobody's peer, and no site routes to it. The site's own data plane is
built only once it is admitted: its private key came from its TPM, so its key directory
gets only its peers' public keys from the enterprise (`KeyStore.provision(own_key=False)`).

Cutting a site off removes it from every admitted peer's WireGuard interface, and every
peer from its own if it still runs, all together first; then each admitted site is
converged (tunnels, routes, switch ports).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import ExitStack

from bridge import wireguard
from bridge.apply import apply_site
from bridge.keylife import Deployed
from bridge.keys import KeyStore
from bridge.netns import ApplyError
from bridge.plan import SitePlan, peers_of, plan_site, wireguard_name
from controller.ovsdb import Ovsdb
from overcast.config import OvercastConfig


def plans(
    config: OvercastConfig, keys: KeyStore, admitted: Collection[str], prefix: str
) -> dict[str, SitePlan]:
    """The plan of each admitted site, with only admitted sites as peers."""
    out = set(config.sites) - set(admitted) | keys.revoked()
    public = {s: keys.public_key(s) for s in config.sites if s not in out}
    return {
        s: plan_site(config, s, public, prefix=prefix, revoked=out)
        for s in config.sites
        if s not in out
    }


def converge(
    config: OvercastConfig,
    keys: KeyStore,
    deployed: Mapping[str, Deployed],
    admitted: Collection[str],
    *,
    prefix: str,
    ovsdb: Mapping[str, str] | None = None,
) -> list[str]:
    """Make the deployed sites' data planes admit exactly `admitted`; return the changes.
    `ovsdb` (site -> OVSDB remote) lets tunnels join and leave the site switches."""
    wanted = plans(config, keys, admitted, prefix)
    # Cut first, all sites together: at each admitted site any peer key the plan no longer
    # has, at a deployed site that is not admitted every peer.
    cuts = []
    for site, where in deployed.items():
        keep = (
            {p.public_key for wg in wanted[site].wireguard_interfaces for p in wg.peers}
            if site in wanted
            else set()
        )
        for name in _interfaces(config, site, prefix):
            try:
                status = wireguard.show(where.netns, name)
            except ApplyError:
                continue  # not built yet: apply_site below builds it with the right peers
            cuts += [
                wireguard.remove_peer(where.netns, name, key)
                for key in status.peers
                if key not in keep
            ]
    wireguard.apply_live(cuts)
    changes = [f"removed {len(cuts)} peer(s) of sites not admitted"] if cuts else []
    for site, plan in wanted.items():
        if site not in deployed:
            continue
        at = deployed[site]
        keys.provision(
            site, peers_of(config, site, set(config.sites) - set(wanted)), at.keys, own_key=False
        )
        with ExitStack() as stack:
            switch = None
            if ovsdb and site in ovsdb:
                switch = stack.enter_context(Ovsdb(ovsdb[site]))
            applied = apply_site(
                plan,
                netns=at.netns,
                keys=KeyStore(at.keys),
                run_dir=at.run_dir,
                switch=switch,
            )
        changes += [f"{site}: {c}" for c in applied.changes]
    return changes


def _interfaces(config: OvercastConfig, site: str, prefix: str) -> list[str]:
    """`site`'s WireGuard interface names, one per underlay network it is on."""
    index, networks = list(config.sites).index(site), config.underlay_names()
    return [wireguard_name(prefix, index, networks.index(n)) for n in config.addresses(site)]
