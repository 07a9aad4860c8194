"""The `gateway:` section of overcast.yaml: the identity provider and the apps it fronts.

gateway:
  issuer: https://idp.corp.example/
  client_id: overcast-gateway
  client_secret_file: /etc/overcast/oidc-secret
  host: gw.corp.example               # the gateway's own name: /ping, /ready, JWKS
  listen: 0.0.0.0:443
  metrics_listen: 127.0.0.1:9464      # a separate listener; never the public one
  tls: {cert: /etc/overcast/gw.pem, key: /etc/overcast/gw.key}
  limits: {request_head_timeout: 10, keep_alive_timeout: 5, max_connections: 4096}
  apps:
    crm:
      host: crm.corp.example          # default: <app>.<gateway host>
      upstream: https://crm.saas.example
      allow: {groups: [sales]}
      strip_headers: [X-Employee-Id, "X-Acme-*"]   # more headers the upstream trusts
  saas:                               # apps it signs users in to as SAML IdP / OpenID provider
    hr:
      saml: {metadata: /etc/overcast/hr-sp.xml, name_id: email, attributes: {mail: email}}
      allow: {groups: [hr]}
    tickets:
      oidc: {client_id: tickets, redirect_uris: [https://tickets.example/cb]}
      launch: https://tickets.example/
      allow: {authenticated: true}
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.policy import Policy
from overcast.model import Model, Prefix

# Paths the gateway answers itself on every app host (RFC 8615 reserves /.well-known; our
# own prefix keeps the rest out of the apps' way).
RESERVED_PREFIX = "/.overcast/"


def _https_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} is not an https:// URL; the {what} must be reached over TLS")
    return value


def _host(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    if not host or any(c in host for c in "/:@[] "):
        raise ValueError(f"{value!r} is not a host name; write it like crm.corp.example")
    return host


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"{value!r} is not ADDRESS:PORT; write it like 127.0.0.1:8443")
    return value


# RFC 9110 section 5.1: field-name = token; a trailing '*' makes it a prefix.
_HEADER_RULE = re.compile(r"[!#$%&'+\-.^_`|~0-9A-Za-z]+\*?")


def _header_rule(value: str) -> str:
    """A header name or `PREFIX*`, folded as gateway.headers.fold folds names."""
    if not _HEADER_RULE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a header name or NAME-PREFIX*; write it like X-Employee-Id "
            "or X-Acme-* (letters, digits and -_.!#$%&'+^`|~, '*' only at the end)"
        )
    return value.lower().replace("_", "-")


class Tls(Model):
    """The public listener's certificate. Without one, `dev_dir` holds a generated dev CA."""

    cert: Path | None = None
    key: Path | None = None
    dev_dir: Path = Path(".overcast/gateway-tls")

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both tls.cert and tls.key, or neither (dev CA mode)")
        return self


class Limits(Model):
    """How long the gateway waits on a client and how many it holds at once (per process),
    so slow or idle clients cannot hold its memory and file descriptors (issue 17).

    The names follow nginx's: ssl_handshake_timeout, client_header_timeout (the whole
    request head, from its first byte or from the connection's start),
    client_body_timeout (between two reads of the body, not the whole body),
    keepalive_timeout (idle between requests) and worker_connections."""

    tls_handshake_timeout: float = Field(10.0, gt=0, le=60)
    request_head_timeout: float = Field(10.0, gt=0, le=300)
    request_body_timeout: float = Field(30.0, gt=0, le=3600)
    keep_alive_timeout: float = Field(5.0, gt=0, le=3600)
    # Past this many open client connections (TLS handshakes included) a new one is
    # closed at once, before any TLS work, and counted.
    max_connections: int = Field(4096, ge=1, le=1_000_000)


class Guarded(Model):
    """Who may use an app, in gateway.policy's language: deny wins, no allow means nobody."""

    allow: Any = None
    deny: Any = None

    @cached_property
    def policy(self) -> Policy:
        rules = {"allow": self.allow, "deny": self.deny}
        return Policy.parse({k: v for k, v in rules.items() if v is not None})

    @model_validator(mode="after")
    def _policy(self) -> Guarded:
        _ = self.policy  # parse at load time, so a bad rule is reported with the config path
        return self


class App(Guarded):
    """One app behind the gateway: where users reach it and where the gateway forwards."""

    host: str = ""
    path_prefix: str = "/"
    upstream: str
    # CA bundle that signs the upstream's certificate; default: the system store.
    upstream_ca: Path | None = None
    # Require a TLS client certificate issued by this CA (mTLS) for this app.
    client_ca: Path | None = None
    # Forward the client's Authorization header (for an app with its own API tokens). Off:
    # a user's bearer token never reaches an upstream that did not ask for it.
    pass_authorization: bool = False
    # More request headers no client may send this upstream, beyond the identity headers of
    # the proxies in gateway.identity_headers: names, or prefixes ending in '*'. Matched in
    # any case and with '_' for '-', as the built-in ones are.
    strip_headers: tuple[str, ...] = ()

    @field_validator("strip_headers")
    @classmethod
    def _strip(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_header_rule(v) for v in value)

    @property
    def strip_names(self) -> frozenset[str]:
        return frozenset(v for v in self.strip_headers if not v.endswith("*"))

    @property
    def strip_prefixes(self) -> tuple[str, ...]:
        return tuple(v[:-1] for v in self.strip_headers if v.endswith("*"))

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return _https_url(value, "upstream")

    @field_validator("host")
    @classmethod
    def _app_host(cls, value: str) -> str:
        return _host(value) if value else value

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or RESERVED_PREFIX.rstrip("/") in value:
            raise ValueError(
                f"{value!r} must start with '/' and not use {RESERVED_PREFIX}; e.g. /api/"
            )
        return value


# Claims of the enterprise IdP's ID token an app may be given (gateway.identity_of reads them).
_CLAIM = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")


def _claim_map(value: dict[str, str], what: str) -> dict[str, str]:
    for name, claim in value.items():
        if not _CLAIM.fullmatch(claim):
            raise ValueError(
                f"{what} {name!r} maps to {claim!r}, which is not a claim name; name a claim of "
                "the enterprise IdP's ID token, e.g. email, name or groups"
            )
    return value


class SamlSp(Model):
    """A SaaS app that signs users in with SAML 2.0: the gateway is its identity provider."""

    # The SP's metadata (entityID, ACS URLs, signing certificate): a file, or an https URL
    # fetched when the gateway starts.
    metadata: str
    metadata_ca: Path | None = None
    # email: the verified email (urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress);
    # persistent: an opaque id stable per user and SP that no two SPs share (SAML Core 8.3.7).
    name_id: Literal["email", "persistent"] = "email"
    # SAML attribute name -> claim of the enterprise IdP, e.g. {mail: email, memberOf: groups}.
    attributes: dict[str, str] = {}
    # Refuse unsigned AuthnRequests even if the SP's metadata does not ask for signing.
    require_signed_requests: bool = False

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: str) -> str:
        if "://" in value:
            return _https_url(value, "SP metadata URL")
        if not Path(value).is_file():
            raise ValueError(
                f"SP metadata file {value!r} does not exist; save the SaaS vendor's SAML "
                "metadata XML there, or give its https:// URL"
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, str]) -> dict[str, str]:
        return _claim_map(value, "attribute")


class OidcClient(Model):
    """A SaaS app that signs users in with OpenID Connect: the gateway is its provider."""

    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    # Confidential client's secret, from a file; without one the client is public (PKCE only).
    client_secret_file: Path | None = None
    # Compared exactly, character by character (OAuth 2.0 Security BCP, RFC 9700 2.1).
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    # ID token claim -> claim of the enterprise IdP.
    claims: dict[str, str] = {"email": "email", "email_verified": "email_verified", "name": "name"}
    # OpenID Connect Back-Channel Logout 1.0: where signing out at the gateway POSTs a
    # logout token, and the CA bundle of that endpoint's TLS (default: the system store).
    backchannel_logout_uri: str | None = None
    backchannel_logout_ca: Path | None = None

    @field_validator("redirect_uris")
    @classmethod
    def _redirects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            _https_url(uri, "redirect URI")
            if "#" in uri:
                raise ValueError(f"{uri!r} has a fragment; RFC 6749 3.1.2 forbids one")
        return value

    @field_validator("backchannel_logout_uri")
    @classmethod
    def _backchannel(cls, value: str | None) -> str | None:
        return None if value is None else _https_url(value, "back-channel logout URI")

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(set(value) & {"iss", "aud", "exp", "iat", "nonce", "auth_time", "sub"})
        if reserved:
            raise ValueError(f"claim {reserved[0]!r} is set by the gateway itself; map another")
        return _claim_map(value, "claim")


class SaasApp(Guarded):
    """An app the gateway cannot proxy: it signs users in to it with SAML or OpenID Connect."""

    saml: SamlSp | None = None
    oidc: OidcClient | None = None
    # Where the portal sends the user: the app's sign-in page. Default for SAML: an
    # IdP-initiated sign-in; for OIDC it must be given (only the app can start its flow).
    launch: str | None = None

    @field_validator("launch")
    @classmethod
    def _launch(cls, value: str | None) -> str | None:
        return None if value is None else _https_url(value, "launch URL")

    @model_validator(mode="after")
    def _protocol(self) -> SaasApp:
        if (self.saml is None) == (self.oidc is None):
            raise ValueError("give exactly one of saml: or oidc: (the protocol the app speaks)")
        if self.oidc is not None and self.launch is None:
            raise ValueError(
                "an oidc app needs launch: the URL of its sign-in page (only the app can "
                "start an OpenID Connect sign-in), e.g. https://tickets.example/login"
            )
        return self


class Idp(Model):
    """The gateway as identity provider (SAML IdP and OpenID provider) for the saas apps.

    One RSA key signs SAML responses and assertions (RSA-SHA256) and ID tokens (RS256);
    its certificate is in the IdP metadata. Without key_file, a key and self-signed
    certificate are made once in dev_dir and kept (SPs pin the certificate)."""

    key_file: Path | None = None
    cert_file: Path | None = None
    dev_dir: Path = Path(".overcast/gateway-idp")
    # Lifetime of a SAML assertion (NotOnOrAfter) and of an ID token, in seconds.
    assertion_lifetime: int = Field(300, ge=30, le=600)

    @model_validator(mode="after")
    def _pair(self) -> Idp:
        if (self.key_file is None) != (self.cert_file is None):
            raise ValueError("give both idp.key_file and idp.cert_file, or neither (dev mode)")
        return self


class GatewayConfig(Model):
    issuer: str
    client_id: str = "overcast-gateway"
    # A confidential client's secret, read from a file so it never sits in overcast.yaml.
    client_secret_file: Path | None = None
    # CA bundle for the identity provider's TLS; default: the system store.
    issuer_ca: Path | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile", "offline_access")
    host: str = "localhost"
    listen: str = "127.0.0.1:8443"
    # The port users type (behind a load balancer it differs from `listen`); default: listen's.
    public_port: int | None = Field(None, ge=1, le=65535)
    metrics_listen: str = "127.0.0.1:9464"
    tls: Tls = Tls()
    # Key ring for session cookies: lines "KEY_ID BASE64_32_BYTES", the first one seals.
    session_keys_file: Path | None = None
    # EC P-256 private key (PEM) that signs identity assertions; default: one per start.
    assertion_key_file: Path | None = None
    # Redis URL (redis://, rediss://, unix://) shared by gateway processes: a logout that
    # reaches one of them ends the session in all. Default: this process only.
    session_store: str | None = None
    session_lifetime: int = Field(8 * 3600, ge=60, le=7 * 86400)
    # Processes serving the public listener; more than one needs session_store.
    workers: int = Field(1, ge=1, le=64)
    assertion_lifetime: int = Field(60, ge=5, le=60)
    limits: Limits = Limits()
    # Proxies whose X-Forwarded-For is believed; nobody else's.
    trusted_proxies: tuple[Prefix, ...] = ()
    apps: dict[str, App] = {}
    # Apps it signs users in to as their SAML IdP or OpenID provider (gateway.saml, .op).
    saas: dict[str, SaasApp] = {}
    idp: Idp = Idp()

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _https_url(value, "issuer")

    @field_validator("session_store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"{value!r} is not a Redis URL; write redis://HOST:6379/0 or "
                "unix:///run/redis/redis.sock"
            )
        return value

    @field_validator("host")
    @classmethod
    def _gateway_host(cls, value: str) -> str:
        return _host(value)

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _addr(cls, value: str) -> str:
        return _listen(value)

    @model_validator(mode="after")
    def _routes(self) -> GatewayConfig:
        if self.workers > 1 and self.session_store is None:
            raise ValueError(
                "workers > 1 needs session_store (a Redis URL): without it a logout seen by "
                "one worker would not end the session in the others"
            )
        if self.listen == self.metrics_listen:
            raise ValueError("metrics_listen must differ from listen: metrics are never public")
        seen: dict[tuple[str, str], str] = {}
        for name, app in self.apps.items():
            key = (self.app_host(name), app.path_prefix)
            if key[0] == self.host:
                raise ValueError(
                    f"apps.{name} uses the gateway's own host {self.host}; give it another host"
                )
            if key in seen:
                raise ValueError(
                    f"apps.{name} and apps.{seen[key]} both claim {key[0]}{key[1]}; "
                    "give one another host or path_prefix"
                )
            seen[key] = name
        self._check_saas()
        return self

    def _check_saas(self) -> None:
        both = sorted(set(self.apps) & set(self.saas))
        if both:
            raise ValueError(f"{both[0]!r} is both in apps and saas; give each app one name")
        if self.saas and self.workers > 1:
            raise ValueError(
                "saas apps need workers: 1: authorization codes and seen SAML request ids "
                "are kept in the serving process"
            )
        clients: dict[str, str] = {}
        for name, app in self.saas.items():
            if app.oidc is None:
                continue
            if app.oidc.client_id in clients:
                raise ValueError(
                    f"saas.{name} and saas.{clients[app.oidc.client_id]} share client_id "
                    f"{app.oidc.client_id!r}; give each its own"
                )
            clients[app.oidc.client_id] = name

    def app_host(self, name: str) -> str:
        return self.apps[name].host or f"{name}.{self.host}"

    def url(self, host: str, path: str) -> str:
        """The URL users reach `path` at on `host` (the public port, not always listen's)."""
        port = self.public_port or int(self.listen.rpartition(":")[2])
        return f"https://{host}{'' if port == 443 else f':{port}'}{path}"
