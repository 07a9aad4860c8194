"""Prometheus metrics of the verifier (on overcast.metrics.REGISTRY)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from overcast.metrics import REGISTRY

STATES = ("unenrolled", "pending", "admitted", "cut_off", "refused")

STATE = Gauge(
    "overcast_attest_site_state",
    "1 for the attestation state a site is in (unenrolled, pending, admitted, cut_off, refused)",
    ["site", "state"],
    registry=REGISTRY,
)
ADMITTED = Gauge(
    "overcast_attest_site_admitted", "1 if the site is admitted to the bridge", ["site"],
    registry=REGISTRY,
)  # fmt: skip
FAILURES = Counter(
    "overcast_attest_failures",
    "Refused attestations by the check that failed (signature, nonce, event_log, policy, ...)",
    ["site", "check"],
    registry=REGISTRY,
)
ALERTS = Counter(
    "overcast_attest_alerts", "Admitted sites cut off after a failed attestation", ["site"],
    registry=REGISTRY,
)  # fmt: skip
LAST_CHECK = Gauge(
    "overcast_attest_last_check_timestamp_seconds", "When the site was last attested", ["site"],
    registry=REGISTRY,
)  # fmt: skip
QUOTE_SECONDS = Histogram(
    "overcast_attest_check_seconds", "One attestation: nonce, quote, checks (and key delivery)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=REGISTRY,
)  # fmt: skip


def set_state(site: str, state: str) -> None:
    for s in STATES:
        STATE.labels(site=site, state=s).set(1 if s == state else 0)
    ADMITTED.labels(site=site).set(1 if state == "admitted" else 0)
