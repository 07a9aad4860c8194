"""RPKI route-origin validation (RFC 6811) of announcements of our prefixes."""

from __future__ import annotations

from dataclasses import replace

from bgp_guard.events import Finding
from bgp_guard.rpki import Validity, VrpSet
from bgp_guard.update import PathElement, Prefix

# The event types this detector raises; a VRP reload re-decides them for routes already held.
KINDS = frozenset({"rpki-invalid", "rpki-not-found"})


def _shown(origin: PathElement | None) -> str:
    return "an AS_SET" if isinstance(origin, frozenset) else f"AS{origin}"


def check(
    prefix: Prefix,
    origin: PathElement | None,
    vrps: VrpSet,
    about: str,
    report_not_found: bool,
) -> Finding | None:
    validity, vrps_found = vrps.validate(prefix, origin)
    if validity is Validity.INVALID:
        listed = "; ".join(map(str, sorted(vrps_found, key=lambda v: (v.asn, v.max_length))))
        return Finding(
            "rpki-invalid",
            prefix,
            origin if isinstance(origin, int) else None,
            about,
            f"{prefix} from {_shown(origin)} is RPKI invalid: no covering VRP matches "
            f"(covering: {listed}).",
        )
    if validity is Validity.NOT_FOUND and report_not_found:
        return Finding(
            "rpki-not-found",
            prefix,
            origin if isinstance(origin, int) else None,
            about,
            f"{prefix} from {_shown(origin)} is not covered by any ROA (RPKI not-found).",
        )
    return None


def cleared(finding: Finding, prefix: Prefix, origin: PathElement | None, vrps: VrpSet) -> Finding:
    """`finding` (one of KINDS) restated for a route that new VRPs no longer flag that way."""
    validity, vrps_found = vrps.validate(prefix, origin)
    if validity is Validity.VALID:
        now = f"RPKI valid (matching VRP: {vrps_found[0]})"
    elif validity is Validity.NOT_FOUND:
        now = "not covered by any ROA (RPKI not-found)"
    else:
        now = "RPKI invalid"  # a not-found event cleared by a new covering ROA
    return replace(
        finding, rationale=f"{prefix} from {_shown(origin)} is now {now} after a VRP reload."
    )
