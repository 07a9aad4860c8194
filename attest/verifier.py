"""The enterprise's verifier: enrols sites, attests them on an interval, admits and cuts off.

A site's life here:

  unenrolled --enrol--> pending --passing quote + key delivered--> admitted
  admitted --failed quote--> cut_off (key revoked at every peer, alert) --passing quote--> admitted
  pending/cut_off --failed quote--> refused (stays out; reason shown)

Admission is the bridge's business: the verifier hands the set of admitted sites to a gate
(bridge/admission.py), which gives only those sites peers and tunnels. On every admission
the enterprise generates the site's WireGuard key pair, keeps the public key, seals the
private key to the site's TPM (MakeCredential for its EK and AK) and forgets it, so the
private key exists in clear only inside that site.

State lives in the verifier's directory: enrolled/<site>.ek|.ak (the TPM2B_PUBLIC areas),
status.json (each site's state and reason) and alerts.jsonl (one line per cut-off).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from attest import metrics
from attest.policy import Policy
from attest.tpm import Identity, Quote
from attest.verify import (
    NONCE_BYTES,
    Refused,
    check_identity,
    check_quote,
    enrolment_proof,
    make_credential,
    not_enrolled,
)
from bridge.keys import KeyStore, generate_private_key, public_key_of

log = logging.getLogger("overcast.attest.verifier")
STATUS_FILE = "status.json"
ALERTS_FILE = "alerts.jsonl"
ENROLLED_DIR = "enrolled"
AGENT_TIMEOUT_S = 10.0
MAX_PARALLEL = 32  # sites checked at once

State = Literal["unenrolled", "pending", "admitted", "cut_off", "refused"]
Gate = Callable[[frozenset[str]], None]


class VerifierError(Exception):
    """An operation the operator asked for failed; the message names the site and fix."""


@dataclass(frozen=True)
class SiteStatus:
    site: str
    state: State
    reason: str
    check: str = ""  # which check failed (attest.verify.Check), "" when passing
    since: float = 0.0  # when it entered this state
    last_check: float = 0.0
    pcr_value: str = ""


# -- talking to an agent -------------------------------------------------------------------


def call(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to a site's agent; failures are Refused('unreachable') with the cause."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url.rstrip("/") + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=AGENT_TIMEOUT_S) as answer:
            out = json.loads(answer.read(1 << 20))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read(4096)).get("error", "")
        except ValueError:
            detail = ""
        raise Refused(
            "unreachable", f"the agent at {url} refused {path}: {detail or exc}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Refused("unreachable", f"no answer from the agent at {url}: {reason}") from None
    if not isinstance(out, dict):
        raise Refused("unreachable", f"the agent at {url} answered {path} with no JSON object")
    return out


def _bytes(answer: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(answer[key], validate=True)
    except (KeyError, TypeError, ValueError):
        raise Refused("unreachable", f"the agent's answer has no base64 {key!r}") from None


# -- enrolment -----------------------------------------------------------------------------


class Enrolments:
    """The EK and AK registered for each site (files under the verifier's directory)."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / ENROLLED_DIR

    def get(self, site: str) -> Identity | None:
        try:
            return Identity(
                (self.directory / f"{site}.ek").read_bytes(),
                (self.directory / f"{site}.ak").read_bytes(),
            )
        except FileNotFoundError:
            return None

    def put(self, site: str, identity: Identity) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for suffix, data in ((".ek", identity.ek_public), (".ak", identity.ak_public)):
            tmp = self.directory / f".{site}{suffix}.new"
            tmp.write_bytes(data)
            tmp.replace(self.directory / f"{site}{suffix}")

    def sites(self) -> set[str]:
        return {p.stem for p in self.directory.glob("*.ak")} if self.directory.is_dir() else set()


def enrol(site: str, url: str, state_dir: Path) -> Identity:
    """Register the TPM behind `url` as `site`'s: its AK must be a proper AK, and its TPM
    must open a credential made for that EK and AK name (so the AK lives in the TPM that
    owns the EK). Raises Refused with the reason."""
    answer = call(url, "/identity")
    identity = Identity(_bytes(answer, "ek_public"), _bytes(answer, "ak_public"))
    if answer.get("site") != site:
        raise Refused(
            "unenrolled", f"the agent at {url} says it is site {answer.get('site')!r}, not {site!r}"
        )
    check_identity(identity)
    challenge = os.urandom(32)
    proof = _bytes(
        call(url, "/enrol", {"credential": _b64(make_credential(identity, challenge))}), "proof"
    )
    if not hmac.compare_digest(proof, enrolment_proof(challenge)):
        raise Refused(
            "unenrolled",
            f"the TPM at {url} could not open a credential for its own EK and AK: the AK "
            "is not resident in the TPM that owns the EK",
        )
    Enrolments(state_dir).put(site, identity)
    return identity


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- attestation ---------------------------------------------------------------------------


def attest(site: str, url: str, identity: Identity | None, policy: Policy) -> str:
    """One challenge: a fresh nonce, the site's quote and log, checked. Returns the PCR
    value; raises Refused."""
    if identity is None:
        raise not_enrolled(site)  # no quote asked for: nothing could be checked
    nonce = os.urandom(NONCE_BYTES)
    answer = call(url, "/quote", {"nonce": nonce.hex()})
    quote = Quote(_bytes(answer, "message"), _bytes(answer, "signature"), _bytes(answer, "pcrs"))
    return check_quote(site, identity, nonce, quote, answer.get("events"), policy).pcr_value


def deliver_key(site: str, url: str, identity: Identity, keys: KeyStore) -> str:
    """A new WireGuard key pair for `site`: the public key kept in the enterprise store,
    the private key sealed to the site's TPM and sent, never stored here."""
    private = generate_private_key()
    public = public_key_of(private)
    credential = make_credential(identity, base64.b64decode(private))
    del private
    answer = call(url, "/key", {"credential": _b64(credential), "public_key": public})
    if answer.get("public_key") != public:
        raise Refused("unreachable", f"site {site} did not confirm its new key")
    keys.install_public(site, public)
    return public


class Verifier:
    """Attests `agents` (site -> agent URL) against per-site policies and keeps `gate`
    told which sites are admitted."""

    def __init__(
        self,
        agents: Mapping[str, str],
        policies: Mapping[str, Policy],
        state_dir: Path,
        keys: KeyStore,
        gate: Gate | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agents = dict(agents)
        self.policies = policies
        self.state_dir = state_dir
        self.keys = keys
        self.gate = gate
        self.clock = clock
        self.enrolments = Enrolments(state_dir)
        self.status: dict[str, SiteStatus] = load_status(state_dir)
        self._gated: frozenset[str] | None = None  # what the gate last applied
        self._alerts_lock = threading.Lock()
        for site in self.agents:
            if site not in self.status:
                self.status[site] = SiteStatus(site, "pending", "not attested yet")

    def admitted(self) -> frozenset[str]:
        return frozenset(s for s, st in self.status.items() if st.state == "admitted")

    def check(self, site: str) -> SiteStatus:
        """Attest `site` once and move it through its states (module docstring)."""
        now = self.clock()
        before = self.status[site]
        identity = self.enrolments.get(site)
        started = time.monotonic()
        try:
            if identity is None:
                raise not_enrolled(site)
            pcr = attest(site, self.agents[site], identity, self.policies[site])
            if before.state != "admitted":
                deliver_key(site, self.agents[site], identity, self.keys)
            after = SiteStatus(site, "admitted", "quote verified", "", now, now, pcr)
            if before.state == "admitted":
                after = replace(after, since=before.since)
        except Refused as exc:
            metrics.FAILURES.labels(site=site, check=exc.check).inc()
            state: State = "unenrolled" if identity is None else "refused"
            if before.state in ("admitted", "cut_off"):
                state = "cut_off"
            after = SiteStatus(site, state, exc.reason, exc.check, now, now)
            if state == before.state:
                after = replace(after, since=before.since)
            if before.state == "admitted":
                self._cut_off(site, exc, now)
        metrics.QUOTE_SECONDS.observe(time.monotonic() - started)
        metrics.set_state(site, after.state)
        metrics.LAST_CHECK.labels(site=site).set(now)
        self.status[site] = after
        return after

    def _cut_off(self, site: str, exc: Refused, checked_at: float) -> None:
        if (self.keys.directory / f"{site}.pub").exists():
            self.keys.revoke(site)
        alert = {
            "time": self.clock(),
            "checked_at": checked_at,  # when the failing check began (its nonce was sent)
            "site": site,
            "event": "cut_off",
            "check": exc.check,
            "reason": exc.reason,
        }
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._alerts_lock, (self.state_dir / ALERTS_FILE).open("a") as f:
            f.write(json.dumps(alert) + "\n")
        metrics.ALERTS.labels(site=site).inc()
        log.error("ALERT: site %s cut off (%s): %s", site, exc.check, exc.reason)

    def run_once(self) -> dict[str, SiteStatus]:
        """Attest every site; tell the gate when the admitted set changed; save status."""
        # Side by side: every site has its own TPM, so a round takes as long as the slowest
        # site's check, not their sum, and each site is checked once per interval.
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(self.agents) or 1)) as pool:
            list(pool.map(self.check, self.agents))
        after = self.admitted()
        if self.gate is not None and after != self._gated:
            try:
                self.gate(after)
                self._gated = after
            except Exception as exc:  # the bridge's error says what; retried next round
                log.error("the bridge could not apply admitted sites %s: %s", sorted(after), exc)
        save_status(self.state_dir, self.status)
        return dict(self.status)


def load_status(state_dir: Path) -> dict[str, SiteStatus]:
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text())
        return {s: SiteStatus(**v) for s, v in data.items()}
    except (OSError, ValueError, TypeError):
        return {}


def save_status(state_dir: Path, status: Mapping[str, SiteStatus]) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = state_dir / f".{STATUS_FILE}.new"
    tmp.write_text(json.dumps({s: asdict(v) for s, v in status.items()}, indent=1))
    tmp.replace(state_dir / STATUS_FILE)


def policies_for(
    sites: Collection[str],
    pcr: int,
    accept: Mapping[str, Collection[str]],
    config_digests: Mapping[str, str],
) -> dict[str, Policy]:
    return {
        s: Policy(pcr, {n: frozenset(d) for n, d in accept.items()}, config_digests[s])
        for s in sites
    }
