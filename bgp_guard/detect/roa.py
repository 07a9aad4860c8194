"""ROA changes between two VRP files that touch our prefixes, and what each one does to the
RPKI validity (RFC 6811) of our own announcements, applied alone to the old set."""

from __future__ import annotations

from collections.abc import Iterable

from bgp_guard.events import Finding
from bgp_guard.monitored import Monitored
from bgp_guard.prefixindex import PrefixIndex
from bgp_guard.rpki import RoaChange, VrpSet, validate
from bgp_guard.update import Prefix


def overlapping(monitored: PrefixIndex[Monitored], prefix: Prefix) -> list[Monitored]:
    """Monitored prefixes that cover `prefix` (least specific first) or lie inside it."""
    covering = [mon for _, mons in monitored.covering(prefix) for mon in mons]
    return covering + monitored.more_specifics(prefix)


def check(
    old: VrpSet, changes: Iterable[RoaChange], monitored: PrefixIndex[Monitored]
) -> list[Finding]:
    """One finding per change (`rpki.diff(old, new)`) and monitored prefix it touches."""
    out = []
    for change in changes:
        vrp = change.vrp
        for mon in overlapping(monitored, vrp.prefix):
            if mon.ignore:
                continue
            covering = old.covering(mon.prefix)
            if vrp.prefix.covers(mon.prefix):
                changed = [*covering, vrp] if change.added else [v for v in covering if v != vrp]
            else:
                changed = covering  # a ROA for a more-specific does not cover our prefix
            effects = []
            for origin in sorted(mon.origins):
                before = validate(mon.prefix, origin, covering)[0].value
                after = validate(mon.prefix, origin, changed)[0].value
                if before != after:
                    effects.append(f"{mon.prefix} from AS{origin} goes from {before} to {after}")
            what = "was added" if change.added else "was removed"
            effect = "; ".join(effects) or f"the validity of {mon.prefix} does not change"
            out.append(
                Finding(
                    "roa-change",
                    vrp.prefix,
                    vrp.asn,
                    str(mon.prefix),
                    f"ROA {vrp} {what}: {effect}.",
                )
            )
    return out
