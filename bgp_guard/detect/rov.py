"""RPKI route-origin validation (RFC 6811) of announcements of our prefixes."""

from __future__ import annotations

from bgp_guard.events import Finding
from bgp_guard.rpki import Validity, VrpSet
from bgp_guard.update import Update


def check(update: Update, vrps: VrpSet, about: str, report_not_found: bool) -> Finding | None:
    origin = update.origin
    validity, vrps_found = vrps.validate(update.prefix, origin)
    shown = "an AS_SET" if isinstance(origin, frozenset) else f"AS{origin}"
    if validity is Validity.INVALID:
        listed = "; ".join(map(str, sorted(vrps_found, key=lambda v: (v.asn, v.max_length))))
        return Finding(
            "rpki-invalid",
            update.prefix,
            origin if isinstance(origin, int) else None,
            about,
            f"{update.prefix} from {shown} is RPKI invalid: no covering VRP matches "
            f"(covering: {listed}).",
        )
    if validity is Validity.NOT_FOUND and report_not_found:
        return Finding(
            "rpki-not-found",
            update.prefix,
            origin if isinstance(origin, int) else None,
            about,
            f"{update.prefix} from {shown} is not covered by any ROA (RPKI not-found).",
        )
    return None
