"""RIS-live JSON lines (https://ris-live.ripe.net/manual/) -> Updates.

Each line is one websocket message. `ris_message` of type UPDATE carries `announcements`
(next hop and prefixes), `withdrawals`, `path` (an AS_SET is a nested list) and `community`
(RIS-live's UPDATE schema has no field for large communities, RFC 8092, so none are set);
a RIS_PEER_STATE whose state is "down" is a `PeerDown` (the collector dropped the peer's
routes without withdrawals); the other RIS message types (OPEN, KEEPALIVE, NOTIFICATION,
RIS_PEER_STATE "connected") are counted as records but carry no routes. A line that is not
valid JSON or not a valid message is counted, logged with its line number, and skipped; a
`ris_error` from the server is counted the same way. `decode` reads one message, for the
websocket client (`ris_websocket`) as for files.

`RisLiveFeed` takes a fast path first: an UPDATE is decoded by msgspec into typed structs,
each field checked in C (ASNs in 0..2^32-1, community halves in 0..65535, an AS_SET a
nested list), its AS path and communities kept as raw JSON until the line is worth them.
A line it refuses (another message type, a field of another type, a bad prefix or ASN)
goes through `decode`, whose errors name the problem: the fast path changes speed only (a
property test holds it to `decode`'s Updates and errors). Files are read a megabyte at a
time and split in C.

Given a `wanted` test (`Guard.wanted`), only the prefixes the guard watches become Updates.
Each distinct prefix text is parsed and judged once; a line with no wanted prefix is
counted as skipped (one set test per prefix list, once its texts have been judged), and the
other prefixes of a line that has a wanted one are counted as dropped. Lines the fast path refuses are screened
before `decode`: their quoted prefixes are found with one regular expression; one that
does not parse makes the line wanted, so that decoding reports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson

from bgp_guard.feeds.stats import FeedStats
from bgp_guard.update import FeedItem, PathElement, PeerDown, Prefix, Update

SOURCE = "ris-live"
# A quoted prefix: in a RIS-live line only the announced and withdrawn prefixes hold a "/".
_PREFIX_TEXT = re.compile(rb'"([0-9A-Fa-f.:]+/[0-9]+)"')
_JUDGED_MAX = 1 << 18  # distinct prefix texts remembered by the filter before it starts over
_CHUNK = 1 << 20  # bytes of a file read at once


# The fast path's view of a ris_message UPDATE: what it does not name is skipped unread, and
# what it names is checked in C. The structs hold no cycles: the cycle collector ignores them.
_Asn = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
_Half = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]  # of a community (RFC 1997)
_NONE = msgspec.Raw(b"[]")


class _Announcement(msgspec.Struct, gc=False):
    prefixes: list[str] = []
    next_hop: str | None = None


class _UpdateData(msgspec.Struct, gc=False):
    type: Literal["UPDATE"]
    timestamp: float
    peer: str
    peer_asn: str | int  # RIS sends a string
    path: msgspec.Raw = _NONE  # decoded only for a line with a prefix wanted
    community: msgspec.Raw = _NONE
    announcements: list[_Announcement] = []
    withdrawals: list[str] = []


class _Message(msgspec.Struct, gc=False):
    type: Literal["ris_message"]
    data: _UpdateData


_MESSAGE = msgspec.json.Decoder(_Message).decode
_PATH = msgspec.json.Decoder(tuple[_Asn | frozenset[_Asn], ...]).decode
_COMMUNITIES = msgspec.json.Decoder(tuple[tuple[_Half, _Half], ...]).decode


class BadMessage(ValueError):
    """A well-formed JSON line that is not a valid RIS-live message."""


class ServerError(BadMessage):
    """A `ris_error` message: the server reports a problem (a bad subscription, a client
    too slow to keep up) instead of sending BGP data."""


def _path(raw: Any) -> tuple[PathElement, ...]:
    if not isinstance(raw, list):
        raise BadMessage("'path' is not a list")
    if all(type(a) is int for a in raw) and (not raw or (min(raw) >= 0 and max(raw) < 2**32)):
        return tuple(raw)  # the common case, checked in C: plain ASNs in range
    path: list[PathElement] = []
    for element in raw:
        if isinstance(element, list):  # AS_SET
            path.append(frozenset(_asn(a) for a in element))
        else:
            path.append(_asn(element))
    return tuple(path)


def _asn(raw: Any) -> int:
    # RIS sends peer_asn as a string and path members as numbers; accept both, nothing else.
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise BadMessage(f"ASN {raw!r} is not a number")
    try:
        asn = int(raw)
    except ValueError:
        raise BadMessage(f"ASN {raw!r} is not a number") from None
    if not 0 <= asn < 2**32:
        raise BadMessage(f"ASN {asn} is outside 0..4294967295")
    return asn


def _prefix(raw: Any) -> Prefix:
    if not isinstance(raw, str):
        raise BadMessage(f"prefix {raw!r} is not a string")
    try:
        return Prefix.parse(raw)
    except ValueError as exc:
        raise BadMessage(f"bad prefix {raw!r}: {exc}") from None


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise BadMessage(f"'{key}' is not a list")
    return value


def _communities(raw: list[Any]) -> tuple[tuple[int, int], ...]:
    try:  # the common case first: pairs of ints in 0..65535, checked without a call each
        pairs = tuple([(hi, lo) for hi, lo in raw])
        if all(type(x) is int and 0 <= x <= 0xFFFF for pair in pairs for x in pair):
            return pairs
    except (TypeError, ValueError):
        pass
    out = []
    for pair in raw:  # then the first bad one, named
        if not (isinstance(pair, list) and len(pair) == 2):
            raise BadMessage(f"community {pair!r} is not a pair")
        hi, lo = _asn(pair[0]), _asn(pair[1])
        if hi > 0xFFFF or lo > 0xFFFF:
            raise BadMessage(f"community {pair!r} has a part above 65535")
        out.append((hi, lo))
    return tuple(out)


def _peer(data: dict[str, Any]) -> tuple[float, str, int]:
    """Time, peer address and peer ASN of one `ris_message`'s `data` object."""
    kind = data.get("type")
    try:
        timestamp, peer, peer_asn = data["timestamp"], data["peer"], data["peer_asn"]
    except KeyError as exc:
        raise BadMessage(f"{kind} without {exc}") from None
    try:
        time = float(timestamp)
    except (TypeError, ValueError):
        raise BadMessage(f"{kind} 'timestamp' is not a number") from None
    return time, str(peer), _asn(peer_asn)


def peer_state(data: dict[str, Any], source: str = SOURCE) -> list[FeedItem]:
    """A RIS_PEER_STATE's `data` object: a PeerDown if the collector's session went down."""
    if data.get("state") != "down":
        return []  # "connected": the routes come as UPDATEs
    return [PeerDown(*_peer(data), source)]


def updates_of(data: dict[str, Any], source: str = SOURCE) -> list[Update]:
    """The Updates of one `ris_message` UPDATE's `data` object."""
    time, peer_ip, peer_asn = _peer(data)
    out = [
        Update(time, peer_ip, peer_asn, _prefix(p), False, source=source)
        for p in _list(data, "withdrawals")
    ]
    announcements = _list(data, "announcements")
    if not announcements:
        return out
    as_path = _path(data.get("path", []))
    communities = _communities(_list(data, "community"))
    for announcement in announcements:
        if not isinstance(announcement, dict):
            raise BadMessage("an announcement is not an object")
        next_hop = announcement.get("next_hop")
        out.extend(
            Update(
                time,
                peer_ip,
                peer_asn,
                _prefix(p),
                True,
                as_path,
                communities,
                str(next_hop) if next_hop is not None else None,
                source,
            )
            for p in _list(announcement, "prefixes")
        )
    return out


def decode(message: str | bytes) -> Sequence[FeedItem]:
    """The Updates (or PeerDown) of one RIS-live message, a JSON text; raises BadMessage,
    ServerError (a `ris_error`), another ValueError or UnicodeDecodeError if it is bad."""
    parsed = orjson.loads(message)  # about 3x json's speed; its errors are ValueErrors
    if not isinstance(parsed, dict):
        raise BadMessage("line is not a JSON object")
    data = parsed.get("data")
    kind = parsed.get("type")
    if kind == "ris_error":
        reason = data.get("message") if isinstance(data, dict) else data
        raise ServerError(f"RIS-live server error: {reason}")
    if kind != "ris_message":
        return []  # ris_subscribe_ok, pong, ...
    if not isinstance(data, dict):
        raise BadMessage("ris_message without a 'data' object")
    kind = data.get("type")
    if kind == "RIS_PEER_STATE":
        return peer_state(data)
    if kind != "UPDATE":
        return []
    return updates_of(data)


class _Filter:
    """Which UPDATE lines are worth decoding, judged on their raw prefix texts (with the
    feed's `_Judged`, so each text is parsed and judged once for both paths)."""

    def __init__(self, judged: _Judged) -> None:
        self.judged = judged

    def skips(self, line: bytes) -> bool:
        if b'"UPDATE"' not in line:
            return False  # peer state, errors, other messages: always read
        found = _PREFIX_TEXT.findall(line)
        if not found:
            return False  # nothing to judge it by: decoding says what it is
        for text in found:
            try:
                if self.judged[text.decode()] is not None:
                    return False
            except ValueError:  # not a prefix: decoding names it
                return False
        return True


class _Judged(dict[str, Prefix | None]):
    """Prefix texts seen so far: the Prefix if it is wanted (every one, without a test),
    else None, and the unwanted ones again as a set, for a whole list's test in C. A text
    that is not a prefix raises ValueError and is not remembered."""

    def __init__(self, wanted: Callable[[Prefix], bool] | None) -> None:
        super().__init__()
        self.wanted = wanted
        self.unwanted: set[str] = set()

    def __missing__(self, text: str) -> Prefix | None:
        prefix = Prefix.parse(text)
        if len(self) >= _JUDGED_MAX:
            self.clear()
            self.unwanted.clear()
        if self.wanted is None or self.wanted(prefix):
            self[text] = prefix
            return prefix
        self[text] = None
        self.unwanted.add(text)
        return None


class RisLiveFeed:
    """Iterate the Updates of RIS-live JSON lines (a file, or lines from the websocket).

    >>> feed = RisLiveFeed.from_file("ris-live-stream.json")   # doctest: +SKIP
    >>> updates = list(feed); feed.stats.as_dict()             # doctest: +SKIP
    {'records': 7, 'updates': 1, 'peer_downs': 1, 'errors': 2}
    """

    def __init__(
        self,
        lines: Iterable[str | bytes],
        name: str = SOURCE,
        wanted: Callable[[Prefix], bool] | None = None,
    ) -> None:
        self.batches: Iterable[Sequence[str | bytes]] = ([line] for line in lines)
        self.name = name
        self.stats = FeedStats("ris-live")
        self.judged = _Judged(wanted)
        self.filter = None if wanted is None else _Filter(self.judged)
        self.peer_asns: dict[str | int, int] = {}  # RIS sends the few peers' ASNs as text
        self.lines_read = 0

    @classmethod
    def from_file(
        cls, path: str | Path, wanted: Callable[[Prefix], bool] | None = None
    ) -> RisLiveFeed:
        def batches() -> Iterator[list[bytes]]:
            # A chunk at a time, split in C: a file's lines cost no Python call each.
            start: list[bytes] = []  # of the line the last chunk ended in
            with Path(path).open("rb") as f:
                while chunk := f.read(_CHUNK):
                    lines = chunk.split(b"\n")
                    if len(lines) > 1:
                        lines[0] = b"".join([*start, lines[0]])
                        start = []
                        yield lines[:-1]
                    start.append(lines[-1])
            yield [b"".join(start)]

        feed = cls((), str(path), wanted)
        feed.batches = batches()
        return feed

    def __iter__(self) -> Iterator[FeedItem]:
        flushed = 0
        try:
            for batch in self.batches:
                yield from self._read(batch)
                if self.lines_read >= flushed + 10_000:
                    self.stats.flush()
                    flushed = self.lines_read
        finally:
            self.stats.flush()

    def _read(self, lines: Sequence[str | bytes]) -> list[FeedItem]:
        stats = self.stats
        unwanted = self.judged.unwanted.issuperset
        out: list[FeedItem] = []
        for number, line in enumerate(lines, self.lines_read + 1):
            try:
                data = _MESSAGE(line).data
            except ValueError:  # not for the fast path (msgspec's errors are ValueErrors)
                if line and not line.isspace():
                    stats.records += 1
                    out += self._decode(line, number)
                continue
            stats.records += 1
            # The common case first: prefixes all judged before, none wanted.
            withdrawals, announcements = data.withdrawals, data.announcements
            if unwanted(withdrawals):
                for announcement in announcements:
                    if not announcement.prefixes or not unwanted(announcement.prefixes):
                        break
                else:
                    if withdrawals or announcements:
                        stats.skipped += 1
                        continue
            try:
                updates = self._updates(data)
            except ValueError:  # a bad prefix or ASN: BadMessage, ipaddress's, msgspec's
                updates = None
            if updates is None:
                out += self._decode(line, number)
            else:
                stats.updates += len(updates)
                out += updates
        self.lines_read += len(lines)
        return out

    def _updates(self, data: _UpdateData) -> list[Update] | None:
        """The wanted Updates of a fast-decoded UPDATE, in `decode`'s order. None if it has
        no prefix at all (`decode` checks the rest); ValueError if a field is bad."""
        judged, announcements = self.judged, data.announcements
        time, peer, asn = data.timestamp, data.peer, self.peer_asns.get(data.peer_asn)
        if asn is None:
            if len(self.peer_asns) >= _JUDGED_MAX:
                self.peer_asns.clear()
            asn = self.peer_asns[data.peer_asn] = _asn(data.peer_asn)
        if announcements:  # `decode` checks these whenever there are announcements
            path, communities = _PATH(data.path), _COMMUNITIES(data.community)
        out = []
        for text in data.withdrawals:
            if prefix := judged[text]:
                out.append(Update(time, peer, asn, prefix, False, (), (), None, SOURCE))
        count = len(data.withdrawals)
        for announcement in announcements:
            count += len(announcement.prefixes)
            hop = announcement.next_hop
            for text in announcement.prefixes:
                if prefix := judged[text]:
                    out.append(
                        Update(time, peer, asn, prefix, True, path, communities, hop, SOURCE)
                    )
        if not out:
            if not count:
                return None
            self.stats.skipped += 1
            return []
        self.stats.dropped += count - len(out)
        return out

    def _decode(self, line: str | bytes, number: int) -> Sequence[FeedItem]:
        """A line the fast path left: screened by the filter, then `decode`d."""
        stats = self.stats
        if self.filter is not None and type(line) is bytes and self.filter.skips(line):
            stats.skipped += 1
            return []
        try:
            items = decode(line)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is one too
            stats.bad_record(f"{self.name} line {number}", exc)
            return []
        if items and type(items[0]) is PeerDown:
            stats.peer_downs += 1
        else:
            stats.updates += len(items)
        return items
