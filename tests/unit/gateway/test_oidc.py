"""The relying party's checks, against tokens minted here and served by a mock transport."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.oidc import (
    BACKCHANNEL_EVENT,
    LoginRequest,
    OidcError,
    ProviderMetadata,
    RelyingParty,
    SingleFlight,
)

ISSUER = "https://idp.example"
CLIENT = "overcast-gateway"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
DISCOVERY = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/auth",
    "token_endpoint": f"{ISSUER}/token",
    "jwks_uri": f"{ISSUER}/jwks",
    "end_session_endpoint": f"{ISSUER}/session/end",
    "id_token_signing_alg_values_supported": ["RS256", "none", "HS256"],
}


def jwks() -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    return {"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}


def mint(claims: dict[str, Any], key: Any = KEY, kid: str = "k1", alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def id_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "alice",
        "iat": now,
        "exp": now + 60,
        "nonce": "n1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def rp() -> Iterator[RelyingParty]:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=DISCOVERY)
        if request.url.path == "/jwks":
            return httpx.Response(200, json=jwks())
        return httpx.Response(404)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    party = RelyingParty(ISSUER, CLIENT, "secret", client)
    asyncio.run(party.discover())
    yield party


def test_pkce_challenge_is_rfc7636_s256() -> None:
    login = LoginRequest.new("/", 0)
    digest = hashlib.sha256(login.verifier.encode()).digest()
    assert login.challenge() == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert 43 <= len(login.verifier) <= 128
    # RFC 7636 appendix B.
    vector = LoginRequest("s", "n", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "/", 1)
    assert vector.challenge() == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_login_state_is_single_browser_and_expires() -> None:
    login = LoginRequest.new("/", 100)
    assert login.matches(login.state, 101)
    assert not login.matches("other", 101)
    assert not login.matches(login.state, login.expires_at)


def test_authorization_url_always_has_state_nonce_pkce(rp: RelyingParty) -> None:
    login = LoginRequest.new("/", 0)
    url = httpx.URL(rp.authorization_url(login, "https://app/cb", ("openid",)))
    params = dict(url.params)
    assert params["state"] == login.state and params["nonce"] == login.nonce
    assert params["code_challenge_method"] == "S256"


def test_discovery_must_name_the_configured_issuer() -> None:
    with pytest.raises(OidcError, match="expected"):
        ProviderMetadata.parse(DISCOVERY | {"issuer": "https://evil.example"}, ISSUER)
    with pytest.raises(OidcError, match="lacks token_endpoint"):
        ProviderMetadata.parse(
            {k: v for k, v in DISCOVERY.items() if k != "token_endpoint"}, ISSUER
        )
    # `none` and HS256 are offered but never accepted.
    assert ProviderMetadata.parse(DISCOVERY, ISSUER).algorithms == ("RS256",)


def test_valid_id_token(rp: RelyingParty) -> None:
    claims = asyncio.run(rp.validate_id_token(mint(id_claims()), "n1"))
    assert claims["sub"] == "alice"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: mint(id_claims(aud="another-client")), "(?i)audience"),
        (lambda: mint(id_claims(iss="https://evil.example")), "issuer"),
        (lambda: mint(id_claims(exp=int(time.time()) - 120)), "expired"),
        (lambda: mint(id_claims(nonce="replayed")), "nonce"),
        (lambda: mint(id_claims(nonce=None)), "nonce"),
        (lambda: mint(id_claims(sub=None)), "sub"),
        (lambda: mint(id_claims(), key=OTHER_KEY), "Signature"),
        (lambda: mint(id_claims(), kid="unknown"), "no provider key"),
        (lambda: mint(id_claims(), key="", alg="none"), "not accepted"),
        (lambda: mint(id_claims(), key="s" * 32, alg="HS256"), "not accepted"),
        (lambda: mint(id_claims(aud=[CLIENT, "other"])), "azp"),
        (lambda: "not-a-jwt", "not a JWT"),
    ],
)
def test_bad_id_tokens(rp: RelyingParty, token: Any, why: str) -> None:
    with pytest.raises(OidcError, match=why):
        asyncio.run(rp.validate_id_token(token(), "n1"))


def logout_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": int(time.time()),
        "jti": f"j{time.monotonic_ns()}",
        "sid": "idp-session-1",
        "events": {BACKCHANNEL_EVENT: {}},
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_valid_logout_token_and_replay(rp: RelyingParty) -> None:
    token = mint(logout_claims())
    assert asyncio.run(rp.validate_logout_token(token))["sid"] == "idp-session-1"
    with pytest.raises(OidcError, match="replayed"):
        asyncio.run(rp.validate_logout_token(token))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"events": None}, "event"),
        ({"events": {"other": {}}}, "event"),
        ({"events": {BACKCHANNEL_EVENT: "yes"}}, "event"),
        ({"nonce": "n"}, "nonce"),
        ({"sid": None}, "neither sid nor sub"),
        ({"jti": None}, "jti"),
        ({"aud": "another-client"}, "(?i)audience"),
    ],
)
def test_bad_logout_tokens(rp: RelyingParty, changes: dict[str, Any], why: str) -> None:
    with pytest.raises(OidcError, match=why):
        asyncio.run(rp.validate_logout_token(mint(logout_claims(**changes))))


def test_single_flight_runs_once_and_shares_the_result() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    async def burst() -> list[int]:
        return list(await asyncio.gather(*(flight.run("s1", work) for _ in range(10))))

    assert asyncio.run(burst()) == [1] * 10
    assert asyncio.run(burst()) == [2] * 10  # a later burst refreshes again


def test_single_flight_shares_failures() -> None:
    flight: SingleFlight[int] = SingleFlight()

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise OidcError("invalid_grant")

    async def burst() -> list[Any]:
        return list(
            await asyncio.gather(
                *(flight.run("s1", fail) for _ in range(5)), return_exceptions=True
            )
        )

    assert all(isinstance(r, OidcError) for r in asyncio.run(burst()))
