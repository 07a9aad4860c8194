"""Packet-ins without os-ken's parser or one event each: the few fields the app reads, handed
from the connections' receive threads to the app thread many at a time.

os-ken turns each packet-in into OFPPacketIn and OFPMatch objects and puts it through the
app's bounded event queue on its own, two thread hand-overs per message. Under a burst of
new MACs that cost as much as learning itself (README, "Packet-in throughput"). Here
`ofguard` gives a length-checked PACKET_IN (`controller.ofcheck`) to `Inbox.put`, which
reads it with `parse` and appends it to the batch the app will take next: one event per
batch, not per packet-in.

Order per switch is kept: any other message from a switch closes the open batch
(`Inbox.cut`) before os-ken queues its event, so a switch's later packet-ins land in a
later batch. A batch holds at most `limit` packet-ins; past that the next one opens a new
batch, whose event waits for room in os-ken's bounded queue, so a flooding switch is slowed
down by the app, not buffered without end.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# ofp_packet_in after the header: buffer_id, total_len, reason, table_id, cookie; then
# the match (type, length, OXMs, padded to 8), 2 pad bytes, the frame (section 7.4.1).
_FIXED = struct.Struct("!IHBBQ")
_MATCH_HEAD = struct.Struct("!HH")
_OXM_HEAD = struct.Struct("!I")
_MATCH_AT = 24
# OXM class OPENFLOW_BASIC, field IN_PORT, no mask, 4 bytes (section 7.2.3.7).
_IN_PORT_OXM = 0x8000 << 16 | 0 << 9 | 4


@dataclass(frozen=True, slots=True)
class PacketIn:
    datapath: Any
    reason: int  # OFPR_* (section 7.4.1): 0 no match, 1 action
    table_id: int
    cookie: int
    in_port: int | None
    data: bytes  # the frame, or its first max_len bytes


def parse(datapath: Any, buf: bytes) -> PacketIn:
    """Read a PACKET_IN that `controller.ofcheck.check` passed (so its lengths add up)."""
    _, _, reason, table_id, cookie = _FIXED.unpack_from(buf, 8)
    _, length = _MATCH_HEAD.unpack_from(buf, _MATCH_AT)
    in_port, at, end = None, _MATCH_AT + 4, _MATCH_AT + length
    while at < end:
        (header,) = _OXM_HEAD.unpack_from(buf, at)
        if header == _IN_PORT_OXM:
            (in_port,) = _OXM_HEAD.unpack_from(buf, at + 4)
            break
        at += 4 + (header & 0xFF)
    data_at = _MATCH_AT + length + -length % 8 + 2
    return PacketIn(datapath, reason, table_id, cookie, in_port, bytes(buf[data_at:]))


class Inbox:
    """Packet-ins on their way to the app thread, in batches: `post(batch)` queues one event
    for a new batch (it may block while the app's queue is full); the app calls
    `take(batch)` before it reads one, after which nothing more is added to it."""

    def __init__(self, post: Callable[[list[PacketIn]], None], limit: int = 512) -> None:
        self.post, self.limit = post, limit
        self._lock = threading.Lock()
        self._open: list[PacketIn] | None = None

    def put(self, datapath: Any, buf: bytes) -> None:
        packet_in = parse(datapath, buf)
        with self._lock:
            batch = self._open
            if batch is not None and len(batch) < self.limit:
                batch.append(packet_in)
                return
            self._open = batch = [packet_in]
        self.post(batch)

    def cut(self) -> None:
        """Another kind of message arrived: later packet-ins go in a later batch."""
        with self._lock:
            self._open = None

    def take(self, batch: list[PacketIn]) -> list[PacketIn]:
        with self._lock:
            if self._open is batch:
                self._open = None
        return batch
