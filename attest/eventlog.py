"""The measurement event log: what a site extended into its PCR, and its replay.

A PCR holds only a running hash; the log says what went into it. Each event binds a name
to a digest, and the TPM is extended with the event's digest, SHA-256(name || 0x00 ||
digest), as Linux IMA extends a template hash rather than the bare file hash, so the log
cannot move a digest to another name without breaking the replay. Replaying the log from
the PCR's reset value (all zeros) must give the quoted PCR value (TPM 2.0 Part 1, section
17.5: PCR_new = H(PCR_old || digest)); otherwise the log was altered or is incomplete.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DIGEST_BYTES = 32  # SHA-256 bank
PCR_RESET = bytes(DIGEST_BYTES)


class EventLogError(Exception):
    """The log is malformed; the message says what is wrong with which event."""


@dataclass(frozen=True)
class Event:
    pcr: int
    name: str  # "wireguard-go", "overcast", "config", ...
    digest: str  # hex SHA-256 of what was measured

    def extend_digest(self) -> bytes:
        """What goes into the PCR for this event."""
        return hashlib.sha256(self.name.encode() + b"\0" + bytes.fromhex(self.digest)).digest()

    def as_dict(self) -> dict[str, Any]:
        return {"pcr": self.pcr, "name": self.name, "digest": self.digest}


def extend(pcr_value: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(pcr_value + digest).digest()


def replay(events: Iterable[Event], pcrs: Iterable[int]) -> dict[int, bytes]:
    """The value each of `pcrs` has after the `events` from reset."""
    values = dict.fromkeys(pcrs, PCR_RESET)
    for event in events:
        if event.pcr in values:
            values[event.pcr] = extend(values[event.pcr], event.extend_digest())
    return values


def latest(events: Iterable[Event]) -> dict[str, str]:
    """The last digest measured under each name."""
    return {e.name: e.digest for e in events}


def parse(data: Any) -> list[Event]:
    """A log as the site sends it (a JSON list of {pcr, name, digest}); anything else is
    an EventLogError naming the bad event."""
    if not isinstance(data, list):
        raise EventLogError("the event log is not a list of events")
    events = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping) or set(item) != {"pcr", "name", "digest"}:
            raise EventLogError(f"event {i} is not {{pcr, name, digest}}")
        pcr, name, digest = item["pcr"], item["name"], item["digest"]
        if not isinstance(pcr, int) or isinstance(pcr, bool) or not 0 <= pcr <= 23:
            raise EventLogError(f"event {i}: PCR {pcr!r} is not 0-23")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise EventLogError(f"event {i}: name {name!r} is not 1-64 characters")
        try:
            raw = bytes.fromhex(digest) if isinstance(digest, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != DIGEST_BYTES:
            raise EventLogError(f"event {i} ({name}): digest is not 64 hex digits")
        events.append(Event(pcr, name, digest.lower()))
    return events
