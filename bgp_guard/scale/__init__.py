"""Scale-out on NATS JetStream: collectors publish normalised updates, detector workers
consume them, sharded by monitored prefix, and publish each alert once.

- Subjects `bgp.updates.<shard>` (stream BGP_UPDATES): batches of updates, each update in
  the shard of the monitored prefix that governs it (crc32 of its name, SHARDS shards), so
  one monitored prefix is always decided by one worker. A PeerDown goes to every shard.
  Updates no monitored prefix governs are not published: per-AS checks (own_asns, leaks
  beyond our prefixes) stay with a single `guard watch`.
- KV bucket `bgp_guard_shards`: who holds which shard, and which workers are alive. A worker
  claims free or expired shards (compare-and-set on the key's revision) up to its fair share
  (shards / live workers), renews its claims every second, and gives up what is above its
  share when another worker appears. A shard whose holder stops renewing (killed) is free
  after `lease` seconds.
- A worker that takes a shard replays it from the stream's first message into a fresh
  `Guard`: the engine is pure (time comes from the updates), so the replay rebuilds the same
  RIB and events. Alerts go to `bgp.alerts` (stream BGP_ALERTS) with a Nats-Msg-Id made of
  the event key, state and time: JetStream drops a second publish of the same alert within
  its duplicate window, so an alert the dead worker already published is not published
  again, and one it had not yet published is.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from bgp_guard.update import FeedItem, PeerDown, Prefix, Update

SHARDS = 16
UPDATES, ALERTS, BUCKET = "BGP_UPDATES", "BGP_ALERTS", "bgp_guard_shards"
DUPLICATE_WINDOW = 24 * 3600.0  # seconds JetStream remembers alert ids


def shard_of(monitored: str) -> int:
    return zlib.crc32(monitored.encode()) % SHARDS


def encode(items: list[FeedItem]) -> bytes:
    """A batch as a JSON list: updates as [time, peer, asn, prefix, announce, path,
    path_id] (an AS_SET as a list), PeerDowns as ["down", time, peer, asn]."""
    out: list[Any] = []
    for item in items:
        if type(item) is PeerDown:
            out.append(["down", item.time, item.peer_ip, item.peer_asn])
        else:
            assert isinstance(item, Update)
            path = [sorted(e) if isinstance(e, frozenset) else e for e in item.as_path]
            out.append([item.time, item.peer_ip, item.peer_asn, str(item.prefix),
                        item.announce, path, item.path_id])  # fmt: skip
    return orjson.dumps(out)


def decode(data: bytes) -> list[FeedItem]:
    items: list[FeedItem] = []
    for raw in orjson.loads(data):
        if raw[0] == "down":
            items.append(PeerDown(raw[1], raw[2], raw[3], "nats"))
            continue
        time, peer, asn, prefix, announce, path, path_id = raw
        as_path = tuple(frozenset(e) if isinstance(e, list) else e for e in path)
        items.append(
            Update(
                time,
                peer,
                asn,
                Prefix.parse(prefix),
                announce,
                as_path,
                source="nats",
                path_id=path_id,
            )
        )
    return items


def alert_id(event: dict[str, Any]) -> str:
    """The same alert, published twice (a takeover replays a shard), has the same id."""
    offender = event.get("offending_as")
    return "|".join(
        (event["type"], event.get("prefix") or "-", str(offender), event.get("about") or "-",
         event["state"], repr(event["time"]))
    )  # fmt: skip
