"""The enterprise's checks: enrolment by credential activation, and a site's quote.

Keylime (PyPI `keylime`) is the reference open-source verifier. Its verifier *service*
cannot gate our bridge: it is a web service with its own registrar, database and agent
protocol, and its policies cover IMA and UEFI event logs only. Its TPM functions are a
library, and we use them for the cryptography: `tpm_util.checkquote` (AK signature over
the TPMS_ATTEST, nonce in extraData, PCR digest against the quoted values) and
`tpm_util.makecredential` (TPM 2.0 Part 1, section 24: a secret sealed to an EK for one
key name). What Keylime leaves to its callers is here: the AK's attributes and name, the
quoted PCR selection (checkquote does not compare it, and a quote over PCR 16, which any
local user may reset and extend, could otherwise stand in for PCR 15), and our event log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import struct
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from attest import eventlog
from attest.policy import Policy, violations
from attest.tpm import Identity, Quote

# Keylime reads /etc/keylime/logging.conf when first imported and warns if it is missing;
# we use none of its configuration.
logging.getLogger("keylime.config").setLevel(logging.ERROR)

# TPMA_OBJECT bits (TPM 2.0 Part 2, section 8.3): an AK that is a restricted signing key
# made inside this TPM and bound to it is what makes its quotes this TPM's word.
FIXED_TPM = 0x2
FIXED_PARENT = 0x10
SENSITIVE_DATA_ORIGIN = 0x20
RESTRICTED = 0x10000
DECRYPT = 0x20000
SIGN = 0x40000
AK_ATTRIBUTES = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN
TPM_ALG_SHA256 = 0x000B
ENROL_PROOF_LABEL = b"overcast attest enrolment"
NONCE_BYTES = 20  # extraData; Keylime's nonces are 20 bytes too

Check = Literal[
    "unenrolled", "unreachable", "signature", "nonce", "pcr_digest", "selection", "event_log",
    "policy",
]  # fmt: skip


class Refused(Exception):
    """The site is not admitted: `check` names what failed, the message says why."""

    def __init__(self, check: Check, reason: str) -> None:
        super().__init__(reason)
        self.check = check
        self.reason = reason


def _keylime() -> tuple[ModuleType, ModuleType]:
    from keylime.tpm import tpm2_objects, tpm_util

    return tpm_util, tpm2_objects


def ak_name(ak_public: bytes) -> bytes:
    """nameAlg || H(TPMT_PUBLIC): the name MakeCredential binds the secret to."""
    return bytes.fromhex(_keylime()[1].get_tpm2b_public_name(ak_public))


def check_identity(identity: Identity) -> None:
    """An EK and an AK that enrolment can accept, else Refused naming the problem."""
    objects = _keylime()[1]
    try:
        objects.pubkey_parms_from_tpm2b_public(identity.ek_public)
        objects.pubkey_from_tpm2b_public(identity.ak_public)
        attributes = objects.get_tpm2b_public_object_attributes(identity.ak_public)
    except (ValueError, struct.error, KeyError) as exc:
        raise Refused("unenrolled", f"the EK or AK is not a TPM2B_PUBLIC key: {exc}") from None
    missing = AK_ATTRIBUTES & ~attributes
    if missing or attributes & DECRYPT:
        raise Refused(
            "unenrolled",
            f"the attestation key's attributes {attributes:#x} are not those of an AK "
            f"(restricted signing key made in and fixed to the TPM, {AK_ATTRIBUTES:#x}); "
            "create it with tpm2_createak",
        )


def make_credential(identity: Identity, secret: bytes) -> bytes:
    """`secret` (at most 32 bytes) sealed for this EK and AK name: only that TPM, holding
    that AK, opens it (tpm2-tools' credential blob format)."""
    with warnings.catch_warnings():
        # Keylime's credential wrapping uses AES-CFB (TPM 2.0 Part 1, section 24.4 says
        # CFB), which cryptography now files under "decrepit" with a warning.
        warnings.simplefilter("ignore")
        blob: bytes = _keylime()[0].makecredential(
            identity.ek_public, secret, ak_name(identity.ak_public)
        )
    return blob


def enrolment_proof(secret: bytes) -> bytes:
    """What the site answers a challenge with: not the secret itself, so a key-delivery
    blob replayed at the challenge step gets nothing back that opens the key."""
    return hmac.new(secret, ENROL_PROOF_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Verified:
    pcr_value: str
    events: int


def not_enrolled(site: str) -> Refused:
    return Refused(
        "unenrolled",
        f"site {site} is not enrolled; run 'overcast attest enrol CONFIG --agent {site}=URL'",
    )


def check_quote(
    site: str,
    identity: Identity | None,
    nonce: bytes,
    quote: Quote,
    events: Any,
    policy: Policy,
) -> Verified:
    """Accept the quote and its event log (as the site sent it: a JSON list, checked by
    `eventlog.parse`), or raise Refused with the reason."""
    if identity is None:
        raise not_enrolled(site)
    tpm_util, objects = _keylime()
    ak_pem = objects.pubkey_from_tpm2b_public(identity.ak_public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        pcrs: dict[int, str] = tpm_util.checkquote(
            ak_pem, nonce, quote.signature, quote.message, quote.pcrs, "sha256"
        )
    except InvalidSignature:
        raise Refused(
            "signature",
            f"the quote is not signed by the attestation key enrolled for {site}: it comes "
            "from another TPM (not enrolled) or was altered",
        ) from None
    except Exception as exc:  # Keylime raises bare Exception/ValueError with a message
        text = str(exc)
        if "nonce" in text:
            raise Refused(
                "nonce",
                f"the quote answers another nonce than the one just sent to {site}: a "
                "replayed old quote",
            ) from None
        if "digest" in text:
            raise Refused(
                "pcr_digest",
                "the PCR values sent with the quote are not the ones the TPM signed",
            ) from None
        raise Refused("signature", f"the quote cannot be checked: {text}") from None
    quoted = quoted_pcrs(quote.message)
    if quoted != [policy.pcr] or set(pcrs) != {policy.pcr}:
        raise Refused(
            "selection",
            f"the quote covers PCRs {quoted} of SHA-256, the policy wants [{policy.pcr}]",
        )
    try:
        parsed = eventlog.parse(events)
    except eventlog.EventLogError as exc:
        raise Refused("event_log", f"event log refused: {exc}") from None
    replayed = eventlog.replay(parsed, [policy.pcr])[policy.pcr].hex()
    if replayed != pcrs[policy.pcr]:
        raise Refused(
            "event_log",
            f"the event log ({len(parsed)} events) replays to PCR {policy.pcr} = "
            f"{replayed[:16]}..., the TPM quoted {pcrs[policy.pcr][:16]}...: the log was "
            "altered or is incomplete",
        )
    problems = violations(policy, parsed)
    if problems:
        raise Refused("policy", "; ".join(problems))
    return Verified(pcr_value=replayed, events=len(parsed))


def quoted_pcrs(message: bytes) -> list[int]:
    """The SHA-256 PCRs a TPMS_ATTEST quote covers (TPM 2.0 Part 2, sections 10.12.8 and
    10.12.1: magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion, then the
    TPMS_QUOTE_INFO's TPML_PCR_SELECTION)."""
    try:
        offset = 6
        for _ in range(2):  # qualifiedSigner, extraData: TPM2B
            (size,) = struct.unpack_from(">H", message, offset)
            offset += 2 + size
        offset += 17 + 8  # TPMS_CLOCK_INFO, firmwareVersion
        selections, _ = _keylime()[1].unmarshal_tpml_pcr_selection(message[offset:])
    except struct.error:
        return []
    bitmap = selections.get(TPM_ALG_SHA256, b"")
    return [i * 8 + bit for i, byte in enumerate(bitmap) for bit in range(8) if byte >> bit & 1]
