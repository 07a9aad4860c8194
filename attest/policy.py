"""The verifier's policy check: a replayed event log against the accepted digests.

Pure: the caller has already checked the quote's signature and nonce and that the log
replays to the quoted PCR; this decides whether what the log says the site runs is what the
enterprise accepts. Every event counts, not only the last per name: a binary that was
replaced and put back still ran, and only a TPM reset (a reboot) clears its trace, so a
site cut off for it is readmitted after it restarts clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from attest.config import CONFIG_EVENT
from attest.eventlog import Event


@dataclass(frozen=True)
class Policy:
    """Accepted digests per measured name; `config` is the one digest of the site's config
    as the enterprise renders it."""

    pcr: int
    accept: Mapping[str, frozenset[str]]
    config_digest: str

    def names(self) -> set[str]:
        return {*self.accept, CONFIG_EVENT}


def violations(policy: Policy, events: Iterable[Event]) -> list[str]:
    """Why the measured state is not accepted, one line per problem; empty if it is."""
    out = []
    seen: set[str] = set()
    for event in events:
        if event.pcr != policy.pcr:
            out.append(f"{event.name} was measured into PCR {event.pcr}, not PCR {policy.pcr}")
            continue
        seen.add(event.name)
        if event.name == CONFIG_EVENT:
            if event.digest != policy.config_digest:
                out.append(
                    f"config: digest {event.digest[:16]}... is not the config Overcast "
                    f"rendered for this site ({policy.config_digest[:16]}...): edited at the site"
                )
        elif event.name not in policy.accept:
            out.append(f"{event.name}: measured, but the policy has no entry for it")
        elif event.digest not in policy.accept[event.name]:
            out.append(
                f"{event.name}: digest {event.digest[:16]}... is not in the policy "
                f"({len(policy.accept[event.name])} accepted): replaced or not a known-good build"
            )
    for name in sorted(policy.names() - seen):
        out.append(f"{name}: not measured at the site")
    return out
