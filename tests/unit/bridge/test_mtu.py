"""MTU figures, checked against the ones measured by hand (ARCHITECTURE.md)."""

from __future__ import annotations

from bridge import mtu


def test_wireguard_overhead() -> None:
    assert mtu.wireguard_overhead(4) == 60
    assert mtu.wireguard_overhead(6) == 80
    # wg-quick's default of 1420 is the IPv6 worst case on a 1500 underlay.
    assert mtu.wireguard_mtu(1500, 6) == 1420


def test_inner_mtu_matches_the_hand_built_slice() -> None:
    # ARCHITECTURE.md: wg 1420 - VXLAN 50 = inner 1370, 4 less with an 802.1Q tag inside.
    assert mtu.inner_mtu(1420, 4, dot1q_inside=False) == 1370
    assert mtu.inner_mtu(1420, 4, dot1q_inside=True) == 1366
    assert mtu.inner_mtu(1420, 6, dot1q_inside=False) == 1350


def test_tcp_mss() -> None:
    assert mtu.tcp_mss(1500, 4) == 1460
    assert mtu.tcp_mss(1500, 6) == 1440
