"""The gateway as OpenID provider for SaaS apps that speak OpenID Connect.

authlib does the protocol: the authorization endpoint's checks (client, redirect URI,
response type, scope, PKCE challenge, prompt), the token endpoint (client
authentication, code redemption once, PKCE verifier, RFC 7636) and the ID token (OIDC
Core 3.1.3.6, RS256 with joserfc). The gateway adds what is its own: the clients from
its config, redirect URIs compared exactly (RFC 9700 section 2.1), PKCE S256 required of
every client, codes kept in memory for 60 s, and the claims each app is given.

Who gets a code is not decided here: `gateway.sso` asks the app's policy first.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, OAuth2Payload
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.config import OidcClient
from gateway.idp_key import IdpKey

AUTHORIZE = "/.overcast/oidc/authorize"
TOKEN = "/.overcast/oidc/token"
USERINFO = "/.overcast/oidc/userinfo"
JWKS = "/.overcast/oidc/jwks.json"
DISCOVERY = "/.well-known/openid-configuration"
CODE_TTL = 60  # RFC 6749 section 4.1.2: a maximum lifetime of 10 minutes is RECOMMENDED
SCOPES = ("openid", "email", "profile", "groups")
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass(frozen=True)
class Grantee:
    """The user a code and its tokens are for, with the claims this app may see."""

    sub: str
    claims: Mapping[str, Any]
    auth_time: int
    # The session id this RP's ID tokens carry (OIDC Back-Channel Logout 1.0 section 2.1),
    # different per RP, so no RP learns the gateway's own session id.
    sid: str = ""


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    app: str
    settings: OidcClient
    secret: str | None

    def get_client_id(self) -> str:
        return self.settings.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # OIDC Core 3.1.2.1: redirect_uri is REQUIRED

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.settings.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and hmac.compare_digest(
            client_secret.encode(), self.secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(frozen=True)
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    challenge: str
    challenge_method: str
    grantee: Grantee
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.grantee.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Payload(OAuth2Payload):  # type: ignore[misc]
    """Query or form parameters; repeats kept, so authlib can refuse them (RFC 6749 3.1)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._list: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._list[key].append(value)
        self._data = {key: values[0] for key, values in self._list.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._list


class Headers(dict[str, str]):
    """Header lookup in any case, as authlib asks for `Authorization`."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class Request(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], pairs: Sequence[tuple[str, str]]
    ) -> None:
        super().__init__(method, uri, headers=Headers({k.lower(): v for k, v in headers.items()}))
        self.payload = Payload(pairs)

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data) if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        return dict(self.payload.data) if self.method == "POST" else {}


@dataclass(frozen=True)
class Answer:
    """What an endpoint says: authlib's status, body and headers."""

    status: int
    body: str | dict[str, Any]
    headers: tuple[tuple[str, str], ...]


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

    def save_authorization_code(self, code: str, request: Request) -> None:
        provider: OpenIdProvider = self.server.provider
        data = request.payload.data
        provider.codes[code] = Code(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=data["redirect_uri"],
            scope=request.scope,
            nonce=data.get("nonce"),
            challenge=data["code_challenge"],
            challenge_method=data.get("code_challenge_method", "plain"),
            grantee=request.user,
            expires_at=provider.clock() + CODE_TTL,
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found: Code | None = self.server.provider.codes.get(code)
        if found is None or found.client_id != client.get_client_id():
            return None
        return found if found.expires_at > self.server.provider.clock() else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> Grantee:
        return authorization_code.grantee


class Pkce(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 from every client, confidential ones too (RFC 9700 section 2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    def validate_code_challenge(self, grant: CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: send code_challenge_method=S256")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: Code) -> str:
        return authorization_code.challenge

    def get_authorization_code_challenge_method(self, authorization_code: Code) -> str:
        return authorization_code.challenge_method


class IdToken(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: OpenIdProvider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider.jwk

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.provider.jwk.kid or ""}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(self.provider.clock())
        return {
            "iss": self.provider.issuer,
            "aud": client.get_client_id(),
            "iat": now,
            "exp": now + self.provider.lifetime,
        }

    def exists_nonce(self, nonce: str, request: Request) -> bool:
        client_id = request.payload.client_id
        return any(
            c.nonce == nonce and c.client_id == client_id for c in self.provider.codes.values()
        )

    def generate_user_info(self, user: Grantee, scope: str) -> UserInfo:
        extra = {"sid": user.sid} if user.sid else {}
        return UserInfo(sub=user.sub, **user.claims, **extra)


class Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: OpenIdProvider) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.provider = provider
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **_: secrets.token_urlsafe(32),
                expires_generator=lambda client, grant_type: provider.lifetime,
            ),
        )
        self.register_grant(CodeGrant, [Pkce(), IdToken(provider)])

    def query_client(self, client_id: str) -> Client | None:
        return self.provider.clients.get(client_id)

    def save_token(self, token: Mapping[str, Any], request: Request) -> None:
        expires = self.provider.clock() + self.provider.lifetime
        self.provider.tokens[str(token["access_token"])] = (request.user, expires)

    def create_oauth2_request(self, request: Request) -> Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Sequence[tuple[str, str]]) -> Answer:
        return Answer(status, body, tuple(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class OpenIdProvider:
    issuer: str
    key: IdpKey
    # client_id -> the app's client
    clients: dict[str, Client]
    lifetime: int
    clock: Callable[[], float] = time.time
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, tuple[Grantee, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.jwk = RSAKey.import_key(self.key.key)
        self.jwk.ensure_kid()  # RFC 7638 thumbprint
        self.server = Server(self)

    def discovery(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 section 3."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + AUTHORIZE,
            "token_endpoint": self.issuer + TOKEN,
            "userinfo_endpoint": self.issuer + USERINFO,
            "jwks_uri": self.issuer + JWKS,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": sorted({"sub", *self._claim_names()}),
        }

    def _claim_names(self) -> set[str]:
        return {name for c in self.clients.values() for name in c.settings.claims}

    def jwks(self) -> dict[str, Any]:
        public = self.jwk.as_dict(private=False) | {"use": "sig", "alg": "RS256"}
        return {"keys": [public]}

    def client_of(self, pairs: Sequence[tuple[str, str]]) -> Client | None:
        client_id = dict(pairs).get("client_id", "")
        return self.clients.get(client_id)

    def check(
        self, uri: str, pairs: Sequence[tuple[str, str]], user: Grantee | None
    ) -> CodeGrant | Answer:
        """Validate an authorization request, before the policy and before any sign-in; an
        Answer refuses it (to the RP's redirect URI only when it is registered exactly)."""
        self._expire()
        request = Request("GET", uri, {}, pairs)
        try:
            grant: CodeGrant = self.server.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return self.server.handle_error_response(request, error)  # type: ignore[no-any-return]
        return grant

    def authorize(self, grant: CodeGrant, grantee: Grantee) -> Answer:
        grant.request.user = grantee
        answer: Answer = self.server.create_authorization_response(
            grant.request, grant_user=grantee, grant=grant
        )
        return answer

    def token(
        self, uri: str, headers: Mapping[str, str], pairs: Sequence[tuple[str, str]]
    ) -> Answer:
        answer: Answer = self.server.create_token_response(Request("POST", uri, headers, pairs))
        return answer

    def userinfo(self, authorization: str) -> tuple[int, dict[str, Any]]:
        """OIDC Core 5.3 with a bearer token (RFC 6750 section 2.1)."""
        scheme, _, token = authorization.partition(" ")
        found = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if found is None or found[1] <= self.clock():
            return 401, {"error": "invalid_token"}
        grantee = found[0]
        return 200, {"sub": grantee.sub, **grantee.claims}

    def logout_token(self, client: Client, sub: str, sid: str) -> str:
        """A logout token (OIDC Back-Channel Logout 1.0 section 2.4), RS256."""
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "aud": client.get_client_id(),
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_urlsafe(16),
            "sub": sub,
            "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        header = {"alg": "RS256", "kid": self.jwk.kid or "", "typ": "logout+jwt"}
        return jwt.encode(header, claims, self.jwk, ["RS256"])

    def _expire(self) -> None:
        now = self.clock()
        for code in [c for c, v in self.codes.items() if v.expires_at <= now]:
            del self.codes[code]
        for token in [t for t, v in self.tokens.items() if v[1] <= now]:
            del self.tokens[token]


def mapped_claims(claims: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The app's view of the user: each of its names from the enterprise IdP's claim
    (absent claims are left out, never sent empty)."""
    return {name: claims[source] for name, source in mapping.items() if source in claims}
