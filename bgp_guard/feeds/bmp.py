"""BMP (RFC 7854) listener: routers connect to us and stream what their BGP peers send.

Route Monitoring messages carry the peer's BGP UPDATE verbatim; we decode it with wire.py
and attribute it to the monitored peer (its address and ASN from the per-peer header, section
4.2), not to the router. Peer Up / Peer Down (sections 4.8, 4.9) track sessions: when a peer
goes down, the router's Adj-RIB-In loses every route it had announced, and the feed emits a
`PeerDown` so the guard withdraws them all; so does a router that disconnects, for each of
its peers, since then we cannot know what they still announce. Initiation and Termination (sections 4.3, 4.5) are logged. Routes the router sends
*to* its peers (Adj-RIB-Out, RFC 8671 "O" flag) are not routes anyone announced to it and are
skipped. Loc-RIB monitoring (RFC 9069) is attributed to the router's BGP identifier.

A bad message is counted and logged with the router and its byte offset in the stream, and
the feed goes on; a broken common header (wrong version or length) ends that router's
connection, since the stream cannot be resynchronised. The router reconnects. A Route
Monitoring UPDATE that RFC 7606 treats as withdraw withdraws its routes here too (the
router's Adj-RIB-In no longer holds them).

What one connection may cost is bounded: a message of at most `MAX_MESSAGE` bytes (twice
the largest a router sends), which must arrive whole within `message_timeout` of its header;
the first message (the Initiation, RFC 7854 section 4.3) within `initiation_timeout`, so a
connection that never speaks BMP is closed; connections per source address and in all
(`LiveFeed`). BMP has no keepalive, and a router with a quiet table may send nothing for
hours, so silence after the Initiation is allowed (set `idle_timeout` to close such
connections); TCP keepalives find a router that died.

    listener = BmpListener()
    await listener.listen("192.0.2.10", 11019)
    async for update in listener.updates(): ...
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass, field

from bgp_guard.feeds.live import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE, LiveFeed
from bgp_guard.update import PeerDown
from bgp_guard.wire import (
    MAX_EXTENDED_MESSAGE,
    MSG_OPEN,
    MSG_UPDATE,
    Open,
    TreatAsWithdraw,
    WireError,
    decode_update,
    ip_text,
    split_message,
)

BMP_VERSION = 3
COMMON_HEADER = struct.Struct(">BIB")  # version, message length, message type (section 4.1)
PER_PEER_HEADER = struct.Struct(">BB8s16sI4sII")  # section 4.2, 42 bytes
ROUTE_MONITORING, STATISTICS, PEER_DOWN, PEER_UP, INITIATION, TERMINATION = 0, 1, 2, 3, 4, 5
ROUTE_MIRRORING = 6
PEER_TYPE_LOC_RIB = 3  # RFC 9069 section 4.1
# Per-peer header flags, RFC 7854 section 4.2 and RFC 8671 section 4.
FLAG_IPV6, FLAG_POST_POLICY, FLAG_2_BYTE_AS, FLAG_ADJ_RIB_OUT = 0x80, 0x40, 0x20, 0x10
# Information TLV types of Initiation/Termination, sections 4.3 and 4.4.
INFO_TLVS = {0: "string", 1: "sysDescr", 2: "sysName"}
# The largest message a router sends is a Route Monitoring with a 65,535-byte UPDATE (RFC
# 8654): 65,583 bytes. Twice that leaves room for Information TLVs.
MAX_MESSAGE = 2 * (COMMON_HEADER.size + PER_PEER_HEADER.size + MAX_EXTENDED_MESSAGE)
INITIATION_TIMEOUT = 30.0
MESSAGE_TIMEOUT = 30.0
# TCP keepalive: idle seconds, interval, probes. A router that died is gone in two minutes.
KEEPALIVE = (60, 10, 6)
PeerKey = tuple[str, bytes, bool]  # peer address, distinguisher, post-policy


@dataclass(frozen=True, slots=True)
class PeerHeader:
    peer_ip: str
    peer_asn: int
    flags: int
    distinguisher: bytes
    time: float

    @property
    def key(self) -> PeerKey:
        """One Adj-RIB-In per peer, distinguisher and pre/post policy (section 4.2)."""
        return (self.peer_ip, self.distinguisher, bool(self.flags & FLAG_POST_POLICY))


def decode_peer_header(body: bytes) -> PeerHeader:
    if len(body) < PER_PEER_HEADER.size:
        raise WireError("truncated BMP per-peer header", 0)
    ptype, flags, rd, address, asn, bgp_id, sec, usec = PER_PEER_HEADER.unpack_from(body)
    if ptype == PEER_TYPE_LOC_RIB:
        # RFC 9069 section 4.1: no peer address; the router itself (its BGP identifier) is
        # the "peer", so each router's Loc-RIB counts as one vantage point.
        peer_ip = ip_text(bgp_id)
    else:
        peer_ip = ip_text(address if flags & FLAG_IPV6 else address[12:])
    return PeerHeader(peer_ip, asn, flags, rd, sec + usec / 1e6 if sec else time.time())


@dataclass(slots=True)
class _Router:
    """One connected router: its name, and the ASN of each monitored peer it reported."""

    address: str
    name: str = ""
    asns: dict[PeerKey, int] = field(default_factory=dict)
    add_path: dict[PeerKey, frozenset[int]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"bmp:{self.name or self.address}"


class BmpListener(LiveFeed):
    def __init__(
        self,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_router: int = MAX_CONNECTIONS_PER_SOURCE,
        initiation_timeout: float = INITIATION_TIMEOUT,
        message_timeout: float = MESSAGE_TIMEOUT,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__("bmp", max_connections, max_connections_per_router)
        self.initiation_timeout = initiation_timeout
        self.message_timeout = message_timeout
        self.idle_timeout = idle_timeout

    async def listen(self, host: str, port: int = 11019) -> None:
        await self._serve(host, port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        router = _Router(writer.get_extra_info("peername")[0])
        log = self.stats.log
        log.info("BMP router %s connected", router.address)
        _keepalive(writer.get_extra_info("socket"))
        offset = 0
        wait: float | None = self.initiation_timeout
        try:
            while True:
                try:
                    header = await asyncio.wait_for(reader.readexactly(COMMON_HEADER.size), wait)
                except TimeoutError:
                    reason = "no-initiation" if offset == 0 else "idle"
                    self.stats.refused(reason, router.address, f"nothing for {wait:.0f} s")
                    return
                version, length, mtype = COMMON_HEADER.unpack(header)
                if version != BMP_VERSION or not COMMON_HEADER.size <= length <= MAX_MESSAGE:
                    self.stats.bad_record(
                        f"BMP router {router.address} byte {offset}",
                        f"version {version}, length {length}: not BMP v3 (at most "
                        f"{MAX_MESSAGE} bytes); closing",
                    )
                    return
                try:
                    body = await asyncio.wait_for(
                        reader.readexactly(length - COMMON_HEADER.size), self.message_timeout
                    )
                except TimeoutError:
                    self.stats.refused(
                        "slow-message",
                        router.address,
                        f"a {length}-byte message did not arrive in {self.message_timeout:.0f} s",
                    )
                    return
                wait = self.idle_timeout
                self.stats.records += 1
                try:
                    if mtype == TERMINATION:
                        log.info("BMP router %s terminates: %s", router.address, _info(body))
                        return
                    self._message(router, mtype, body)
                except WireError as exc:
                    where = offset + COMMON_HEADER.size + exc.offset
                    self.stats.bad_record(f"BMP router {router.address} byte {where}", exc.reason)
                offset += length
        except (OSError, asyncio.IncompleteReadError) as exc:
            why = "closed" if isinstance(exc, asyncio.IncompleteReadError) else exc.strerror
            log.info("BMP router %s disconnected: %s", router.address, why or exc)
        finally:
            writer.close()
            # Without the router we cannot know what its peers still announce.
            now = time.time()
            for peer_ip, asn in {key[0]: asn for key, asn in router.asns.items()}.items():
                down = PeerDown(now, peer_ip, asn, router.source)
                self._emit_peer_down(down, _subject(router, peer_ip))
            self.stats.flush()

    def _message(self, router: _Router, mtype: int, body: bytes) -> None:
        if mtype == INITIATION:
            router.name = _info(body).get("sysName", "")
            self.stats.log.info("BMP router %s initiated: %s", router.address, _info(body))
            return
        if mtype not in (ROUTE_MONITORING, PEER_UP, PEER_DOWN):
            return  # statistics, route mirroring: no routes
        peer = decode_peer_header(body)
        if mtype == PEER_UP:
            self._peer_up(_subject(router, peer.peer_ip))
            router.asns[peer.key] = peer.peer_asn
            router.add_path[peer.key] = _peer_up_add_path(body)
            self.stats.log.info(
                "BMP router %s: peer %s AS%d up", router.address, peer.peer_ip, peer.peer_asn
            )
        elif mtype == PEER_DOWN:
            self._peer_down(router, peer)
        elif not peer.flags & FLAG_ADJ_RIB_OUT:
            self._route_monitoring(router, peer, body)

    def _route_monitoring(self, router: _Router, peer: PeerHeader, body: bytes) -> None:
        start = PER_PEER_HEADER.size
        mtype, bgp_start, bgp_end = split_message(body, start)
        if mtype != MSG_UPDATE:
            raise WireError(f"Route Monitoring carries BGP message type {mtype}", start)
        router.asns[peer.key] = peer.peer_asn
        try:
            # The A flag: this UPDATE still has 2-byte AS_PATH (section 4.2).
            msg = decode_update(
                body,
                bgp_start,
                bgp_end,
                asn4=not peer.flags & FLAG_2_BYTE_AS,
                add_path=router.add_path.get(peer.key, False),
            )
            updates = msg.updates(peer.time, peer.peer_ip, peer.peer_asn, router.source)
        except TreatAsWithdraw as exc:
            assert exc.message is not None
            updates = exc.message.withdrawals(peer.time, peer.peer_ip, peer.peer_asn, router.source)
            self.stats.handled(
                "treat-as-withdraw",
                f"BMP router {router.address} peer {peer.peer_ip}",
                f"malformed UPDATE ({exc}), {len(updates)} routes withdrawn",
            )
        for update in updates:
            self._emit(update)

    def _peer_down(self, router: _Router, peer: PeerHeader) -> None:
        """The session to one peer ended: both its pre- and post-policy Adj-RIB-In are gone."""
        for post_policy in (False, True):
            key = (peer.peer_ip, peer.distinguisher, post_policy)
            router.asns.pop(key, None)
            router.add_path.pop(key, None)
        self.stats.log.info(
            "BMP router %s: peer %s AS%d down, withdrawing its routes",
            router.address,
            peer.peer_ip,
            peer.peer_asn,
        )
        down = PeerDown(peer.time, peer.peer_ip, peer.peer_asn, router.source)
        self._emit_peer_down(down, _subject(router, peer.peer_ip))


def _subject(router: _Router, peer_ip: str) -> str:
    """How a peer-down event names a monitored router's peer."""
    return f"BMP router {router.address} peer {peer_ip}"


def _keepalive(sock: socket.socket | None) -> None:
    """TCP keepalives on a router's connection, so that one that died is noticed."""
    if sock is None:
        return
    idle, interval, count = KEEPALIVE
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def _peer_up_add_path(body: bytes) -> frozenset[int]:
    """From a Peer Up (section 4.10: local address and ports, then the OPEN the router sent
    and the one it received), the AFIs whose routes from this peer carry ADD-PATH ids."""
    start = PER_PEER_HEADER.size + 20
    mtype, sent_start, sent_end = split_message(body, start)
    rtype, received_start, received_end = split_message(body, sent_end)
    if mtype != MSG_OPEN or rtype != MSG_OPEN:
        raise WireError("Peer Up does not carry two OPEN messages", start)
    sent = Open.decode(body[sent_start:sent_end])
    received = Open.decode(body[received_start:received_end])
    return received.sends_path_ids_to(sent)


def _info(body: bytes) -> dict[str, str]:
    """Information TLVs (RFC 7854 sections 4.3, 4.4), decoded leniently for logging."""
    out: dict[str, str] = {}
    off = 0
    while off + 4 <= len(body):
        ttype, tlen = struct.unpack_from(">HH", body, off)
        value = body[off + 4 : off + 4 + tlen]
        out[INFO_TLVS.get(ttype, str(ttype))] = value.decode("utf-8", "replace")
        off += 4 + tlen
    return out
