"""OpenID Connect relying party: the gateway's side of the login.

- Discovery (OpenID Connect Discovery 1.0): the metadata's `issuer` must equal the
  configured issuer exactly (section 4.3), or nothing is trusted.
- Authorization code flow (OIDC Core 1.0 section 3.1) with PKCE S256 (RFC 7636), `state`
  and `nonce` on every login, not optional.
- ID token validation (OIDC Core 3.1.3.7): signature from the provider's JWKS with an
  asymmetric algorithm only, `iss`, `aud` (and `azp` when there are several), `exp`, `iat`,
  and the login's `nonce`.
- Refresh (OIDC Core section 12) with single flight: concurrent requests of one session
  share one refresh, because providers rotate refresh tokens and a second use revokes them.
- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel logout
  token validation (OpenID Connect Back-Channel Logout 1.0 section 2.6).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import httpx
import jwt

# Never `none` and never a shared-secret MAC: the signing key must be the provider's own.
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEEWAY = 30  # seconds of clock skew accepted between provider and gateway
JWKS_REFETCH_AFTER = 60  # at most one refetch a minute when an unknown key id shows up
LOGIN_TTL = 600

T = TypeVar("T")


class OidcError(Exception):
    """The provider said no, or sent something that does not validate. Safe to show."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None
    algorithms: tuple[str, ...] = ("RS256",)

    @classmethod
    def parse(cls, doc: Mapping[str, Any], issuer: str) -> ProviderMetadata:
        if doc.get("issuer") != issuer:
            raise OidcError(
                f"discovery says issuer {doc.get('issuer')!r}, expected {issuer!r}; "
                "set gateway.issuer to the provider's exact issuer"
            )
        missing = [
            k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if k not in doc
        ]
        if missing:
            raise OidcError(f"discovery document lacks {', '.join(missing)}")
        offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in ALGORITHMS if a in offered)
        if not algorithms:
            raise OidcError(
                f"provider signs ID tokens only with {offered}; need one of {ALGORITHMS}"
            )
        end = doc.get("end_session_endpoint")
        return cls(
            issuer=issuer,
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            end_session_endpoint=str(end) if end else None,
            algorithms=algorithms,
        )


@dataclass(frozen=True)
class LoginRequest:
    """What a login in progress must remember until the callback (sealed in a cookie)."""

    state: str
    nonce: str
    verifier: str
    return_to: str
    expires_at: int

    @classmethod
    def new(cls, return_to: str, now: int) -> LoginRequest:
        return cls(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            # RFC 7636 section 4.1: 43..128 characters of unreserved URL characters.
            verifier=secrets.token_urlsafe(48),
            return_to=return_to,
            expires_at=now + LOGIN_TTL,
        )

    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def matches(self, state: str, now: int) -> bool:
        return now < self.expires_at and hmac.compare_digest(self.state, state)


@dataclass(frozen=True)
class Tokens:
    id_token: str
    claims: Mapping[str, Any]
    access_token: str
    refresh_token: str | None
    expires_at: int


@dataclass
class RelyingParty:
    issuer: str
    client_id: str
    client_secret: str | None
    http: httpx.AsyncClient
    clock: Callable[[], float] = time.time
    metadata: ProviderMetadata | None = None
    _jwks: jwt.PyJWKSet | None = None
    _jwks_at: float = -1e9
    _seen_logout_jti: dict[str, int] = field(default_factory=dict)

    # -- discovery and keys ----------------------------------------------------------

    async def discover(self) -> ProviderMetadata:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        metadata = ProviderMetadata.parse(await self._get_json(url), self.issuer)
        self.metadata = metadata
        await self._refresh_keys()
        return metadata

    def _meta(self) -> ProviderMetadata:
        if self.metadata is None:
            raise OidcError("the identity provider has not been discovered yet; try again")
        return self.metadata

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            doc = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"cannot fetch {url}: {exc}") from None
        if not isinstance(doc, dict):
            raise OidcError(f"{url} did not return a JSON object")
        return doc

    async def _refresh_keys(self) -> None:
        doc = await self._get_json(self._meta().jwks_uri)
        try:
            self._jwks = jwt.PyJWKSet.from_dict(doc)
        except jwt.PyJWTError as exc:
            raise OidcError(f"provider JWKS unusable: {exc}") from None
        self._jwks_at = self.clock()

    async def _key(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"token is not a JWT: {exc}") from None
        if header.get("alg") not in self._meta().algorithms:
            raise OidcError(f"token signed with {header.get('alg')!r}; not accepted")
        kid = header.get("kid")
        for attempt in range(2):
            keys = self._jwks.keys if self._jwks is not None else []
            for key in keys:
                if kid is None or key.key_id == kid:
                    return key
            if attempt == 0 and self.clock() - self._jwks_at >= JWKS_REFETCH_AFTER:
                await self._refresh_keys()  # the provider may have rotated its keys
        raise OidcError(f"no provider key {kid!r} to check the token with")

    async def _decode(self, token: str, required: list[str]) -> dict[str, Any]:
        key = await self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self._meta().algorithms),
                audience=self.client_id,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": required},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"token rejected: {exc}") from None
        return claims

    # -- login -------------------------------------------------------------------------

    def authorization_url(
        self, login: LoginRequest, redirect_uri: str, scopes: tuple[str, ...]
    ) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": login.challenge(),
            "code_challenge_method": "S256",
        }
        # OIDC Core section 11: offline_access is only granted with prompt=consent.
        if "offline_access" in scopes:
            query["prompt"] = "consent"
        return f"{self._meta().authorization_endpoint}?{urlencode(query)}"

    async def finish(self, code: str, login: LoginRequest, redirect_uri: str) -> Tokens:
        doc = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": login.verifier,
            }
        )
        id_token = doc.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("token response has no id_token")
        claims = await self.validate_id_token(id_token, login.nonce)
        return self._tokens(doc, id_token, claims, None)

    async def validate_id_token(self, token: str, nonce: str | None) -> dict[str, Any]:
        claims = await self._decode(token, ["iss", "aud", "exp", "iat", "sub"])
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("ID token has several audiences and azp is not this gateway")
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("ID token nonce does not match this login")
        return claims

    async def refresh(self, refresh_token: str, previous: Mapping[str, Any]) -> Tokens:
        doc = await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        id_token = doc.get("id_token")
        if not isinstance(id_token, str):
            return self._tokens(doc, "", previous, refresh_token)
        claims = await self.validate_id_token(id_token, None)
        # OIDC Core 12.2: the refreshed ID token must name the same user.
        if claims["sub"] != previous.get("sub"):
            raise OidcError("refreshed ID token names another subject")
        return self._tokens(doc, id_token, claims, refresh_token)

    def _tokens(
        self,
        doc: Mapping[str, Any],
        id_token: str,
        claims: Mapping[str, Any],
        old_refresh: str | None,
    ) -> Tokens:
        expires_in = doc.get("expires_in")
        lifetime = (
            int(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 300
        )
        refresh = doc.get("refresh_token")
        return Tokens(
            id_token=id_token,
            claims=claims,
            access_token=str(doc.get("access_token", "")),
            refresh_token=refresh if isinstance(refresh, str) else old_refresh,
            expires_at=int(self.clock()) + lifetime,
        )

    async def _token_request(self, data: dict[str, str]) -> dict[str, Any]:
        endpoint = self._meta().token_endpoint
        try:
            if self.client_secret is None:
                response = await self.http.post(endpoint, data=data | {"client_id": self.client_id})
            else:
                # RFC 6749 section 2.3.1: id and secret are form-encoded before Basic.
                auth = httpx.BasicAuth(
                    quote(self.client_id, safe=""), quote(self.client_secret, safe="")
                )
                response = await self.http.post(endpoint, data=data, auth=auth)
            doc = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"token endpoint failed: {exc}") from None
        if response.status_code != 200 or not isinstance(doc, dict):
            error = doc.get("error") if isinstance(doc, dict) else None
            raise OidcError(f"token endpoint said {response.status_code} {error or ''}".strip())
        return doc

    # -- logout ------------------------------------------------------------------------

    def end_session_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        endpoint = self._meta().end_session_endpoint
        if endpoint is None:
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            query["id_token_hint"] = id_token
        return f"{endpoint}?{urlencode(query)}"

    async def validate_logout_token(self, token: str) -> dict[str, Any]:
        """Back-Channel Logout 1.0 section 2.6; a replayed `jti` is refused too."""
        claims = await self._decode(token, ["iss", "aud", "iat", "jti"])
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise OidcError("logout token lacks the back-channel logout event")
        if "nonce" in claims:
            raise OidcError("logout token must not carry a nonce")
        if not isinstance(claims.get("sid"), str) and not isinstance(claims.get("sub"), str):
            raise OidcError("logout token names neither sid nor sub")
        now = int(self.clock())
        self._seen_logout_jti = {j: t for j, t in self._seen_logout_jti.items() if t > now}
        jti = str(claims["jti"])
        if jti in self._seen_logout_jti:
            raise OidcError("logout token replayed")
        self._seen_logout_jti[jti] = now + 600
        return claims


@dataclass
class SingleFlight(Generic[T]):
    """At most one run per key at a time; callers arriving meanwhile share its result."""

    _running: dict[str, asyncio.Future[T]] = field(default_factory=dict)

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await work()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: only the waiters re-raise it
            raise
        finally:
            del self._running[key]
        future.set_result(result)
        return result
