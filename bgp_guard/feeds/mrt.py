"""MRT files (RFC 6396) -> Updates: BGP4MP / BGP4MP_ET update streams and TABLE_DUMP /
TABLE_DUMP_V2 RIB snapshots, including the ADD-PATH subtypes of RFC 8050.

A collector's session to a peer that leaves Established is recorded as a BGP4MP STATE_CHANGE
(section 4.4.1) and never as withdrawals, though the collector dropped all the peer's routes:
the feed yields a `PeerDown` for it, in the same stream as the Updates.

Files may be plain, gzip or bzip2 (recognised by their magic bytes, not their name). Records are
read in large chunks and decoded by offset, so a file replays at several hundred thousand
updates per second on one core. A malformed record is counted, logged with its byte offset in
the decompressed stream, and skipped; a record whose length cannot be trusted ends the file
(MRT has no marker to resynchronise on), which is also counted and logged.
"""

from __future__ import annotations

import bz2
import gzip
import io
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bgp_guard.feeds.stats import FeedStats
from bgp_guard.update import FeedItem, PeerDown, Prefix, Update
from bgp_guard.wire import (
    AFI_IPV4,
    AFI_IPV6,
    MSG_UPDATE,
    SAFI_UNICAST,
    WireError,
    decode_attributes,
    decode_prefixes,
    decode_update,
    ip_text,
    split_message,
)

# MRT types and subtypes: RFC 6396 section 4, RFC 8050 section 4.
TABLE_DUMP, TABLE_DUMP_V2, BGP4MP, BGP4MP_ET = 12, 13, 16, 17
PEER_INDEX_TABLE = 1
# TABLE_DUMP_V2 RIB subtype -> (IP version, ADD-PATH); multicast subtypes are not routes a
# hijack monitor follows and only count as records. 6/12 are RIB_GENERIC(_ADDPATH).
_RIB_SUBTYPES = {2: (4, False), 4: (6, False), 8: (4, True), 10: (6, True)}
_RIB_GENERIC = {6: False, 12: True}
# BGP4MP subtype -> (4-byte ASNs, ADD-PATH, is a MESSAGE) for the MESSAGE kinds received from
# a peer and the STATE_CHANGE kinds (0, 5). The *_LOCAL kinds (6, 7, 10, 11) are what the
# collector itself sent, not routes it learned.
_BGP4MP_SUBTYPES = {
    0: (False, False, False),
    1: (False, False, True),
    4: (True, False, True),
    5: (True, False, False),
    8: (False, True, True),
    9: (True, True, True),
}
# BGP FSM states as STATE_CHANGE numbers them (RFC 6396 section 4.4.1).
FSM_STATES = ("?", "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
ESTABLISHED = 6

_HEADER = struct.Struct(">IHHI")  # timestamp, type, subtype, length
_CHUNK = 1 << 20
# Larger than any sane record (a full BGP message is at most 64 KiB; a RIB record with
# thousands of peers stays far below this): beyond it the length field itself is corrupt.
_MAX_RECORD = 1 << 26
_FLUSH_EVERY = 50_000

_AFI_VERSION = {AFI_IPV4: 4, AFI_IPV6: 6}
_ADDR_LEN = {4: 4, 6: 16}


class TruncatedFile(Exception):
    """The stream ended inside a record, or a record length is impossible."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


def open_mrt(path: Path) -> io.BufferedIOBase:
    """Open plain, gzip or bzip2 MRT by magic bytes (RFC 1952 1f 8b, bzip2 "BZh")."""
    with path.open("rb") as probe:
        magic = probe.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == b"BZh":
        return bz2.open(path, "rb")
    return path.open("rb")


def read_records(stream: io.BufferedIOBase) -> Iterator[tuple[int, int, int, int, bytes]]:
    """Yield (offset, timestamp, type, subtype, body) per MRT record (RFC 6396 section 2);
    offset is the record's position in the decompressed stream."""
    buf = b""
    pos = 0
    base = 0  # stream offset of buf[0]
    eof = False
    while True:
        if len(buf) - pos < 12 and not eof:
            buf, base, pos = buf[pos:], base + pos, 0
            more = stream.read(_CHUNK)
            eof = not more
            buf += more
        if len(buf) - pos < 12:
            if len(buf) - pos:
                raise TruncatedFile("file ends inside an MRT header", base + pos)
            return
        ts, rtype, subtype, length = _HEADER.unpack_from(buf, pos)
        if length > _MAX_RECORD:
            raise TruncatedFile(f"MRT record length {length} is impossible", base + pos + 8)
        end = pos + 12 + length
        while end > len(buf) and not eof:
            buf, base, end, pos = buf[pos:], base + pos, end - pos, 0
            more = stream.read(max(_CHUNK, end - len(buf)))
            eof = not more
            buf += more
        if end > len(buf):
            raise TruncatedFile(f"file ends inside a {length}-byte MRT record", base + pos)
        yield base + pos, ts, rtype, subtype, buf[pos + 12 : end]
        pos = end


class MrtFeed:
    """Iterate the Updates of one MRT file.

    >>> feed = MrtFeed("ris-rrc06.updates.1427846400.gz")   # doctest: +SKIP
    >>> for update in feed: ...                              # doctest: +SKIP
    >>> feed.stats.as_dict()                                 # doctest: +SKIP
    {'records': 795, 'updates': ..., 'errors': 0}
    """

    def __init__(self, path: str | Path, source: str | None = None) -> None:
        self.name = str(path)
        self.source = source or f"mrt:{Path(path).name}"
        self._open: Callable[[], io.BufferedIOBase] = lambda: open_mrt(Path(path))
        self.stats = FeedStats("mrt")
        # TABLE_DUMP_V2 PEER_INDEX_TABLE (RFC 6396 section 4.3.1): (peer IP, peer ASN).
        self._peers: list[tuple[str, int]] = []
        self._peer_ip_text: dict[bytes, str] = {}
        self._decoders: dict[int, Callable[[float, int, bytes], Sequence[FeedItem]]] = {
            BGP4MP: self._bgp4mp,
            BGP4MP_ET: self._bgp4mp_et,
            TABLE_DUMP: self._table_dump,
            TABLE_DUMP_V2: self._table_dump_v2,
        }

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> MrtFeed:
        """A feed over an in-memory, uncompressed MRT stream (tests, fuzzing)."""
        feed = cls(name, source=f"mrt:{name}")
        feed._open = lambda: io.BytesIO(data)
        return feed

    def __iter__(self) -> Iterator[FeedItem]:
        stats = self.stats
        decoders = self._decoders
        try:
            with self._open() as stream:
                for offset, ts, rtype, subtype, body in read_records(stream):
                    stats.records += 1
                    decode = decoders.get(rtype)
                    if decode is None:
                        continue  # OSPF, ISIS, ...: not BGP
                    try:
                        updates = decode(ts, subtype, body)
                    except WireError as exc:
                        where = offset + 12 + exc.offset
                        stats.bad_record(f"{self.name} byte {where}", exc.reason)
                        continue
                    if updates:
                        if type(updates[0]) is PeerDown:
                            stats.peer_downs += 1
                        else:
                            stats.updates += len(updates)
                        yield from updates
                    if not stats.records % _FLUSH_EVERY:
                        stats.flush()
        except TruncatedFile as exc:
            stats.bad_record(f"{self.name} byte {exc.offset}", f"{exc.reason}; rest of file lost")
        except (OSError, EOFError, zlib.error) as exc:
            # gzip/bzip2 corruption: the decompressor cannot go on past it.
            stats.bad_record(self.name, f"cannot decompress ({exc}); rest of file lost")
        finally:
            stats.flush()

    def _ip(self, raw: bytes) -> str:
        text = self._peer_ip_text.get(raw)
        if text is None:
            text = self._peer_ip_text[raw] = ip_text(raw)
        return text

    # BGP4MP, RFC 6396 section 4.4; ADD-PATH subtypes RFC 8050 section 3.
    def _bgp4mp(self, ts: float, subtype: int, body: bytes, off: int = 0) -> Sequence[FeedItem]:
        kind = _BGP4MP_SUBTYPES.get(subtype)
        if kind is None:
            return []  # the *_LOCAL messages
        asn4, add_path, message = kind
        if asn4:
            if len(body) < off + 12:
                raise WireError("truncated BGP4MP header (4-byte ASNs)", off)
            peer_asn, _local_asn, _ifindex, afi = struct.unpack_from(">IIHH", body, off)
            off += 12
        else:
            if len(body) < off + 8:
                raise WireError("truncated BGP4MP header", off)
            peer_asn, _local_asn, _ifindex, afi = struct.unpack_from(">HHHH", body, off)
            off += 8
        version = _AFI_VERSION.get(afi)
        if version is None:
            raise WireError(f"BGP4MP address family {afi} is neither IPv4 nor IPv6", off - 2)
        alen = _ADDR_LEN[version]
        if len(body) < off + 2 * alen:
            raise WireError("truncated BGP4MP peer and local addresses", off)
        peer_ip = self._ip(body[off : off + alen])
        off += 2 * alen  # peer and local address
        if not message:
            return self._state_change(float(ts), peer_ip, peer_asn, body, off)
        mtype, start, end = split_message(body, off)
        if mtype != MSG_UPDATE:
            return []
        msg = decode_update(body, start, end, asn4=asn4, add_path=add_path)
        return msg.updates(float(ts), peer_ip, peer_asn, self.source)

    def _state_change(
        self, ts: float, peer_ip: str, peer_asn: int, body: bytes, off: int
    ) -> Sequence[FeedItem]:
        """STATE_CHANGE(_AS4), RFC 6396 section 4.4.1: old and new FSM state. Only leaving
        Established loses routes; the way back up is seen as the peer's announcements."""
        if len(body) < off + 4:
            raise WireError("truncated BGP4MP STATE_CHANGE states", off)
        old, new = struct.unpack_from(">HH", body, off)
        if old != ESTABLISHED or new == ESTABLISHED:
            return []
        self.stats.log.info(
            "%s: peer %s AS%d went from Established to %s at %d; withdrawing its routes",
            self.name,
            peer_ip,
            peer_asn,
            FSM_STATES[new] if new < len(FSM_STATES) else f"state {new}",
            ts,
        )
        return [PeerDown(ts, peer_ip, peer_asn, self.source)]

    def _bgp4mp_et(self, ts: float, subtype: int, body: bytes) -> Sequence[FeedItem]:
        # RFC 6396 section 3: a microsecond field precedes the BGP4MP body.
        if len(body) < 4:
            raise WireError("truncated BGP4MP_ET microsecond field", 0)
        (micro,) = struct.unpack_from(">I", body)
        return self._bgp4mp(ts + micro / 1e6, subtype, body, 4)

    # TABLE_DUMP, RFC 6396 section 4.2 (2-byte ASNs only; AS4_PATH is merged).
    def _table_dump(self, ts: float, subtype: int, body: bytes) -> Sequence[FeedItem]:
        version = _AFI_VERSION.get(subtype)
        if version is None:
            raise WireError(f"TABLE_DUMP subtype {subtype} is neither IPv4 nor IPv6", 0)
        alen = _ADDR_LEN[version]
        fixed = 4 + alen + 2 + 4 + alen + 4  # view, seq .. peer AS, attribute length
        if len(body) < fixed:
            raise WireError("truncated TABLE_DUMP entry", 0)
        value = int.from_bytes(body[4 : 4 + alen])
        length = body[4 + alen]
        off = 4 + alen + 2 + 4
        peer_ip = self._ip(body[off : off + alen])
        peer_asn, attr_len = struct.unpack_from(">HH", body, off + alen)
        off += alen + 4
        if off + attr_len > len(body):
            raise WireError(f"TABLE_DUMP attributes of {attr_len} bytes run past the record", off)
        if length > alen * 8:
            raise WireError(f"TABLE_DUMP prefix length {length}", 4 + alen)
        prefix = Prefix(version, value, length)
        attrs = decode_attributes(body, off, off + attr_len, asn4=False)
        next_hop = attrs.next_hop if version == 4 else attrs.mp_next_hop
        return [
            Update(
                float(ts),
                peer_ip,
                peer_asn,
                prefix,
                True,
                attrs.as_path,
                attrs.communities,
                next_hop,
                self.source,
                None,
                attrs.large_communities,
            )
        ]

    # TABLE_DUMP_V2, RFC 6396 section 4.3; ADD-PATH RIBs RFC 8050 section 4.
    def _table_dump_v2(self, ts: float, subtype: int, body: bytes) -> Sequence[FeedItem]:
        if subtype == PEER_INDEX_TABLE:
            self._peers = self._peer_index(body)
            return []
        if subtype in _RIB_SUBTYPES:
            version, add_path = _RIB_SUBTYPES[subtype]
            if len(body) < 5:
                raise WireError("truncated RIB record header", 0)
            nlri = decode_prefixes(body, 4, 5 + ((body[4] + 7) >> 3), version)
            off = 5 + ((body[4] + 7) >> 3)
        elif subtype in _RIB_GENERIC:
            add_path = _RIB_GENERIC[subtype]
            if len(body) < 8:
                raise WireError("truncated RIB_GENERIC record header", 0)
            afi, safi = struct.unpack_from(">HB", body, 4)
            version_or_none = _AFI_VERSION.get(afi)
            if version_or_none is None or safi != SAFI_UNICAST:
                return []
            version = version_or_none
            off = 7 + 1 + ((body[7] + 7) >> 3)
            nlri = decode_prefixes(body, 7, off, version)
        else:
            return []  # multicast RIBs
        prefix = nlri[0][0]
        if off + 2 > len(body):
            raise WireError("truncated RIB entry count", off)
        (count,) = struct.unpack_from(">H", body, off)
        off += 2
        out = []
        peers = self._peers
        ts_f = float(ts)
        for _ in range(count):
            entry = off
            if add_path:
                if off + 12 > len(body):
                    raise WireError("truncated ADD-PATH RIB entry", entry)
                index, _originated, path_id, attr_len = struct.unpack_from(">HIIH", body, off)
                off += 12
            else:
                if off + 8 > len(body):
                    raise WireError("truncated RIB entry", entry)
                index, _originated, attr_len = struct.unpack_from(">HIH", body, off)
                path_id = None
                off += 8
            end = off + attr_len
            if end > len(body):
                raise WireError(f"RIB entry attributes of {attr_len} bytes run past record", entry)
            if index >= len(peers):
                raise WireError(f"RIB entry names peer {index}, not in PEER_INDEX_TABLE", entry)
            attrs = decode_attributes(body, off, end, asn4=True, rib_entry=True)
            off = end
            peer_ip, peer_asn = peers[index]
            next_hop = attrs.next_hop if version == 4 else attrs.mp_next_hop
            out.append(
                Update(
                    ts_f,
                    peer_ip,
                    peer_asn,
                    prefix,
                    True,
                    attrs.as_path,
                    attrs.communities,
                    next_hop,
                    self.source,
                    path_id,
                    attrs.large_communities,
                )
            )
        return out

    def _peer_index(self, body: bytes) -> list[tuple[str, int]]:
        """PEER_INDEX_TABLE, RFC 6396 section 4.3.1."""
        if len(body) < 6:
            raise WireError("truncated PEER_INDEX_TABLE", 0)
        (name_len,) = struct.unpack_from(">H", body, 4)
        off = 6 + name_len
        if off + 2 > len(body):
            raise WireError("truncated PEER_INDEX_TABLE view name", 4)
        (count,) = struct.unpack_from(">H", body, off)
        off += 2
        peers = []
        for _ in range(count):
            if off + 1 > len(body):
                raise WireError("truncated peer entry", off)
            peer_type = body[off]
            alen = 16 if peer_type & 1 else 4
            asn_len = 4 if peer_type & 2 else 2
            start = off + 5  # type, BGP identifier
            off = start + alen + asn_len
            if off > len(body):
                raise WireError("truncated peer entry", start - 5)
            peer_asn = int.from_bytes(body[start + alen : off])
            peers.append((self._ip(body[start : start + alen]), peer_asn))
        return peers
