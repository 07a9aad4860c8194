"""Build updates and guard configs for tests, from the same small JSON shapes the golden
cases use."""

from __future__ import annotations

from collections.abc import Iterable
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


def ris_live_messages(
    items: Iterable[FeedItem], count: int
) -> tuple[list[dict[str, Any]], list[Update]]:
    """Up to `count` RIS-live `ris_message`s made from real Updates (those of one MRT UPDATE
    grouped into one message, as the websocket sends them), and the Updates they hold."""
    messages: list[dict[str, Any]] = []
    seen: list[Update] = []
    current: dict[str, Any] = {}
    group: tuple[Any, ...] | None = None
    for update in items:
        if not isinstance(update, Update):
            continue
        key = (update.time, update.peer_ip, update.as_path if update.announce else None)
        if key != group:
            if len(messages) == count:
                break
            group = key
            current = {
                "timestamp": update.time, "peer": update.peer_ip,
                "peer_asn": str(update.peer_asn), "host": "rrc00", "type": "UPDATE",
                "id": f"{update.peer_ip}-{update.time}-{len(messages)}",
            }  # fmt: skip
            messages.append({"type": "ris_message", "data": current})
        seen.append(update)
        prefix = str(update.prefix)
        if update.announce:
            current["path"] = [sorted(e) if isinstance(e, frozenset) else e for e in update.as_path]
            current["origin"] = "igp"
            current["community"] = [list(c) for c in update.communities]
            hop = update.next_hop or update.peer_ip
            current.setdefault("announcements", [{"next_hop": hop, "prefixes": []}])
            current["announcements"][0]["prefixes"].append(prefix)
        else:
            current.setdefault("withdrawals", []).append(prefix)
    return messages, seen
