"""From the engine's event transitions to notices for the sinks, through the state file.

The engine (`EventTable`) forgets everything on a restart; the state file does not. So the
decision "tell the NOC?" is made here, against the stored event:

- ongoing, and not open in the state file          -> open (after notify.min_duration)
- ongoing, already open (a restart, a re-flap)     -> nothing: dedup by event key
- withdrawn or resolved, open in the state file    -> close
- withdrawn or resolved before min_duration passed -> nothing: the NOC never heard of it
- open longer than notify.repeat_every since the last notice, not acknowledged -> repeat
- open in the state file but not seen again within notify.restart_grace of a restart ->
  close, saying it ended while the guard was not watching.

A silenced event (until its silence expires) gets no notices at all. Notices are written to
the state file's delivery queue for every sink in the same transaction-sized step; the
`Outbox` delivers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Gauge

from bgp_guard.sinks import notice
from bgp_guard.sinks.config import Notify
from bgp_guard.state import Store, StoredEvent, event_key
from overcast.metrics import REGISTRY

_EVENTS = Gauge(
    "overcast_bgp_guard_stored_events",
    "Events in the guard's state file, by type and by state (open: told to the NOC, not "
    "yet closed).",
    ["type", "state"],
    registry=REGISTRY,
)


class Notifier:
    def __init__(
        self,
        store: Store,
        sinks: Sequence[str],
        policy: Notify,
        started: float,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.sinks = tuple(sinks)
        self.policy = policy
        self.started = started
        self.wake = wake  # called after notices were queued: the Outbox delivers them now
        self._due: dict[str, tuple[dict[str, Any], float]] = {}  # opens held for min_duration
        self._seen: set[str] = set()  # keys the engine reported since start
        self._reconciled = False

    def handle(self, events: Sequence[dict[str, Any]], now: float) -> None:
        """Fold the engine's transitions into the state file, queuing what must be said."""
        queued = False
        for event in events:
            key = event_key(event)
            self._seen.add(key)
            stored = self.store.event(key)
            if event["state"] == "ongoing":
                if stored is not None and stored.open:
                    self.store.put_event(key, event, True)
                elif self.policy.min_duration > 0:
                    self._due.setdefault(key, (event, now + self.policy.min_duration))
                    self.store.put_event(key, event, False)
                else:
                    queued |= self._open(key, event, stored, now)
            else:  # withdrawn, resolved
                self._due.pop(key, None)
                if stored is not None and stored.open:
                    queued |= self._say("close", key, event, stored, now, is_open=False)
                else:
                    self.store.put_event(key, event, False)
        if queued:
            self.wake()

    def tick(self, now: float) -> None:
        """Opens whose min_duration passed, repeats that are due, and after restart_grace
        the events that did not come back."""
        queued = False
        for key, (event, due) in list(self._due.items()):
            if due <= now:
                del self._due[key]
                queued |= self._open(key, event, self.store.event(key), now)
        open_events = self.store.events(open_only=True, limit=100_000)
        every = self.policy.repeat_every
        for stored in open_events:
            quiet = stored.acked_by is not None or stored.silenced(now)
            if every and not quiet and now - (stored.notified_at or 0.0) >= every:
                queued |= self._say("repeat", stored.key, stored.event, stored, now, True)
        if not self._reconciled and now - self.started >= self.policy.restart_grace:
            self._reconciled = True
            for stored in open_events:
                if stored.key not in self._seen and stored.changed_at < self.started:
                    event = dict(stored.event, state="resolved", time=now)
                    event["rationale"] = (
                        f"Not seen again within {self.policy.restart_grace:.0f} s of the "
                        "guard's restart: it ended while the guard was not watching. "
                        f"Was: {stored.event['rationale']}"
                    )
                    queued |= self._say("close", stored.key, event, stored, now, False)
        _EVENTS.clear()
        for (kind, state), n in self.store.counts().items():
            _EVENTS.labels(kind, state).set(n)
        if queued:
            self.wake()

    def operator(self, what: str, stored: StoredEvent, now: float) -> None:
        """Queue the notice of an ack or a silence that `overcast guard` just stored."""
        fresh = self.store.event(stored.key) or stored
        self._say(what, fresh.key, fresh.event, fresh, now, fresh.open, force=True)

    def _open(
        self, key: str, event: dict[str, Any], stored: StoredEvent | None, now: float
    ) -> bool:
        if stored is not None and stored.acked_by is not None:
            self.store.clear_ack(key)  # a new open needs a new acknowledgement
            stored = self.store.event(key)
        return self._say("open", key, event, stored, now, is_open=True)

    def _say(
        self,
        what: str,
        key: str,
        event: dict[str, Any],
        stored: StoredEvent | None,
        now: float,
        is_open: bool,
        force: bool = False,
    ) -> bool:
        """Store the event and queue notice `what` for every sink, unless silenced."""
        silenced = stored is not None and stored.silenced(now) and not force
        self.store.put_event(key, event, is_open, None if silenced else now)
        if silenced or not self.sinks:
            return False
        ack = None
        if stored is not None and stored.acked_by is not None:
            ack = {"by": stored.acked_by, "note": stored.ack_note, "at": stored.acked_at}
        until = stored.silenced_until if stored is not None and stored.silenced(now) else None
        self.store.enqueue(
            self.sinks, key, what, notice.build(what, key, event, now, ack, until), now
        )
        return True
