"""A site's tunnels as they run: one row per peer and path, for `bridge status` and the
Prometheus metrics of `bridge up --watch`.

`tunnel_rows` is pure (plan + what was read + `now` in, rows out); `read_tunnels` reads the
namespace (wg(8) and netlink) and calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bridge import wireguard
from bridge.apply import Backend, wireguard_links
from bridge.netns import ApplyError
from bridge.plan import SitePlan

# WireGuard drops a session this long after its handshake unless a new one completed
# (Reject-After-Time, the WireGuard paper section 6.1): older means the tunnel is down.
REJECT_AFTER_TIME = 180


@dataclass(frozen=True)
class TunnelStatus:
    """One peer over one path (underlay network) as this site's interface sees it."""

    site: str  # the peer
    interface: str
    underlay: str  # the path's underlay network
    backend: Backend | None  # None: no live WireGuard interface
    configured: bool  # the peer's key is on the live interface
    endpoint: str | None
    handshake_age_s: int | None  # None: never
    rx_bytes: int
    tx_bytes: int
    mtu: int | None  # effective: the live interface's MTU, capped by the peer's end
    inner_mtu: int | None  # the L2 (VXLAN) tunnels' MTU toward this peer on this path

    @property
    def up(self) -> bool:
        return self.handshake_age_s is not None and self.handshake_age_s < REJECT_AFTER_TIME

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"up": self.up}


def tunnel_rows(
    plan: SitePlan,
    live: Mapping[str, wireguard.InterfaceStatus],
    links: Mapping[str, tuple[Backend | None, int]],
    now: int,
) -> tuple[TunnelStatus, ...]:
    """`live`: each interface's `wg show` (missing: not there); `links`: backend and MTU."""
    rows = []
    for wg in plan.wireguard_interfaces:
        shown = live.get(wg.name)
        backend, link_mtu = links.get(wg.name, (None, 0))
        for peer in wg.peers:
            state = shown.peers.get(peer.public_key) if shown else None
            handshake = state.latest_handshake if state else 0
            inner = [
                t.mtu for t in plan.tunnels() if t.peer == peer.site and t.underlay == wg.underlay
            ]
            rows.append(
                TunnelStatus(
                    site=peer.site,
                    interface=wg.name,
                    underlay=wg.underlay,
                    backend=backend,
                    configured=state is not None,
                    endpoint=state.endpoint if state else None,
                    handshake_age_s=max(0, now - handshake) if handshake else None,
                    rx_bytes=state.rx_bytes if state else 0,
                    tx_bytes=state.tx_bytes if state else 0,
                    mtu=min(link_mtu, peer.path_mtu or link_mtu) if link_mtu else None,
                    inner_mtu=min(inner) if inner else None,
                )
            )
    return tuple(rows)


def read_tunnels(plan: SitePlan, netns: str, now: int) -> tuple[TunnelStatus, ...]:
    """The rows of `plan`'s site running in `netns`; an interface that is not there shows
    its peers unconfigured, without a backend."""
    links = wireguard_links(netns, (wg.name for wg in plan.wireguard_interfaces))
    live = {}
    for wg in plan.wireguard_interfaces:
        if links.get(wg.name, (None, 0))[0] is None:
            continue
        try:
            live[wg.name] = wireguard.show(netns, wg.name)
        except ApplyError:
            continue  # gone between the two reads: shown as down
    return tunnel_rows(plan, live, links, now)


def render(rows: tuple[TunnelStatus, ...]) -> list[str]:
    """The status table, one line per tunnel."""
    head = (
        f"  {'PEER':<10} {'PATH':<10} {'INTERFACE':<14} {'BACKEND':<12} {'ENDPOINT':<22} "
        f"{'HANDSHAKE':<11} {'RX':>10} {'TX':>10} {'MTU':>5} {'L2 MTU':>6}"
    )
    lines = [head]
    for r in rows:
        if not r.configured:
            age = "no peer" if r.backend else "no iface"
        else:
            age = "never" if r.handshake_age_s is None else f"{r.handshake_age_s}s ago"
        lines.append(
            f"  {r.site:<10} {r.underlay:<10} {r.interface:<14} {r.backend or '-':<12} "
            f"{r.endpoint or '-':<22} {age:<11} {_bytes(r.rx_bytes):>10} "
            f"{_bytes(r.tx_bytes):>10} {r.mtu or '-':>5} {r.inner_mtu or '-':>6}"
        )
    return lines


def _bytes(n: int) -> str:
    size, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
