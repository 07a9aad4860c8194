"""Per-feed counters, mirrored into the process-wide Prometheus registry."""

from __future__ import annotations

import logging

from bgp_guard.metrics import Lazy

_RECORDS = Lazy(
    "Counter",
    "overcast_bgp_feed_records",
    "Records read by a BGP feed (MRT records, JSON lines, BMP or BGP messages).",
    ["feed"],
)
_UPDATES = Lazy(
    "Counter",
    "overcast_bgp_feed_updates",
    "Prefix announcements and withdrawals produced by a BGP feed.",
    ["feed"],
)
_PEER_DOWNS = Lazy(
    "Counter",
    "overcast_bgp_feed_peer_downs",
    "Peer sessions a BGP feed saw leave Established (all their routes withdrawn at once).",
    ["feed"],
)
_ERRORS = Lazy(
    "Counter",
    "overcast_bgp_feed_errors",
    "Malformed records a BGP feed skipped (each one is logged with its position).",
    ["feed"],
)
_HANDLED = Lazy(
    "Counter",
    "overcast_bgp_feed_error_handling",
    "Malformed input a live BGP feed acted on, by action: treat-as-withdraw, "
    "attribute-discard, session-reset (RFC 7606 section 2), family-ignored (an AFI/SAFI "
    "that was not negotiated).",
    ["feed", "action"],
)
_REFUSED = Lazy(
    "Counter",
    "overcast_bgp_feed_refused",
    "Connections a live BGP feed refused or closed to protect itself, by reason.",
    ["feed", "reason"],
)

CONNECTIONS = Lazy(
    "Gauge",
    "overcast_bgp_feed_connections",
    "Connections a live BGP feed holds open now (sessions, BMP routers).",
    ["feed"],
)


def worth_logging(count: int) -> bool:
    """Log the first ten of a repeated problem, then only the 16th, 32nd, 64th...: a flood
    of bad input must not become a flood of log lines (the counters have every one)."""
    return count <= 10 or not count & (count - 1)


class FeedStats:
    """Counts for one feed instance. Hot loops bump the plain ints; `flush()` pushes the
    increase since the last flush to Prometheus, so counting costs nothing per update."""

    __slots__ = (
        "_flushed",
        "actions",
        "dropped",
        "errors",
        "kind",
        "log",
        "peer_downs",
        "records",
        "refusals",
        "skipped",
        "updates",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind  # the Prometheus `feed` label: "mrt", "ris-live", "bmp", "session"
        self.records = 0
        self.updates = 0
        self.peer_downs = 0
        self.errors = 0
        self.skipped = 0  # records left unread: a filter saw nothing in them worth decoding
        self.dropped = 0  # updates of records read that a filter left out: about nothing wanted
        self._flushed = (0, 0, 0, 0)
        self.actions: dict[str, int] = {}  # RFC 7606 outcomes and the like, by action
        self.refusals: dict[str, int] = {}  # connections refused or closed, by reason
        self.log = logging.getLogger(f"bgp_guard.feeds.{kind}")

    def bad_record(self, where: str, problem: object) -> None:
        """Count and log one malformed record; `where` names the input and the position."""
        self.errors += 1
        self.log.warning("skipped malformed record at %s: %s", where, problem)

    def handled(self, action: str, where: str, problem: object, log: bool = True) -> None:
        """Count (at once: these are rare) and log one malformed input acted on."""
        count = self.actions[action] = self.actions.get(action, 0) + 1
        _HANDLED.labels(self.kind, action).inc()
        if log and worth_logging(count):
            self.log.warning("%s from %s: %s (%d so far)", action, where, problem, count)

    def refused(self, reason: str, where: str, detail: str = "") -> None:
        """Count and log one connection refused or closed for `reason`."""
        count = self.refusals[reason] = self.refusals.get(reason, 0) + 1
        _REFUSED.labels(self.kind, reason).inc()
        if worth_logging(count):
            self.log.warning(
                "closed the connection from %s: %s%s (%d so far)",
                where,
                reason,
                f"; {detail}" if detail else "",
                count,
            )

    def flush(self) -> None:
        records, updates, peer_downs, errors = self._flushed
        _RECORDS.labels(self.kind).inc(self.records - records)
        _UPDATES.labels(self.kind).inc(self.updates - updates)
        _PEER_DOWNS.labels(self.kind).inc(self.peer_downs - peer_downs)
        _ERRORS.labels(self.kind).inc(self.errors - errors)
        self._flushed = (self.records, self.updates, self.peer_downs, self.errors)

    def as_dict(self) -> dict[str, int]:
        return {
            "records": self.records,
            "updates": self.updates,
            "peer_downs": self.peer_downs,
            "errors": self.errors,
            **({"skipped": self.skipped} if self.skipped else {}),
            **({"dropped": self.dropped} if self.dropped else {}),
            **self.actions,
            **{f"refused {reason}": n for reason, n in self.refusals.items()},
        }
