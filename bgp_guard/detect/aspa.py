"""ASPA path verification of announcements (draft-ietf-sidrops-aspa-verification-28), and
its agreement with the valley-free check over CAIDA relationships.

The procedure follows where the route was heard (guard.aspa): from a customer, peer, route
server or RS-client, upstream (section 5.5); from a provider or at a collector, downstream
(section 5.6). The neighbour check (section 5.5/5.6 step 2) applies to BGP neighbours that
are customers, peers, providers or RS-clients; a transparent route server (RFC 7947 section
2.2.2) and a collector's peers (often route servers too) are exempt.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bgp_guard.aspa import AspaSet, Outcome, Procedure, Verdict, verify
from bgp_guard.detect.path import path_text
from bgp_guard.events import Finding
from bgp_guard.metrics import Lazy
from bgp_guard.update import PathElement, Prefix

if TYPE_CHECKING:
    from bgp_guard.policy import Policy

_CUSTOMERS = Lazy(
    "Gauge",
    "overcast_bgp_guard_aspa_customers",
    "Customer ASes with an ASPA in the ASPA file the guard verifies with (after reloads).",
)

KIND = "aspa-invalid"
# The event types a change of ASPAs re-decides (an ASPA verdict can absorb a route leak).
PATH_KINDS = frozenset({KIND, "route-leak"})

# relationship -> (procedure, whether the path must start with the neighbour's AS)
PROCEDURES: dict[str, tuple[Procedure, bool]] = {
    "customer": (Procedure.UPSTREAM, True),
    "peer": (Procedure.UPSTREAM, True),
    "route-server": (Procedure.UPSTREAM, False),
    "rs-client": (Procedure.UPSTREAM, True),
    "provider": (Procedure.DOWNSTREAM, True),
    "collector": (Procedure.DOWNSTREAM, False),
}


# Verdicts kept per AS path: at a collector most paths come again for many prefixes (87% of
# the announcements in the shared RIS files repeat an earlier path).
CACHE_MAX = 200_000


class AspaCheck:
    """Verifies one route's path with the procedure its neighbour's relationship calls for."""

    def __init__(self, policy: Policy, aspas: AspaSet) -> None:
        # (procedure, IP version) -> AS path -> verdict; emptied when the ASPAs change
        self._cache: dict[tuple[Procedure, int], dict[tuple[PathElement, ...], Verdict]] = {}
        self.aspas = aspas
        self.scope = policy.aspa_scope
        self.default = PROCEDURES[policy.aspa_relationship]
        self.by_peer = {peer: PROCEDURES[r] for peer, r in policy.aspa_relationships.items()}

    @property
    def aspas(self) -> AspaSet:
        return self._aspas

    @aspas.setter
    def aspas(self, aspas: AspaSet) -> None:
        self._aspas = aspas
        _CUSTOMERS.set(len(aspas))
        self._cache = {(p, v): {} for p in Procedure for v in (4, 6)}

    def check(
        self,
        prefix: Prefix,
        as_path: tuple[PathElement, ...],
        peer_ip: str,
        peer_asn: int,
        about: str | Prefix,
    ) -> Finding | None:
        procedure, neighbour_check = self.by_peer.get(peer_ip, self.default)
        verdict: Verdict | None
        if neighbour_check and as_path and as_path[0] != peer_asn:  # fails step 2: rare
            verdict = verify(as_path, self._aspas, procedure, prefix.version, peer_asn)
        else:
            cache = self._cache[procedure, prefix.version]
            verdict = cache.get(as_path)
            if verdict is None:
                if len(cache) >= CACHE_MAX:
                    cache.clear()
                verdict = cache[as_path] = verify(as_path, self._aspas, procedure, prefix.version)
        if verdict.outcome is not Outcome.INVALID:
            return None
        return Finding(
            KIND,
            prefix,
            verdict.offender,
            about if isinstance(about, str) else str(about),
            f"{prefix} is ASPA invalid ({procedure.value} verification): {verdict.reason}.",
        )


def merged(aspa: Finding | None, leak: Finding | None) -> list[Finding]:
    """One event when ASPA and the CAIDA relationships both call the path a leak: the
    aspa-invalid finding, citing both (the signed objects are the stronger evidence; the
    inferred relationships name the leaker when ASPA cannot single one out)."""
    if aspa is None or leak is None:
        return [f for f in (aspa, leak) if f is not None]
    caida = leak.rationale.split(": ", 1)[-1].removesuffix(".")
    return [
        replace(
            aspa,
            offender=aspa.offender if aspa.offender is not None else leak.offender,
            rationale=f"{aspa.rationale} The CAIDA AS relationships agree: {caida}.",
        )
    ]


def cleared(old: Finding, found: list[Finding], as_path: tuple[PathElement, ...]) -> Finding:
    """`old` (one of PATH_KINDS) restated for a route that new ASPAs no longer flag so."""
    now = next((f for f in found if f.kind != old.kind), None)
    if now is not None:
        why = f"it is now reported as {now.kind}: {now.rationale}"
    elif old.kind == KIND:
        why = "it is no longer ASPA invalid after an ASPA reload"
    else:
        why = "the ASPA reload changed how it is reported"
    return replace(old, rationale=f"{old.prefix} via AS path {path_text(as_path)}: {why}")
