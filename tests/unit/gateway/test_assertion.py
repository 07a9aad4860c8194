"""Identity assertions: ES256, audience-bound, short-lived, verifiable from the JWKS."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.assertion import AssertionKeyError, AssertionSigner, load_key, verify
from gateway.request import Identity

ALICE = Identity(sub="alice", email="alice@corp.example", email_verified=True, groups=("sales",))


@pytest.fixture
def now() -> int:
    # Per test, not per module: verify() checks exp against the real clock, and a long suite
    # run would otherwise outlive a 60 s token minted at import time.
    return int(time.time())


@pytest.fixture
def signer() -> AssertionSigner:
    return AssertionSigner(ec.generate_private_key(ec.SECP256R1()), "https://gw.example")


def test_signed_for_one_app(signer: AssertionSigner, now: int) -> None:
    token = signer.sign(ALICE, "crm", now)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    jwks = json.loads(signer.jwks_json())
    claims = jwt.decode(
        token,
        jwt.PyJWK.from_dict(jwks["keys"][0]),
        algorithms=["ES256"],
        audience="crm",
        options={"verify_exp": False},
    )
    assert claims["sub"] == "alice" and claims["groups"] == ["sales"]
    assert claims["exp"] - claims["iat"] <= 60
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token,
            jwt.PyJWK.from_dict(jwks["keys"][0]),
            algorithms=["ES256"],
            audience="wiki",
            options={"verify_exp": False},
        )


def test_verify_helper_refuses_expired(signer: AssertionSigner, now: int) -> None:
    token = signer.sign(ALICE, "crm", now - 61)
    assert verify(signer.sign(ALICE, "crm", now), signer.jwks(), "crm", "https://gw.example")
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token, signer.jwks(), "crm", "https://gw.example")


def test_cache_per_session_and_app(signer: AssertionSigner, now: int) -> None:
    first = signer.sign(ALICE, "crm", now, cache_key="s1")
    assert signer.sign(ALICE, "crm", now + 29, cache_key="s1") == first
    assert signer.sign(ALICE, "wiki", now, cache_key="s1") != first
    assert signer.sign(ALICE, "crm", now + 30, cache_key="s1") != first


def test_lifetime_capped() -> None:
    with pytest.raises(ValueError, match=r"1\.\.60"):
        AssertionSigner(ec.generate_private_key(ec.SECP256R1()), "https://gw", lifetime=61)


def test_retired_key_stays_published(signer: AssertionSigner) -> None:
    old = ec.generate_private_key(ec.SECP256R1())
    rotated = AssertionSigner(signer.key, signer.issuer, retired=(old.public_key(),))
    assert len({k["kid"] for k in rotated.jwks()["keys"]}) == 2


def test_bad_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("nope")
    with pytest.raises(AssertionKeyError, match="openssl genpkey"):
        load_key(path)
