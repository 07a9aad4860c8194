"""Prometheus metrics of a site's tunnels, read when scraped (`bridge up --watch --metrics`).

One sample per tunnel (peer and path), labelled site, peer, underlay and interface:

    overcast_bridge_tunnel_info{...,backend,endpoint}     1
    overcast_bridge_tunnel_up{...}                        1 if a handshake is < 180 s old
    overcast_bridge_tunnel_handshake_age_seconds{...}     absent until the first handshake
    overcast_bridge_tunnel_receive_bytes_total{...}       WireGuard's rx counter
    overcast_bridge_tunnel_transmit_bytes_total{...}      WireGuard's tx counter
    overcast_bridge_tunnel_mtu_bytes{...}                 the tunnel's effective MTU
    overcast_bridge_tunnel_inner_mtu_bytes{...}           its L2 (VXLAN) MTU, if any
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.status import TunnelStatus

LABELS = ("site", "peer", "underlay", "interface")


class TunnelCollector(Collector):
    """Reads the tunnels with `read` at every scrape, so figures are never stale."""

    def __init__(self, site: str, read: Callable[[], tuple[TunnelStatus, ...]]) -> None:
        self.site = site
        self.read = read

    def collect(self) -> Iterator[Metric]:
        rows = self.read()
        prefix = "overcast_bridge_tunnel"
        info = GaugeMetricFamily(
            f"{prefix}_info",
            "A tunnel: its backend and live endpoint",
            labels=[*LABELS, "backend", "endpoint"],
        )
        up = GaugeMetricFamily(
            f"{prefix}_up", "1 if the last handshake is under 180 s old", labels=LABELS
        )
        age = GaugeMetricFamily(
            f"{prefix}_handshake_age_seconds", "Seconds since the last handshake", labels=LABELS
        )
        rx = CounterMetricFamily(
            f"{prefix}_receive_bytes", "Bytes received from the peer", labels=LABELS
        )
        tx = CounterMetricFamily(
            f"{prefix}_transmit_bytes", "Bytes sent to the peer", labels=LABELS
        )
        mtu = GaugeMetricFamily(f"{prefix}_mtu_bytes", "The tunnel's effective MTU", labels=LABELS)
        inner = GaugeMetricFamily(
            f"{prefix}_inner_mtu_bytes", "The MTU of its L2 (VXLAN) tunnels", labels=LABELS
        )
        for r in rows:
            labels = [self.site, r.site, r.underlay, r.interface]
            info.add_metric([*labels, r.backend or "none", r.endpoint or ""], 1)
            up.add_metric(labels, 1 if r.up else 0)
            if r.handshake_age_s is not None:
                age.add_metric(labels, r.handshake_age_s)
            rx.add_metric(labels, r.rx_bytes)
            tx.add_metric(labels, r.tx_bytes)
            if r.mtu is not None:
                mtu.add_metric(labels, r.mtu)
            if r.inner_mtu is not None:
                inner.add_metric(labels, r.inner_mtu)
        yield from (info, up, age, rx, tx, mtu, inner)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at scrape time only; nothing to describe up front
