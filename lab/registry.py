"""What a lab has created, written down *before* each thing is created.

The registry is an append-only JSON-lines file in the lab's state dir, flushed to disk
before the lab creates the namespace, process or file it names. After a crash (even
`kill -9` of the lab process) `overcast lab down` reads it and removes everything; entries
for things that were never created are harmless. Something a lab made and removed again
itself (a scenario's own namespace, say) is forgotten by a line written *after* the removal,
so a crash in between only leaves an entry for a thing that is gone. Teardown order is a pure function of the
entries: stop processes, then delete namespaces (which takes their interfaces along), then
files and directories, newest first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["process", "netns", "path"]
REGISTRY_FILE = "registry.jsonl"
_ORDER: dict[str, int] = {"process": 0, "netns": 1, "path": 2}


@dataclass(frozen=True)
class Entry:
    """`process`: `name` is a pidfile, `program` the binary expected to hold that pid;
    `netns`: a network namespace name; `path`: a file, socket or directory."""

    kind: Kind
    name: str
    program: str = ""


class Registry:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / REGISTRY_FILE

    def open(self) -> None:
        """Create the state dir, recording it first so `down` removes it last."""
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        if not self.path.exists():
            self.record(Entry("path", str(self.state_dir)))

    def record(self, entry: Entry) -> None:
        if entry not in self.entries():
            self._append(asdict(entry))

    def netns(self, name: str) -> str:
        self.record(Entry("netns", name))
        return name

    def process(self, pidfile: Path, program: str) -> Path:
        self.record(Entry("process", str(pidfile), program))
        return pidfile

    def file(self, path: Path) -> Path:
        self.record(Entry("path", str(path)))
        return path

    def forget(self, entry: Entry) -> None:
        """`entry`'s thing was removed again on purpose: the lab no longer has it."""
        if entry in self.entries():
            self._append(asdict(entry) | {"removed": True})

    def _append(self, doc: dict[str, object]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[Entry]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return parse(lines)


def parse(lines: Iterable[str]) -> list[Entry]:
    """Entries from registry lines, less those forgotten since. A line torn by a crash
    mid-write is skipped: the thing it named was not created yet (the entry is always
    written first), or it was removed already (a removal is written after)."""
    out: list[Entry] = []
    for line in lines:
        try:
            doc = json.loads(line)
            entry = Entry(doc["kind"], doc["name"], doc.get("program", ""))
        except (ValueError, KeyError, TypeError):
            continue
        if entry.kind not in _ORDER:
            continue
        if doc.get("removed") is True:
            if entry in out:
                out.remove(entry)
        elif entry not in out:
            out.append(entry)
    return out


def teardown_order(entries: Iterable[Entry]) -> list[Entry]:
    """Processes first (they hold namespaces and files open), then namespaces, then paths;
    within a kind newest first, so a directory is removed after what was put inside it."""
    indexed = list(enumerate(entries))
    indexed.sort(key=lambda pair: (_ORDER[pair[1].kind], -pair[0]))
    return [entry for _, entry in indexed]
