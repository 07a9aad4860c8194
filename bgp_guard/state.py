"""What the guard must not forget across a restart, in one SQLite file.

- `events`: one row per event key (type, prefix, offending AS, about), with whether the NOC
  was told it is open, when it was last told, and any acknowledgement or silence;
- `deliveries`: every notice for every sink, kept until that sink took it. This is the
  sinks' queue: a sink that is down, or a guard that restarts, loses nothing, and a notice
  is marked delivered only after the sink accepted it.

WAL mode lets `overcast guard ack|silence` write while `guard watch` runs; every write is
one short transaction, so neither waits long (busy_timeout covers the overlap).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY,          -- type|prefix|offending AS|about
    type TEXT NOT NULL,
    state TEXT NOT NULL,           -- the engine's last state: ongoing, withdrawn, resolved
    open INTEGER NOT NULL,         -- 1 from the open notice to the close notice
    first_seen REAL NOT NULL,
    changed_at REAL NOT NULL,
    notified_at REAL,              -- last open or repeat notice
    acked_by TEXT, ack_note TEXT, acked_at REAL,
    silenced_until REAL,
    event TEXT NOT NULL            -- the engine's event dict, as JSON
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_key TEXT NOT NULL,
    notice TEXT NOT NULL,          -- open, close, repeat, ack, silence
    payload TEXT NOT NULL,         -- the notice as JSON, exactly what the sink gets
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, delivered_at, id);
"""


def event_key(event: dict[str, Any]) -> str:
    """The dedup key of an engine event dict: what it is, where, by whom, about what."""
    offender = event.get("offending_as")
    return "|".join(
        (event["type"], event.get("prefix") or "-", "-" if offender is None else str(offender),
         event.get("about") or "-")
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredEvent:
    key: str
    state: str
    open: bool
    first_seen: float
    changed_at: float
    notified_at: float | None
    acked_by: str | None
    ack_note: str | None
    acked_at: float | None
    silenced_until: float | None
    event: dict[str, Any]

    def silenced(self, now: float) -> bool:
        return self.silenced_until is not None and self.silenced_until > now


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    sink: str
    notice: str
    payload: dict[str, Any]
    attempts: int
    next_try: float


class StateError(Exception):
    """The state file cannot be opened or is not ours."""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{self.path}: {exc}; give guard.state_file a path to a new file or to one "
                "this guard wrote"
            ) from None

    def close(self) -> None:
        self.db.close()

    # events

    def event(self, key: str) -> StoredEvent | None:
        row = self.db.execute(
            "SELECT key, state, open, first_seen, changed_at, notified_at, acked_by, ack_note,"
            " acked_at, silenced_until, event FROM events WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else _stored(row)

    def events(self, open_only: bool = False, limit: int = 1000) -> list[StoredEvent]:
        where = "WHERE open = 1" if open_only else ""
        rows = self.db.execute(
            "SELECT key, state, open, first_seen, changed_at, notified_at, acked_by, ack_note,"
            f" acked_at, silenced_until, event FROM events {where}"
            " ORDER BY changed_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_stored(r) for r in rows]

    def find(self, text: str) -> list[StoredEvent]:
        """Events whose key is `text` or contains it (an operator types part of a key)."""
        exact = self.event(text)
        if exact is not None:
            return [exact]
        return [e for e in self.events(limit=100_000) if text in e.key]

    def put_event(
        self, key: str, event: dict[str, Any], is_open: bool, notified_at: float | None = None
    ) -> None:
        """Record the engine's latest view of `key`; `notified_at` when a notice went out."""
        self.db.execute(
            "INSERT INTO events (key, type, state, open, first_seen, changed_at, notified_at,"
            " event) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " state = excluded.state, open = excluded.open, changed_at = excluded.changed_at,"
            " notified_at = COALESCE(excluded.notified_at, notified_at), event = excluded.event",
            (key, event["type"], event["state"], int(is_open), event["first_seen"],
             event["time"], notified_at, json.dumps(event, sort_keys=True)),
        )  # fmt: skip

    def counts(self) -> dict[tuple[str, str], int]:
        """Events by type and state: "open" while the NOC was told and not yet told it
        closed, else the engine's last state."""
        rows = self.db.execute(
            "SELECT type, CASE WHEN open THEN 'open' ELSE state END, COUNT(*) FROM events"
            " GROUP BY 1, 2"
        )
        return {(kind, state): n for kind, state, n in rows}

    def ack(self, key: str, by: str, note: str, now: float) -> None:
        self.db.execute(
            "UPDATE events SET acked_by = ?, ack_note = ?, acked_at = ? WHERE key = ?",
            (by, note, now, key),
        )

    def silence(self, key: str, until: float) -> None:
        self.db.execute("UPDATE events SET silenced_until = ? WHERE key = ?", (until, key))

    def clear_ack(self, key: str) -> None:
        """A new open of a closed event needs a new acknowledgement."""
        self.db.execute(
            "UPDATE events SET acked_by = NULL, ack_note = NULL, acked_at = NULL WHERE key = ?",
            (key,),
        )

    # deliveries

    def enqueue(
        self, sinks: Iterable[str], key: str, notice: str, payload: dict[str, Any], now: float
    ) -> None:
        body = json.dumps(payload, sort_keys=True)
        self.db.executemany(
            "INSERT INTO deliveries (sink, event_key, notice, payload, created, next_try)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(sink, key, notice, body, now, now) for sink in sinks],
        )

    def next_delivery(self, sink: str) -> Delivery | None:
        """The oldest notice `sink` has not taken: notices go out in order, so a close never
        overtakes its open."""
        row = self.db.execute(
            "SELECT id, sink, notice, payload, attempts, next_try FROM deliveries"
            " WHERE sink = ? AND delivered_at IS NULL ORDER BY id LIMIT 1",
            (sink,),
        ).fetchone()
        if row is None:
            return None
        return Delivery(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def delivered(self, delivery_id: int, now: float) -> None:
        self.db.execute(
            "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
            (now, delivery_id),
        )

    def failed(self, delivery_id: int, error: str, next_try: float) -> None:
        self.db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_try = ?"
            " WHERE id = ?",
            (error[:500], next_try, delivery_id),
        )

    def queue_depths(self, sinks: Sequence[str]) -> dict[str, int]:
        depths = dict.fromkeys(sinks, 0)
        for sink, n in self.db.execute(
            "SELECT sink, COUNT(*) FROM deliveries WHERE delivered_at IS NULL GROUP BY sink"
        ):
            if sink in depths:
                depths[sink] = n
        return depths

    def deliveries(self, key: str | None = None) -> list[dict[str, Any]]:
        """Every delivery (of `key`), oldest first, for `guard events` and the status page."""
        where, args = ("WHERE event_key = ?", (key,)) if key else ("", ())
        rows = self.db.execute(
            "SELECT sink, event_key, notice, created, attempts, delivered_at, last_error"
            f" FROM deliveries {where} ORDER BY id",
            args,
        ).fetchall()
        names = ("sink", "key", "notice", "created", "attempts", "delivered_at", "last_error")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def prune(self, now: float, keep: float = 30 * 86400) -> None:
        """Forget delivered notices and closed events older than `keep` seconds."""
        self.db.execute(
            "DELETE FROM deliveries WHERE delivered_at IS NOT NULL AND delivered_at < ?",
            (now - keep,),
        )
        self.db.execute("DELETE FROM events WHERE open = 0 AND changed_at < ?", (now - keep,))


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(
        row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        json.loads(row[10]),
    )  # fmt: skip
