"""The signed identity the gateway hands each upstream app.

An ES256 JWT (RFC 7519, RFC 7518 section 3.4) in the `X-Overcast-Jwt-Assertion` header:
`aud` is the app, so an assertion replayed to another app is refused there; it lives at
most 60 s. Apps verify it with the keys published at /.well-known/jwks.json (RFC 7517).
Assertions are cached per (session, app) for half their life, so signing costs one ECDSA
operation per user and app every half minute instead of one per request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.request import Identity

HEADER = "x-overcast-jwt-assertion"
MAX_LIFETIME = 60


class AssertionKeyError(ValueError):
    """The assertion key file is unusable; the message names the fix."""


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AssertionKeyError(
            f"{path}: not a readable unencrypted PEM private key ({exc}); make one with: "
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise AssertionKeyError(f"{path}: ES256 needs an EC P-256 (secp256r1) private key")
    return key


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """A stable key id: the SHA-256 of the DER public key, shortened (RFC 7638 in spirit)."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode()


@dataclass
class AssertionSigner:
    """Signs identity assertions; `retired` public keys stay in the JWKS during a rotation."""

    key: ec.EllipticCurvePrivateKey
    issuer: str
    lifetime: int = MAX_LIFETIME
    retired: tuple[ec.EllipticCurvePublicKey, ...] = ()
    _cache: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.lifetime <= MAX_LIFETIME:
            raise ValueError(f"assertion lifetime must be 1..{MAX_LIFETIME} s")
        self.kid = key_id(self.key.public_key())

    def sign(self, identity: Identity, audience: str, now: int, cache_key: str = "") -> str:
        if cache_key:
            hit = self._cache.get((cache_key, audience))
            if hit is not None and hit[0] > now:
                return hit[1]
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": identity.sub,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_urlsafe(12),
            "email": identity.email,
            "email_verified": identity.email_verified,
            "groups": list(identity.groups),
        }
        token = jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})
        if cache_key:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[(cache_key, audience)] = (now + self.lifetime // 2, token)
        return token

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = [self.key.public_key(), *self.retired]
        return {"keys": [public_jwk(k) for k in keys]}

    def jwks_json(self) -> bytes:
        return json.dumps(self.jwks()).encode()


def public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    return jwk | {"kid": key_id(public), "use": "sig", "alg": "ES256"}


def verify(token: str, jwks: Mapping[str, Any], audience: str, issuer: str) -> dict[str, Any]:
    """What an upstream app does with an assertion (used by tests and the example upstream)."""
    kid = jwt.get_unverified_header(token).get("kid")
    for jwk in jwks["keys"]:
        if jwk.get("kid") == kid:
            key = jwt.PyJWK.from_dict(dict(jwk))
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
            return claims
    raise jwt.InvalidKeyError(f"no key {kid!r} in the JWKS")
