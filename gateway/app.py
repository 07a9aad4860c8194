"""The gateway as one ASGI app: sign-in, sessions, policy, identity assertion, forwarding.

Per request, in this order, so policy decides on exactly what is forwarded:
  1. Host: one Host header, lower-cased, port dropped. A host that is no app's answers the
     gateway's own endpoints only (exact paths): /ping, /ready, /.well-known/jwks.json and
     the back-channel logout receiver.
  2. Path: normalised once (`gateway.paths`); a path without one meaning is a 400.
  3. Route: the app whose host matches and whose path prefix is longest.
  4. mTLS: an app with `client_ca` needs a client certificate chaining to that CA.
  5. Session: the sealed cookie opens or the request is anonymous; due tokens are
     refreshed once per session (single flight).
  6. Policy: deny wins; every decision is logged as one JSON line with its reason.
  7. Forward: identity headers and the gateway's cookies stripped, the ES256 assertion
     added, to the app's upstream over TLS.
Sign-in and sign-out live under /.overcast/ on each app host, because `__Host-` cookies
belong to exactly one host (RFC 6265bis section 4.1.3.2). `Gateway.express` runs the same
steps, with the same functions, for the common request that needs no waiting (signed in,
allowed, no body); `gateway.server` then forwards it without an ASGI task.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import html
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring_ascii as _js
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import parse_qsl

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import Counter

from gateway.assertion import HEADER as ASSERTION_HEADER
from gateway.assertion import AssertionKeyError, AssertionSigner, load_key
from gateway.config import RESERVED_PREFIX, GatewayConfig
from gateway.forwarded import Origin
from gateway.forwarded import origin as forwarded_origin
from gateway.oidc import LoginRequest, OidcError, RelyingParty, SingleFlight, Tokens
from gateway.paths import BadPath, normalise
from gateway.policy import Decision
from gateway.proxy import Forward, Proxy, Route, http_date, routes_from_config
from gateway.redirects import safe_redirect
from gateway.request import Identity, RequestContext
from gateway.session import (
    COOKIE,
    LOGIN_COOKIE,
    OPENED_CACHE,
    KeyRing,
    KeyRingError,
    Session,
    SessionCodec,
    SessionStore,
    clear_cookie,
    cookie_value,
    set_cookie,
)
from gateway.session_sync import SessionSync
from gateway.tls import ClientCA, cert_details, client_context
from overcast.metrics import REGISTRY

if TYPE_CHECKING:
    from gateway.sso import SsoHost

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

CALLBACK = "/.overcast/callback"
LOGOUT = "/.overcast/logout"
SIGNED_OUT = "/.overcast/signed-out"
BACKCHANNEL = "/.overcast/backchannel-logout"
JWKS = "/.well-known/jwks.json"
MAX_FORM = 64 * 1024
ENCODED_LINES = 1024  # decision log lines kept encoded
REFRESH_EARLY = 10  # seconds before the access token expires
DISCOVERY_RETRY = 5.0
HOUSEKEEPING = 60.0
REFRESH_RACE = 2.0  # seconds to wait for another process's refresh before signing out
# ID token claims that only mattered for validating the token itself.
_TOKEN_ONLY = frozenset({"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp"})

_ONE_HOST = (
    "send exactly one Host header naming the app, or an absolute-form target "
    "https://HOST/PATH without user@ (RFC 9112 section 3.2)"
)

log = logging.getLogger("overcast.gateway")

REQUESTS = Counter(
    "overcast_gateway_requests", "Policy decisions", ["app", "decision"], registry=REGISTRY
)
LOGINS = Counter("overcast_gateway_logins", "Completed sign-ins", ["result"], registry=REGISTRY)
REFRESHES = Counter(
    "overcast_gateway_refreshes", "Token refreshes sent to the IdP", ["result"], registry=REGISTRY
)
BACKCHANNEL_LOGOUTS = Counter(
    "overcast_gateway_backchannel_logouts",
    "Back-channel logout tokens received",
    ["result"],
    registry=REGISTRY,
)


@functools.cache  # the labelled child, found once per app and outcome
def _decided(app: str, allowed: bool) -> Counter:
    return REQUESTS.labels(app, "allow" if allowed else "deny")


def client_cas(config: GatewayConfig) -> dict[str, ClientCA]:
    """The trust anchor of every app that demands client certificates (mTLS)."""
    return {n: ClientCA.load(a.client_ca) for n, a in config.apps.items() if a.client_ca}


def identity_of(session: Session) -> Identity:
    claims = session.claims
    email = claims.get("email")
    groups = claims.get("groups")
    return Identity(
        sub=session.sub,
        email=email if isinstance(email, str) else None,
        # Only a literal JSON true counts (OIDC Core 5.1): "true" or 1 is not verified.
        email_verified=claims.get("email_verified") is True,
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        claims=claims,
    )


# The same few paths arrive again and again; a path that is refused raises and is not kept.
_normalised = functools.lru_cache(maxsize=1024)(normalise)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k == name]


def _cookie(headers: Headers) -> str | None:
    """The sealed session cookie's value, if the request carries one."""
    return cookie_value(b"; ".join(_header(headers, b"cookie")).decode("latin-1"), COOKIE)


def _host_of(values: list[bytes]) -> str | None:
    """RFC 9112 section 3.2: exactly one Host; we compare it without port, lower-cased."""
    return _host_name(values[0]) if len(values) == 1 else None


@functools.lru_cache(maxsize=1024)  # the gateway's few app hosts, on every request
def _host_name(value: bytes) -> str | None:
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else None
    name = host.rsplit(":", 1)[0] if ":" in host else host
    return name.rstrip(".") or None


class DecodedHeaders(Mapping[str, str]):
    """`RequestContext.headers`: decoded on first use, as most policies never read them."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: Headers) -> None:
        self._raw = raw
        self._decoded: dict[str, str] | None = None

    def _fields(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in self._raw}
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._fields()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())


@dataclass
class Reply:
    """A response the gateway makes itself."""

    status: int
    body: bytes = b""
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, send: Send) -> None:
        headers = [
            (b"date", http_date()),
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def page(status: int, title: str, text: str, *extra: tuple[bytes, bytes]) -> Reply:
    body = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return Reply(status, body.encode(), b"text/html; charset=utf-8", extra)


def redirect(location: str, *extra: tuple[bytes, bytes]) -> Reply:
    return Reply(302, b"", headers=((b"location", location.encode()), *extra))


def _js_or_null(text: str | None) -> str:
    return "null" if text is None else _js(text)


class Routed(Protocol):
    """What a decision line names: a proxy route, or a SaaS app (gateway.sso.Target)."""

    @property
    def app(self) -> str: ...
    @property
    def host(self) -> str: ...


class DecisionLog:
    """Policy decisions and logouts as JSON lines, one per event, with their reason.

    Lines are collected during one event-loop turn and written together at its end: a
    burst of requests costs one write, and no line waits longer than that turn. Decisions
    are counted (`overcast_gateway_requests`) the same way: with several processes each
    count is a write to a shared file, so it is one per turn, not one per request.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._counts: dict[tuple[str, bool], int] = {}
        # The same user keeps asking for the same few things: a line is encoded once.
        self._encoded: dict[tuple[object, ...], str] = {}

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.stream is not None:
            self.emit_line(json.dumps(event))

    def emit_line(self, line: str) -> None:
        """One event already encoded as a JSON object on one line."""
        if self.stream is None:
            return
        self._pending()
        self._lines.append(line)

    def _pending(self) -> None:
        """Something is about to wait for the end of this turn: make sure it comes."""
        if not self._lines and not self._counts:
            asyncio.get_running_loop().call_soon(self.flush)

    def decision(
        self,
        route: Routed,
        method: str,
        path: str,
        ip: str,
        identity: Identity | None,
        allowed: bool,
        reason: str,
    ) -> None:
        """A policy decision, counted, and the line `emit` would write for it, built without
        a dict and the generic encoder, because there is one per request."""
        self._pending()
        counted = (route.app, allowed)
        self._counts[counted] = self._counts.get(counted, 0) + 1
        if self.stream is None:
            return
        sub, email = (identity.sub, identity.email) if identity is not None else (None, None)
        key = (route.app, route.host, method, path, ip, sub, email, allowed, reason)
        line = self._encoded.get(key)
        if line is None:
            if len(self._encoded) >= ENCODED_LINES:
                self._encoded.clear()
            line = self._encoded[key] = (
                f'{{"event": "decision", "app": {_js(route.app)}, "host": {_js(route.host)}, '
                f'"method": {_js(method)}, "path": {_js(path)}, "client_ip": {_js(ip)}, '
                f'"sub": {_js_or_null(sub)}, "email": {_js_or_null(email)}, '
                f'"allowed": {"true" if allowed else "false"}, "reason": {_js(reason)}}}'
            )
        self.emit_line(line)

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        for (app, allowed), count in counts.items():
            _decided(app, allowed).inc(count)
        if self.stream is not None and self._lines:
            self.stream.write("\n".join(self._lines) + "\n")
            self.stream.flush()
        self._lines.clear()


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        rp: RelyingParty,
        codec: SessionCodec,
        signer: AssertionSigner,
        proxy: Proxy,
        clock: Callable[[], float] = time.time,
        decisions: DecisionLog | None = None,
        sync: SessionSync | None = None,
    ) -> None:
        self.config = config
        self.rp = rp
        self.codec = codec
        self.signer = signer
        self.proxy = proxy
        self.clock = clock
        self.decisions = decisions or DecisionLog(None)
        self.sync = sync
        self.table = routes_from_config(config)
        self.app_hosts = {config.app_host(name) for name in config.apps}
        self.client_cas = client_cas(config)
        self.trusted = config.trusted_proxies
        self.refreshes: SingleFlight[Session | None] = SingleFlight()
        self._jwks = signer.jwks_json()
        # Per session object (a refresh or a new cookie makes a new one): built once.
        self._identities: dict[str, tuple[Session, Identity]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.sso: SsoHost | None = None  # set by build()

    @property
    def ready(self) -> bool:
        synced = self.sync is None or self.sync.synced
        return self.rp.metadata is not None and synced

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket"):
            await self.request(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._tasks = [
                    asyncio.create_task(self.discover()),
                    asyncio.create_task(self.housekeeping()),
                ]
                if self.sync is not None:
                    self._tasks.append(asyncio.create_task(self.sync.run()))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                await self.rp.http.aclose()
                await self.proxy.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def discover(self) -> None:
        """Find the IdP, retrying until it answers; /ready says 503 until then."""
        while True:
            try:
                await self.rp.discover()
                log.info("identity provider %s discovered", self.rp.issuer)
                return
            except OidcError as exc:
                log.warning("identity provider not ready: %s", exc)
            await asyncio.sleep(DISCOVERY_RETRY)

    async def housekeeping(self) -> None:
        """Forget expired sessions and revocations, so memory stays bounded."""
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            self.codec.store.expire(int(self.clock()), self.config.session_lifetime)

    async def request(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = scope["type"] == "websocket"
        located = self._locate(scope)
        if isinstance(located, Reply):
            return await self._refuse(send, websocket, located)
        host, path = located
        if host not in self.app_hosts:
            if self._sso_path(websocket, host, path):
                assert self.sso is not None
                return await (await self.sso.handle(scope, receive, path)).send(send)
            return await self._refuse(send, websocket, await self.own(scope, path, receive))
        if path.startswith(RESERVED_PREFIX):
            return await self._refuse(send, websocket, await self.sign_in_out(scope, host, path))
        route = self.table.match(host, path)
        if route is None:
            return await self._refuse(send, websocket, page(404, "Not found", "no app here"))
        await self.app_request(scope, receive, send, route, host, path)

    def _sso_path(self, websocket: bool, host: str, path: str) -> bool:
        """A path of the portal or the identity providers (gateway.sso) on our own host."""
        own = path == BACKCHANNEL or not self.sso or not self.sso.handles(path)
        return not websocket and host == self.config.host and not own

    def express(self, scope: Scope) -> Forward | None:
        """Steps 1-7 for the common request, decided without awaiting anything: an HTTP
        request to an app, signed in with a session that needs no refresh, no mTLS, allowed.
        Then the decision is logged and what goes upstream returned. None (nothing logged):
        anything else, which `request` handles, deciding again in full."""
        located = self._locate(scope)
        if isinstance(located, Reply) or located[0] not in self.app_hosts:
            return None
        host, path = located
        route = self.table.match(host, path)
        if route is None or route.app in self.client_cas or path.startswith(RESERVED_PREFIX):
            return None
        now = int(self.clock())
        session = self.codec.open(_cookie(scope["headers"]), now)
        if session is None or now >= session.refresh_at:
            return None
        origin = self._origin(scope, host)
        identity, decision = self._decide(scope, route, host, path, origin, session, None)
        if not decision.allowed:
            return None
        self._log(route, scope, path, origin.client_ip, identity, True, decision.reason)
        extra = self._assertion(route, session, identity, now)
        return self.proxy.forward(scope, route, path, origin, extra)

    def _locate(self, scope: Scope) -> tuple[str, str] | Reply:
        """Steps 1-2: the request's host and normalised path, or the 400 that refuses it."""
        host = _host_of(_header(scope["headers"], b"host"))
        if host is None:
            return page(400, "Bad request", _ONE_HOST)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        try:
            return host, _normalised(raw_path.decode("latin-1"))
        except BadPath as exc:
            return page(400, "Bad request", str(exc))

    async def _refuse(self, send: Send, websocket: bool, reply: Reply) -> None:
        if websocket:
            # Closing before accept makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
        else:
            await reply.send(send)

    # -- the gateway's own endpoints ------------------------------------------------

    async def own(self, scope: Scope, path: str, receive: Receive) -> Reply:
        method = scope.get("method", "GET")
        if path == "/ping" and method in ("GET", "HEAD"):
            return Reply(200, b"OK\n")
        if path == "/ready" and method in ("GET", "HEAD"):
            return Reply(200, b"ready\n") if self.ready else Reply(503, b"IdP not discovered\n")
        if path == JWKS and method in ("GET", "HEAD"):
            return Reply(200, self._jwks, b"application/jwk-set+json")
        if path == BACKCHANNEL and method == "POST":
            return await self.backchannel_logout(scope, receive)
        return Reply(404, b"not found\n")

    async def backchannel_logout(self, scope: Scope, receive: Receive) -> Reply:
        """OpenID Connect Back-Channel Logout 1.0 sections 2.5-2.8."""
        form = await _read_form(receive)
        token = form.get("logout_token") if form is not None else None
        if not token:
            BACKCHANNEL_LOGOUTS.labels("invalid").inc()
            return _json(400, {"error": "invalid_request", "error_description": "no logout_token"})
        try:
            claims = await self.rp.validate_logout_token(token)
        except OidcError as exc:
            BACKCHANNEL_LOGOUTS.labels("invalid").inc()
            log.warning("back-channel logout refused: %s", exc)
            return _json(400, {"error": "invalid_request", "error_description": str(exc)})
        now = int(self.clock())
        sid, sub = claims.get("sid"), claims.get("sub")
        if isinstance(sid, str):
            self.codec.store.revoke(idp_sid=sid, now=now)
        else:
            self.codec.store.revoke(sub=str(sub), now=now)
        self.codec.store.expire(now, self.config.session_lifetime)
        BACKCHANNEL_LOGOUTS.labels("ok").inc()
        self.decisions.emit({"event": "backchannel-logout", "sid": sid, "sub": sub})
        return Reply(200)

    # -- sign-in and sign-out on an app host ----------------------------------------

    async def sign_in_out(self, scope: Scope, host: str, path: str) -> Reply:
        if scope["type"] != "http":
            return page(404, "Not found", "")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookies = b"; ".join(_header(scope["headers"], b"cookie")).decode("latin-1")
        if path == CALLBACK:
            return await self.callback(host, query, cookies)
        if path == LOGOUT:
            return self.logout(host, cookies)
        if path == SIGNED_OUT:
            return page(200, "Signed out", "You are signed out.")
        return page(404, "Not found", "")

    def start_login(self, host: str, path: str, query: bytes) -> Reply:
        if not self.ready:
            return page(503, "Sign-in unavailable", "The identity provider is not reachable yet.")
        now = int(self.clock())
        target = path + ("?" + query.decode("latin-1") if query else "")
        login = LoginRequest.new(target, now)
        sealed = self.codec.keys.seal(LOGIN_COOKIE, json.dumps(asdict(login)).encode())
        url = self.rp.authorization_url(login, self.config.url(host, CALLBACK), self.config.scopes)
        cookie = set_cookie(LOGIN_COOKIE, sealed, login.expires_at - now)
        return redirect(url, (b"set-cookie", cookie.encode()))

    async def callback(self, host: str, query: Mapping[str, str], cookies: str) -> Reply:
        now = int(self.clock())
        clear = (b"set-cookie", clear_cookie(LOGIN_COOKIE).encode())
        if "error" in query:
            LOGINS.labels("refused").inc()
            return page(403, "Sign-in refused", f"The identity provider said: {query['error']}")
        # RFC 9207: a response naming another issuer is a mix-up attack.
        if "iss" in query and query["iss"] != self.rp.issuer:
            LOGINS.labels("invalid").inc()
            return page(400, "Sign-in failed", "The response came from another issuer.", clear)
        login = self._login(cookies)
        if login is None or not login.matches(query.get("state", ""), now):
            LOGINS.labels("invalid").inc()
            return page(
                400,
                "Sign-in expired",
                "This sign-in was not started in this browser or took too long; "
                "go back to the app and try again.",
                clear,
            )
        try:
            tokens = await self.rp.finish(
                query.get("code", ""), login, self.config.url(host, CALLBACK)
            )
        except OidcError as exc:
            LOGINS.labels("invalid").inc()
            log.warning("sign-in at %s failed: %s", host, exc)
            return page(400, "Sign-in failed", str(exc), clear)
        session = self.new_session(tokens, now)
        LOGINS.labels("ok").inc()
        target = safe_redirect(login.return_to, [host]) or "/"
        return redirect(target, clear, self._session_cookie(session, now, host))

    def _login(self, cookies: str) -> LoginRequest | None:
        raw = self.codec.keys.unseal(LOGIN_COOKIE, cookie_value(cookies, LOGIN_COOKIE) or "")
        try:
            return LoginRequest(**json.loads(raw)) if raw is not None else None
        except (ValueError, TypeError):
            return None

    def new_session(self, tokens: Tokens, now: int) -> Session:
        claims = {k: v for k, v in tokens.claims.items() if k not in _TOKEN_ONLY}
        lifetime = now + self.config.session_lifetime
        idp_sid = claims.get("sid")
        return Session(
            sid=secrets.token_urlsafe(16),
            sub=str(claims["sub"]),
            claims=claims,
            issued_at=now,
            # Without a refresh token the session cannot outlive what the IdP granted.
            expires_at=lifetime if tokens.refresh_token else min(lifetime, tokens.expires_at),
            refresh_at=_refresh_at(tokens, now),
            idp_sid=idp_sid if isinstance(idp_sid, str) else None,
            id_token=tokens.id_token,
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
        )

    def _session_cookie(self, session: Session, now: int, host: str = "") -> tuple[bytes, bytes]:
        # The gateway's own host is a SAML IdP: see gateway.sso for why SameSite=None.
        same_site = "None" if host == self.config.host else "Lax"
        value = set_cookie(COOKIE, self.codec.seal(session), session.expires_at - now, same_site)
        return (b"set-cookie", value.encode())

    def logout(self, host: str, cookies: str) -> Reply:
        """RP-initiated logout: kill our session first, then end the IdP's."""
        now = int(self.clock())
        session = self.codec.open(cookie_value(cookies, COOKIE), now)
        clear = (b"set-cookie", clear_cookie(COOKIE).encode())
        signed_out = self.config.url(host, SIGNED_OUT)
        if session is None:
            return redirect(signed_out, clear)
        self.codec.store.revoke(sid=session.sid, now=now)
        self.decisions.emit({"event": "logout", "sub": session.sub, "host": host})
        if not self.ready:
            return redirect(signed_out, clear)
        return redirect(self.rp.end_session_url(session.id_token, signed_out) or signed_out, clear)

    # -- app requests ----------------------------------------------------------------

    async def session_of(self, headers: Headers, now: int) -> tuple[Session | None, bool]:
        """The request's live session, and whether it was refreshed (needs a new cookie)."""
        session = self.codec.open(_cookie(headers), now)
        if session is None or now < session.refresh_at:
            return session, False
        if not session.refresh_token:
            return None, False
        refreshed = await self.refreshes.run(session.sid, lambda: self._refresh(session, now))
        return refreshed, refreshed is not None

    async def _refresh(self, session: Session, now: int) -> Session | None:
        latest = self.codec.store.latest(session)
        if latest.refresh_at > now:  # another request refreshed it a moment ago
            return latest
        assert session.refresh_token is not None
        try:
            tokens = await self.rp.refresh(session.refresh_token, {"sub": session.sub})
        except OidcError as exc:
            newer = await self._refreshed_elsewhere(session, now)
            if newer is not None:
                return newer
            REFRESHES.labels("failed").inc()
            log.info("refresh for %s failed, signing out: %s", session.sub, exc)
            self.codec.store.revoke(sid=session.sid, now=now)
            return None
        REFRESHES.labels("ok").inc()
        claims = {k: v for k, v in tokens.claims.items() if k not in _TOKEN_ONLY}
        fresh = session.refreshed(
            claims=claims or session.claims,
            refresh_at=_refresh_at(tokens, now),
            id_token=tokens.id_token or session.id_token,
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
        )
        self.codec.store.remember(fresh)
        return fresh

    async def _refreshed_elsewhere(self, session: Session, now: int) -> Session | None:
        """Another gateway process may have used (and rotated) the refresh token first."""
        if self.sync is None:
            return None
        for _ in range(int(REFRESH_RACE / 0.1)):
            latest = self.codec.store.latest(session)
            if latest.refresh_at > now:
                return latest
            await asyncio.sleep(0.1)
        return None

    async def app_request(
        self, scope: Scope, receive: Receive, send: Send, route: Route, host: str, path: str
    ) -> None:
        websocket = scope["type"] == "websocket"
        headers: Headers = scope["headers"]
        now = int(self.clock())
        origin = self._origin(scope, host)
        client_ca = self.client_cas.get(route.app)
        cert = _client_cert(scope, client_ca, now) if client_ca is not None else None
        if client_ca is not None and cert is None:
            self._log(
                route, scope, path, origin.client_ip, None, False, "no valid client certificate"
            )
            reply = page(403, "Client certificate required", "This app needs a certificate.")
            return await self._refuse(send, websocket, reply)
        if websocket and not _same_origin(headers, host):
            # A page on another site must not open a socket riding on the user's cookie.
            self._log(
                route, scope, path, origin.client_ip, None, False, "websocket from another origin"
            )
            return await self._refuse(send, websocket, page(403, "Forbidden", ""))
        session, refreshed = await self.session_of(headers, now)
        identity, decision = self._decide(scope, route, host, path, origin, session, cert)
        self._log(route, scope, path, origin.client_ip, identity, decision.allowed, decision.reason)
        if not decision.allowed:
            method = scope.get("method", "GET")
            if identity is None and not websocket and method in ("GET", "HEAD"):
                return await self.start_login(host, path, scope.get("query_string", b"")).send(send)
            status = 401 if identity is None else 403
            title = "Sign-in required" if identity is None else "Forbidden"
            return await self._refuse(send, websocket, page(status, title, decision.reason))
        extra = self._assertion(route, session, identity, now)
        if websocket:
            return await self.proxy.websocket(scope, receive, send, route, path, origin, extra)
        if refreshed and session is not None:
            send = _with_header(send, self._session_cookie(session, now))
        await self.proxy.http(scope, receive, send, route, path, origin, extra)

    def _origin(self, scope: Scope, host: str) -> Origin:
        """The client's address and the scheme and host it used: from `X-Forwarded-*` when
        the peer is a trusted proxy, else the peer itself."""
        peer = scope.get("client") or ("", 0)
        if self.trusted:
            return forwarded_origin(peer[0], scope["scheme"], host, scope["headers"], self.trusted)
        return Origin(peer[0], scope["scheme"], host)

    def _decide(
        self,
        scope: Scope,
        route: Route,
        host: str,
        path: str,
        origin: Origin,
        session: Session | None,
        cert: Mapping[str, Any] | None,
    ) -> tuple[Identity | None, Decision]:
        """Step 6: the app's policy on this request (not logged here)."""
        identity = self._identity(session) if session is not None else None
        ctx = RequestContext(
            method=scope.get("method", "GET"),
            host=host,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=DecodedHeaders(scope["headers"]),
            client_ip=origin.client_ip,
            client_cert=cert,
            identity=identity,
        )
        return identity, self.config.apps[route.app].policy.decide(ctx)

    def _assertion(
        self, route: Route, session: Session | None, identity: Identity | None, now: int
    ) -> Headers:
        """The signed identity header for the upstream (none for an anonymous request)."""
        if identity is None or session is None:
            return []
        key = f"{session.sid}:{session.refresh_at}"
        token = self.signer.sign(identity, route.app, now, cache_key=key)
        return [(ASSERTION_HEADER.encode(), token.encode())]

    def _identity(self, session: Session) -> Identity:
        known = self._identities.get(session.sid)
        if known is not None and known[0] is session:
            return known[1]
        if len(self._identities) >= OPENED_CACHE:
            self._identities.clear()
        identity = identity_of(session)
        self._identities[session.sid] = (session, identity)
        return identity

    def _log(
        self,
        route: Route,
        scope: Scope,
        path: str,
        ip: str,
        identity: Identity | None,
        allowed: bool,
        reason: str,
    ) -> None:
        method = scope.get("method", "GET")
        self.decisions.decision(route, method, path, ip, identity, allowed, reason)


def _client_cert(scope: Scope, ca: ClientCA, now: int) -> Mapping[str, Any] | None:
    """The client certificate's details if it chains to `ca` (ASGI TLS extension)."""
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    if not chain:
        return None
    when = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return cert_details(chain[0]) if ca.verifies(chain[0], when) else None


def _same_origin(headers: Headers, host: str) -> bool:
    origins = _header(headers, b"origin")
    if not origins:
        return True  # not a browser: no ambient cookie risk from another site
    origin = origins[0].decode("latin-1").lower()
    return origin.split("://", 1)[-1].rsplit(":", 1)[0] == host


def _with_header(send: Send, header: tuple[bytes, bytes]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), header]
        await send(message)

    return wrapped


async def _read_form(receive: Receive) -> dict[str, str] | None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM:
            return None
        if not message.get("more_body"):
            break
    try:
        return dict(parse_qsl(body.decode("ascii"), strict_parsing=True))
    except (UnicodeDecodeError, ValueError):
        return None


async def _read_pairs(receive: Receive) -> list[tuple[str, str]] | None:
    """A urlencoded body's fields in order, repeats kept (an empty body has none)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM:
            return None
        if not message.get("more_body"):
            break
    try:
        return parse_qsl(body.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None


def _refresh_at(tokens: Tokens, now: int) -> int:
    """Refresh a little before the access token expires (a quarter of it, at most 10 s)."""
    return tokens.expires_at - min(REFRESH_EARLY, max(0, tokens.expires_at - now) // 4)


def _json(status: int, doc: Mapping[str, Any]) -> Reply:
    return Reply(status, json.dumps(doc).encode(), b"application/json")


class SetupError(ValueError):
    """A file the gateway needs is missing or unusable; the message names it and the fix."""


def build(
    config: GatewayConfig,
    clock: Callable[[], float] = time.time,
    decisions: TextIO | None = None,
) -> Gateway:
    """Everything the gateway needs, from its config section (files read here, once)."""
    try:
        if config.session_keys_file is not None:
            keys = KeyRing.load(config.session_keys_file)
        else:
            log.warning(
                "no session_keys_file: sessions end when the gateway restarts "
                "(make one with: overcast gateway new-session-key > FILE)"
            )
            keys = KeyRing.generate()
        if config.assertion_key_file is not None:
            key = load_key(config.assertion_key_file)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        secret = None
        if config.client_secret_file is not None:
            secret = config.client_secret_file.read_text(encoding="utf-8").strip()
        signer = AssertionSigner(key, config.url(config.host, ""), config.assertion_lifetime)
        http = httpx.AsyncClient(verify=client_context(config.issuer_ca), timeout=10.0)
        rp = RelyingParty(config.issuer, config.client_id, secret, http, clock)
        proxy = Proxy(routes_from_config(config), cookie_names=(COOKIE,))
        codec = SessionCodec(keys, SessionStore())
        sync = None
        if config.session_store is not None:
            sync = SessionSync(config.session_store, codec.store)
            sync.attach()
        gateway = Gateway(config, rp, codec, signer, proxy, clock, DecisionLog(decisions), sync)
        gateway.sso = sso_host(gateway, clock)
        return gateway
    except (KeyRingError, AssertionKeyError, OSError, UnicodeDecodeError, ValueError) as exc:
        # IdpKeyError and SAML metadata errors are ValueErrors naming the file too.
        # ClientCA.load raises ValueError naming the bundle; ssl errors are OSErrors.
        raise SetupError(str(exc)) from None


def sso_host(gateway: Gateway, clock: Callable[[], float]) -> SsoHost:
    """The portal, and the SAML IdP and OpenID provider when saas apps need them."""
    from gateway import idp_key
    from gateway.op import Client, OpenIdProvider
    from gateway.saml_endpoints import METADATA
    from gateway.sso import SsoHost

    config = gateway.config
    if not config.saas:
        return SsoHost(gateway, None, None)
    now = datetime.datetime.fromtimestamp(clock(), datetime.UTC)
    key = idp_key.load(config.idp, config.host, now)
    base = config.url(config.host, "").rstrip("/")
    clients = {}
    sps = {}
    for name, app in config.saas.items():
        if app.oidc is not None:
            secret_file = app.oidc.client_secret_file
            secret = secret_file.read_text(encoding="utf-8").strip() if secret_file else None
            clients[app.oidc.client_id] = Client(name, app.oidc, secret)
        if app.saml is not None:
            sps[name] = (app.saml, _sp_metadata(name, app.saml.metadata, app.saml.metadata_ca))
    lifetime = config.idp.assertion_lifetime
    saml = None
    if sps:
        from gateway.saml_idp import SamlIdp  # pysaml2: seconds to import, only when needed

        saml = SamlIdp(base + METADATA, base, key, sps, lifetime, clock)
    provider = OpenIdProvider(base, key, clients, lifetime, clock) if clients else None
    return SsoHost(gateway, provider, saml)


def _sp_metadata(app: str, source: str, ca: Path | None) -> str:
    if "://" not in source:
        return Path(source).read_text(encoding="utf-8")
    try:
        response = httpx.get(source, verify=client_context(ca), timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise SetupError(f"saas.{app}.saml.metadata: cannot fetch {source}: {exc}") from None
    return response.text
