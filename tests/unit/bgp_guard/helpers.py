"""Build updates and guard configs for tests, from the same small JSON shapes the golden
cases use."""

from __future__ import annotations

from typing import Any

from bgp_guard.config import GuardConfig
from bgp_guard.update import FeedItem, PathElement, PeerDown, Prefix, Update

PEERS = {"a": ("198.51.100.1", 64510), "b": ("198.51.100.2", 64511), "c": ("198.51.100.3", 64496)}


def update(spec: dict[str, Any]) -> Update:
    """{"t": 10, "peer": "a", "prefix": "192.0.2.0/24", "path": [64510, 64501, 64500]}, or
    "withdraw": true instead of "path"; an AS_SET is written as a list inside the path."""
    peer_ip, peer_asn = PEERS[spec.get("peer", "a")]
    as_path: tuple[PathElement, ...] = tuple(
        frozenset(e) if isinstance(e, list) else int(e) for e in spec.get("path", ())
    )
    return Update(
        time=float(spec["t"]),
        peer_ip=peer_ip,
        peer_asn=peer_asn,
        prefix=Prefix.parse(spec["prefix"]),
        announce=not spec.get("withdraw", False),
        as_path=as_path,
        path_id=spec.get("path_id"),
    )


def item(spec: dict[str, Any]) -> FeedItem:
    """As `update`, or {"t": 30, "peer": "a", "down": true}: that peer's session dropped."""
    if spec.get("down"):
        peer_ip, peer_asn = PEERS[spec.get("peer", "a")]
        return PeerDown(float(spec["t"]), peer_ip, peer_asn)
    return update(spec)


def guard_config(section: dict[str, Any]) -> GuardConfig:
    return GuardConfig.model_validate(section)
