"""What a sink is told: one notice per moment in an event's life that a NOC cares about.

- open:    the event started (after min_peers and min_duration);
- repeat:  still open, said again every notify.repeat_every seconds until acknowledged;
- close:   it ended, worded for what ended: "resolved", "visible again" (visibility loss),
           "recovered" (a feed), "withdrawn" (no peer carries the route any more);
- ack:     an operator acknowledged it (`overcast guard ack`);
- silence: an operator silenced it for a time (`overcast guard silence`).

Every sink gets the same dict; the syslog, email and webhook sinks word it from `headline`
and `event` (the engine's event: type, prefix, rationale, peers, AS path, ...).
"""

from __future__ import annotations

import time
from typing import Any

KINDS = ("open", "repeat", "close", "ack", "silence")


def close_label(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == "visibility-loss":
        return "visible again"
    if kind.startswith("feed-") or kind in ("peer-down", "session-down"):
        return "recovered"
    if event["state"] == "withdrawn":
        return "withdrawn"
    return "resolved"


def label(notice: str, event: dict[str, Any]) -> str:
    if notice == "close":
        return close_label(event)
    return {"open": "open", "repeat": "still open", "ack": "acknowledged"}.get(notice, notice)


def headline(notice: str, event: dict[str, Any]) -> str:
    """ "OPEN: subprefix-origin 203.0.113.0/25 from AS64511 (about 203.0.113.0/24)"."""
    where = event.get("prefix") or event.get("about") or ""
    offender = event.get("offending_as")
    by = f" from AS{offender}" if offender is not None else ""
    about = event.get("about")
    of = f" (about {about})" if about and about != where else ""
    return f"{label(notice, event).upper()}: {event['type']} {where}{by}{of}".rstrip()


def build(
    notice: str,
    key: str,
    event: dict[str, Any],
    now: float,
    ack: dict[str, Any] | None = None,
    silenced_until: float | None = None,
) -> dict[str, Any]:
    return {
        "notice": notice,
        "label": label(notice, event),
        "headline": headline(notice, event),
        "key": key,
        "time": now,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "event": event,
        "ack": ack,
        "silenced_until": silenced_until,
    }


def text(notice: dict[str, Any]) -> str:
    """A plain-text body (email, a chat message): headline, why, and the evidence."""
    event = notice["event"]
    lines = [notice["headline"], "", event["rationale"], ""]
    lines.append(f"state: {event['state']} since {notice['time_utc']}")
    if event.get("artemis"):
        lines.append(f"ARTEMIS type: {event['artemis']}")
    if event.get("peer_count"):
        lines.append(f"seen by {event['peer_count']} peer(s): {', '.join(event['peers'][:10])}")
    if event.get("example_path"):
        path = " ".join(str(e) for e in event["example_path"])
        lines.append(f"example AS path: {path}")
    if notice.get("ack"):
        ack = notice["ack"]
        lines.append(f"acknowledged by {ack['by']}" + (f": {ack['note']}" if ack["note"] else ""))
    if notice.get("silenced_until"):
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(notice["silenced_until"]))
        lines.append(f"silenced until {until}")
    lines.append(f"event key: {notice['key']}")
    return "\n".join(lines) + "\n"
