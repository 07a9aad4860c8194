"""AS-path rules: regular expressions and length bounds on the paths to a monitored prefix.

The path is written as BGPalerter writes it, comma-separated ASNs with the origin last
("3356,64501,64500"); an AS_SET is written `{64502 64503}`. Path length counts ASes after
removing prepends, so "64500,64500,64500" has length 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bgp_guard.events import Finding
from bgp_guard.update import PathElement, Update

if TYPE_CHECKING:
    from bgp_guard.config import PathRule


def path_text(as_path: tuple[PathElement, ...]) -> str:
    return ",".join(
        "{" + " ".join(map(str, sorted(e))) + "}" if isinstance(e, frozenset) else str(e)
        for e in as_path
    )


def path_length(as_path: tuple[PathElement, ...]) -> int:
    return sum(1 for i, e in enumerate(as_path) if i == 0 or e != as_path[i - 1])


@dataclass(frozen=True, slots=True)
class PathCheck:
    match: re.Pattern[str] | None
    miss: re.Pattern[str] | None
    description: str
    min_length: int | None
    max_length: int | None

    @classmethod
    def from_rule(cls, rule: PathRule) -> PathCheck:
        return cls(
            None if rule.match is None else re.compile(rule.match),
            None if rule.miss is None else re.compile(rule.miss),
            rule.description,
            rule.min_path_length,
            rule.max_path_length,
        )

    def explain(self, as_path: tuple[PathElement, ...], text: str) -> tuple[str, str] | None:
        """(kind, reason) if this rule fires on the path, else None."""
        why = f" ({self.description})" if self.description else ""
        if self.match is not None or self.miss is not None:
            hit = self.match is None or self.match.search(text) is not None
            if hit and (self.miss is None or self.miss.search(text) is None):
                if self.match is not None:
                    return "path-match", f"matches {self.match.pattern!r}{why}"
                assert self.miss is not None
                return "path-miss", f"does not match {self.miss.pattern!r}{why}"
        length = path_length(as_path)
        if self.min_length is not None and length < self.min_length:
            return "path-length", f"is {length} ASes long, shorter than {self.min_length}{why}"
        if self.max_length is not None and length > self.max_length:
            return "path-length", f"is {length} ASes long, longer than {self.max_length}{why}"
        return None


def check(update: Update, checks: tuple[PathCheck, ...], about: str) -> list[Finding]:
    text = path_text(update.as_path)
    out = []
    for rule in checks:
        fired = rule.explain(update.as_path, text)
        if fired is not None:
            kind, reason = fired
            out.append(
                Finding(
                    kind,
                    update.prefix,
                    None,
                    about,
                    f"AS path {text} to {update.prefix} {reason}.",
                )
            )
    return out
