"""Throwaway sites for bridge integration tests: one namespace per site, a veth underlay
between every pair, documentation addresses, unique names per run, all removed afterwards."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import wireguard
from bridge.apply import remove_site
from bridge.keys import KeyStore
from bridge.netns import ApplyError
from overcast.config import loads
from tests.conftest import require_binaries
from tests.integration.bridge.sites import CONFIG, Lab, in_ns, links, sh


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """The sites of CONFIG, or of the config text given by indirect parametrization."""
    require_binaries("wg", "wireguard-go", "ping")
    run_id = secrets.token_hex(2)
    config = loads(getattr(request, "param", CONFIG))
    lab = Lab(
        config=config,
        keys=KeyStore(tmp_path / "keys"),
        run_dir=tmp_path / "run",
        prefix=f"ob{run_id}",
        netns={site: f"ocbr{run_id}-{site}" for site in config.sites},
    )
    try:
        for site, ns in lab.netns.items():
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
            (address,) = config.addresses(site).values()
            in_ns(ns, "ip", "addr", "add", f"{address}/32", "dev", "lo")
        # A veth per site pair; each end routes to the other's underlay address, with a
        # static neighbour entry (IPv6 neighbour discovery does not answer for addresses on lo).
        for a, b in itertools.combinations(config.sites, 2):
            sh("ip", "link", "add", f"u-{b}", "netns", lab.netns[a], "type", "veth",
               "peer", "name", f"u-{a}", "netns", lab.netns[b])  # fmt: skip
            # The underlay link carries what the narrower site says it does.
            link_mtu = min(config.sites[a].underlay_mtu, config.sites[b].underlay_mtu)
            for here, there in ((a, b), (b, a)):
                ns, dev = lab.netns[here], f"u-{there}"
                in_ns(ns, "ip", "link", "set", dev, "mtu", str(link_mtu))
                mac = links(lab.netns[there])[f"u-{here}"]["address"]
                # These tests use single-underlay configs: one address per site.
                (addr,) = config.addresses(here).values()
                (peer,) = config.addresses(there).values()
                in_ns(ns, "ip", "link", "set", dev, "up")
                in_ns(
                    ns,
                    "ip",
                    "route",
                    "add",
                    f"{peer}/{peer.max_prefixlen}",
                    "dev",
                    dev,
                    "src",
                    str(addr),
                )
                in_ns(
                    ns,
                    "ip",
                    "neigh",
                    "add",
                    str(peer),
                    "lladdr",
                    str(mac),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                )
        yield lab
    finally:
        for site, ns in lab.netns.items():
            try:
                remove_site(lab.plan(site), netns=ns, run_dir=lab.run_dir)
            except ApplyError as exc:
                print(f"cleanup of {site}: {exc}")
            sh("ip", "netns", "del", ns, check=False)
        for sock in wireguard.UAPI_DIR.glob(f"{lab.prefix}*.sock"):
            sock.unlink(missing_ok=True)
