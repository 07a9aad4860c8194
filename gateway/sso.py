"""The gateway's own host: the user's home session, the app portal, and the gateway as
identity provider (SAML IdP, OpenID provider) for the SaaS apps it cannot proxy.

One session, one policy: the session on this host comes from the enterprise IdP exactly as
an app host's does (`Gateway.start_login` / `callback`), and every assertion or code is
issued only after the app's policy allowed it, logged as the same JSON decision line.

The session cookie here is SameSite=None (still __Host-, Secure, HttpOnly): SAML's
HTTP-POST binding arrives as a cross-site POST, which carries no Lax cookie, so a Lax
session would send every POST-binding sign-in back to the enterprise IdP. Keycloak's and
ADFS's IdP session cookies are SameSite=None for the same reason.

A sign-in that needs the user to sign in first is parked here (at most PENDING_MAX, for
LOGIN_TTL s) and resumed after the callback, so a POSTed AuthnRequest survives the trip.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

import httpx
from prometheus_client import Counter

from gateway import op
from gateway.app import (
    CALLBACK,
    LOGOUT,
    SIGNED_OUT,
    Gateway,
    Reply,
    Scope,
    _json,
    _read_pairs,
    page,
    redirect,
)
from gateway.config import RESERVED_PREFIX, GatewayConfig
from gateway.oidc import LOGIN_TTL
from gateway.policy import Decision
from gateway.request import RequestContext
from gateway.saml_endpoints import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, SamlRefused
from gateway.saml_endpoints import LAUNCH as SAML_LAUNCH
from gateway.saml_endpoints import METADATA as SAML_METADATA
from gateway.saml_endpoints import SLO as SAML_SLO
from gateway.saml_endpoints import SSO as SAML_SSO
from gateway.session import COOKIE, Session, clear_cookie, cookie_value
from gateway.tls import client_context
from overcast.metrics import REGISTRY

if TYPE_CHECKING:
    from gateway.saml_idp import Request as SamlRequest
    from gateway.saml_idp import SamlIdp, SpSession

log = logging.getLogger("overcast.gateway")

# Labels: protocol saml|oidc; reason: a SamlRefused kind, an OAuth 2.0 error code (RFC 6749
# 4.1.2.1, 5.2) or "policy".
REFUSED = Counter(
    "overcast_gateway_idp_refused",
    "Sign-ins the gateway as identity provider refused, by protocol and reason",
    ["protocol", "reason"],
    registry=REGISTRY,
)
BACKCHANNEL_SENT = Counter(
    "overcast_gateway_idp_backchannel_logouts",
    "Logout tokens sent to relying parties when a gateway session ended, by result",
    ["app", "result"],
    registry=REGISTRY,
)
ISSUED = Counter(
    "overcast_gateway_idp_issued",
    "SAML responses and OIDC authorization codes issued, by app",
    ["app"],
    registry=REGISTRY,
)


PORTAL = "/"
RESUME = "/.overcast/resume"
PENDING_MAX = 10_000


class Target(NamedTuple):
    """A SaaS app as the decision log names it (the same fields as a proxy route's)."""

    app: str
    host: str


@dataclass(frozen=True)
class Parked:
    path: str
    method: str
    pairs: tuple[tuple[str, str], ...]
    expires_at: float


class SsoHost:
    def __init__(self, gateway: Gateway, op_: op.OpenIdProvider | None, saml: SamlIdp | None):
        self.gateway = gateway
        self.config: GatewayConfig = gateway.config
        self.host = self.config.host
        self.op = op_
        self.saml = saml
        self.parked: dict[str, Parked] = {}
        # Single logouts in progress: key -> (SP sessions still to end, where to go last)
        self.logouts: dict[str, tuple[list[SpSession], str]] = {}
        # gateway session id -> the relying parties with back-channel logout it signed in to
        self.relying: dict[str, dict[str, tuple[op.Client, op.Grantee]]] = {}

    def handles(self, path: str) -> bool:
        return path == PORTAL or path.startswith(RESERVED_PREFIX) or path == op.DISCOVERY

    async def handle(self, scope: Scope, receive: Any, path: str) -> Reply:
        method = scope.get("method", "GET")
        pairs: list[tuple[str, str]] = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        if method == "POST" and path != op.TOKEN:
            form = await _read_pairs(receive)
            if form is None:
                return page(400, "Bad request", "the form is not application/x-www-form-urlencoded")
            pairs += form
        if path == op.TOKEN and method == "POST":
            form = await _read_pairs(receive)
            return self._token(scope, form or [])
        if path == RESUME:
            parked = self.parked.pop(dict(pairs).get("id", ""), None)
            if parked is None or parked.expires_at < time.time():
                return page(400, "Sign-in expired", "Go back to the app and sign in again.")
            path, method, pairs = parked.path, parked.method, list(parked.pairs)
        return await self._route(scope, path, method, pairs)

    async def _route(
        self, scope: Scope, path: str, method: str, pairs: list[tuple[str, str]]
    ) -> Reply:
        if path == op.DISCOVERY and self.op is not None:
            return _json(200, self.op.discovery())
        if path == op.JWKS and self.op is not None:
            return _json(200, self.op.jwks())
        if path == op.USERINFO and self.op is not None:
            auth = _headers(scope).get("authorization", "")
            status, doc = self.op.userinfo(auth)
            return _json(status, doc)
        if path == SAML_METADATA and self.saml is not None:
            return Reply(200, self.saml.metadata().encode(), b"application/samlmetadata+xml")
        if path == SAML_SLO and self.saml is not None:
            return await self._slo(scope, method, dict(pairs))
        if path == LOGOUT:
            return await self._logout(scope)
        if path in (CALLBACK, SIGNED_OUT):
            return await self.gateway.sign_in_out(scope, self.host, path)
        session = await self._session(scope)
        if path == PORTAL and method in ("GET", "HEAD"):
            if session is None:
                return self._login(path, method, pairs)
            return self._portal(scope, session)
        if path == op.AUTHORIZE and self.op is not None and method in ("GET", "POST"):
            return self._authorize(scope, session, path, method, pairs)
        if path == SAML_SSO and self.saml is not None:
            binding = BINDING_HTTP_POST if method == "POST" else BINDING_HTTP_REDIRECT
            return self._sso(scope, session, method, pairs, binding)
        if path.startswith(SAML_LAUNCH) and self.saml is not None and method == "GET":
            return self._launch(scope, session, path, pairs)
        return page(404, "Not found", "")

    # -- session and policy --------------------------------------------------------------

    async def _session(self, scope: Scope) -> Session | None:
        session, _ = await self.gateway.session_of(scope["headers"], int(self.gateway.clock()))
        return session

    def _login(self, path: str, method: str, pairs: Sequence[tuple[str, str]]) -> Reply:
        """Sign in at the enterprise IdP first, then resume this request."""
        if len(self.parked) >= PENDING_MAX:
            now = time.time()
            self.parked = {k: v for k, v in self.parked.items() if v.expires_at > now}
            if len(self.parked) >= PENDING_MAX:
                return page(503, "Busy", "Too many sign-ins in progress; try again shortly.")
        key = secrets.token_urlsafe(16)
        self.parked[key] = Parked(path, method, tuple(pairs), time.time() + LOGIN_TTL)
        return self.gateway.start_login(self.host, RESUME, f"id={key}".encode())

    def _decide(self, scope: Scope, app: str, path: str, session: Session) -> Decision:
        identity = self.gateway._identity(session)
        origin = self.gateway._origin(scope, self.host)
        method = scope.get("method", "GET")
        ctx = RequestContext(
            method=method,
            host=self.host,
            path=path,
            client_ip=origin.client_ip,
            identity=identity,
        )
        decision = self.config.saas[app].policy.decide(ctx)
        self.gateway.decisions.decision(
            Target(app, self.host),
            method,
            path,
            origin.client_ip,
            identity,
            decision.allowed,
            decision.reason,
        )
        return decision

    def _refused(self, protocol: str, app: str, decision: Decision) -> Reply:
        REFUSED.labels(protocol, "policy").inc()
        return page(403, "Forbidden", f"{app}: {decision.reason}")

    # -- OpenID provider -----------------------------------------------------------------

    def _authorize(
        self,
        scope: Scope,
        session: Session | None,
        path: str,
        method: str,
        pairs: list[tuple[str, str]],
    ) -> Reply:
        assert self.op is not None
        uri = self.config.url(self.host, path)
        checked = self.op.check(uri, pairs, self._grantee(session, None) if session else None)
        if isinstance(checked, op.Answer):
            return self._answer(checked, refused=True)
        if session is None:
            return self._login(path, method, pairs)
        client = checked.request.client
        decision = self._decide(scope, client.app, path, session)
        if not decision.allowed:
            return self._refused("oidc", client.app, decision)
        grantee = self._grantee(session, client)
        answer = self.op.authorize(checked, grantee)
        if answer.status == 302 and "code=" in dict(answer.headers).get("Location", ""):
            ISSUED.labels(client.app).inc()
            if client.settings.backchannel_logout_uri:
                self.relying[session.sid] = self.relying.get(session.sid, {}) | {
                    client.app: (client, grantee)
                }
        return self._answer(answer)

    def _grantee(self, session: Session | None, client: op.Client | None) -> op.Grantee:
        assert session is not None
        claims = self._claims(session)
        mapped = op.mapped_claims(claims, client.settings.claims) if client else {}
        sid = ""
        if client is not None:
            sid = hashlib.sha256(f"{session.sid}\x00{client.app}".encode()).hexdigest()[:32]
        return op.Grantee(session.sub, mapped, session.issued_at, sid)

    def _claims(self, session: Session) -> dict[str, Any]:
        """The enterprise IdP's claims; `email` only when the IdP verified it."""
        claims = dict(session.claims)
        if claims.get("email_verified") is not True:
            claims.pop("email", None)
        return claims

    def _token(self, scope: Scope, form: list[tuple[str, str]]) -> Reply:
        if self.op is None:
            return _json(404, {"error": "not_found"})
        answer = self.op.token(self.config.url(self.host, op.TOKEN), _headers(scope), form)
        if answer.status != 200:
            REFUSED.labels("oidc", _error(answer.body)).inc()
            log.info("OIDC token request refused: %s", answer.body)
        return self._answer(answer)

    def _answer(self, answer: op.Answer, refused: bool = False) -> Reply:
        headers = tuple((k.lower().encode(), v.encode()) for k, v in answer.headers)
        body = answer.body
        if refused:
            location = dict(answer.headers).get("Location", "")
            error = dict(parse_qsl(location.partition("?")[2])).get("error")
            REFUSED.labels("oidc", error or _error(body)).inc()
        if refused and not any(k == b"location" for k, _ in headers):
            # No registered redirect URI to report to: tell the user, never redirect.
            doc = body if isinstance(body, dict) else json.loads(body or "{}")
            why = doc.get("error_description") or doc.get("error") or "invalid request"
            log.info("OIDC authorization request refused: %s", why)
            return page(400, "Sign-in refused", f"The app's sign-in request is invalid: {why}")
        data = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
        content = next((v for k, v in headers if k == b"content-type"), b"application/json")
        kept = tuple((k, v) for k, v in headers if k not in (b"content-type", b"cache-control"))
        return Reply(answer.status, data, content, kept)

    # -- SAML IdP --------------------------------------------------------------------------

    def _sso(
        self,
        scope: Scope,
        session: Session | None,
        method: str,
        pairs: list[tuple[str, str]],
        binding: str,
    ) -> Reply:
        assert self.saml is not None
        if session is None:
            # Checked when resumed; parking first keeps the one-time request id unspent.
            return self._login(SAML_SSO, method, pairs)
        try:
            request = self.saml.parse(binding, dict(pairs))
        except SamlRefused as exc:
            REFUSED.labels("saml", exc.kind).inc()
            log.info("SAML sign-in refused: %s", exc)
            return page(400, "Sign-in refused", str(exc))
        return self._assert(scope, session, request, SAML_SSO)

    def _launch(
        self, scope: Scope, session: Session | None, path: str, pairs: list[tuple[str, str]]
    ) -> Reply:
        assert self.saml is not None
        app = path.removeprefix(SAML_LAUNCH)
        if app not in self.saml.by_app:
            return page(404, "Not found", f"no SAML app {app!r}")
        if session is None:
            return self._login(path, "GET", pairs)
        try:
            request = self.saml.idp_initiated(app, dict(pairs).get("RelayState", ""))
        except Exception as exc:
            return page(400, "Sign-in refused", f"{app}: no POST AssertionConsumerService: {exc}")
        return self._assert(scope, session, request, path)

    def _assert(self, scope: Scope, session: Session, request: SamlRequest, path: str) -> Reply:
        assert self.saml is not None
        app = request.sp.app
        decision = self._decide(scope, app, path, session)
        if not decision.allowed:
            return self._refused("saml", app, decision)
        claims = self._claims(session)
        attributes = op.mapped_claims(claims, request.sp.settings.attributes)
        try:
            form = self.saml.respond(
                request, session.sid, session.sub, claims.get("email"), attributes
            )
        except SamlRefused as exc:
            REFUSED.labels("saml", exc.kind).inc()
            return page(403, "Forbidden", str(exc))
        ISSUED.labels(app).inc()
        return Reply(200, form.encode(), b"text/html; charset=utf-8")

    # -- portal ----------------------------------------------------------------------------

    def _portal(self, scope: Scope, session: Session) -> Reply:
        identity = self.gateway._identity(session)
        origin = self.gateway._origin(scope, self.host)
        links = []
        for name, app in sorted(self.config.apps.items()):
            host = self.config.app_host(name)
            ctx = RequestContext("GET", host, app.path_prefix, client_ip=origin.client_ip)
            if app.policy.decide(ctx._replace(identity=identity)).allowed:
                links.append((name, self.config.url(host, app.path_prefix), "proxied"))
        for name, saas in sorted(self.config.saas.items()):
            path = SAML_LAUNCH + name if saas.saml is not None else op.AUTHORIZE
            ctx = RequestContext("GET", self.host, path, client_ip=origin.client_ip)
            if saas.policy.decide(ctx._replace(identity=identity)).allowed:
                url = saas.launch or self.config.url(self.host, SAML_LAUNCH + name)
                links.append((name, url, "SAML" if saas.saml else "OpenID Connect"))
        items = "".join(
            f'<li><a class="app" id="app-{html.escape(n)}" href="{html.escape(u)}">'
            f"{html.escape(n)}</a> ({kind})</li>"
            for n, u, kind in links
        )
        who = html.escape(identity.email or identity.sub)
        body = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Apps</title></head><body>"
            f"<h1>Apps</h1><p>Signed in as <span id='user'>{who}</span>.</p>"
            f"<ul id='apps'>{items or '<li>No apps for you.</li>'}</ul>"
            f"<p><a id='sign-out' href='{LOGOUT}'>Sign out</a></p>"
            "</body></html>"
        )
        return Reply(200, body.encode(), b"text/html; charset=utf-8")

    # -- sign-out and single logout ---------------------------------------------------------

    async def _logout(self, scope: Scope) -> Reply:
        """End the gateway session, then each SAML SP session that has a logout endpoint
        (one after the other, front channel), then the enterprise IdP's."""
        cookies = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode("latin-1")
        now = int(self.gateway.clock())
        session = self.gateway.codec.open(cookie_value(cookies, COOKIE), now)
        final = self.gateway.logout(self.host, cookies)
        if session is not None:
            await self._backchannel_logouts(session.sid)
        if session is None or self.saml is None:
            return final
        visited = self.saml.sessions.pop(session.sid, [])
        if not visited:
            return final
        location = dict(final.headers).get(b"location", b"/").decode()
        key = secrets.token_urlsafe(16)
        self.logouts[key] = (visited, location)
        reply = self._next_logout(key)
        cleared = tuple(h for h in final.headers if h[0] == b"set-cookie")
        location = dict(reply.headers)[b"location"].decode()
        return redirect(location, *cleared)

    async def _backchannel_logouts(self, gateway_sid: str) -> None:
        """OIDC Back-Channel Logout 1.0 section 2.5: POST a logout token to each relying
        party this session signed in to that has a back-channel logout URI."""
        assert self.op is not None or not self.relying
        for app, (client, grantee) in self.relying.pop(gateway_sid, {}).items():
            assert self.op is not None
            token = self.op.logout_token(client, grantee.sub, grantee.sid)
            uri = str(client.settings.backchannel_logout_uri)
            ca = client.settings.backchannel_logout_ca
            try:
                async with httpx.AsyncClient(verify=client_context(ca), timeout=5.0) as http:
                    answer = await http.post(uri, data={"logout_token": token})
                ok = answer.status_code in (200, 204)
            except httpx.HTTPError as exc:
                log.warning("back-channel logout to %s (%s) failed: %s", app, uri, exc)
                ok = False
            BACKCHANNEL_SENT.labels(app, "ok" if ok else "failed").inc()
            self.gateway.decisions.emit(
                {"event": "oidc-backchannel-logout", "app": app, "host": self.host, "ok": ok}
            )

    def _next_logout(self, key: str) -> Reply:
        assert self.saml is not None
        remaining, final = self.logouts.pop(key, ([], "/"))
        while remaining:
            sp_session = remaining.pop(0)
            url = self.saml.logout_request(sp_session, key)
            if url is not None:
                self.logouts[key] = (remaining, final)
                self.gateway.decisions.emit(
                    {"event": "saml-logout", "app": sp_session.app, "host": self.host}
                )
                return redirect(url)
        return redirect(final)

    async def _slo(self, scope: Scope, method: str, query: Mapping[str, str]) -> Reply:
        assert self.saml is not None
        binding = BINDING_HTTP_POST if method == "POST" else BINDING_HTTP_REDIRECT
        if "SAMLResponse" in query:
            key = query.get("RelayState", "")
            if key not in self.logouts:
                return page(400, "Sign-out", "No sign-out in progress here.")
            try:
                self.saml.logout_response(binding, query)
            except SamlRefused as exc:
                log.info("%s", exc)  # the chain goes on: the gateway session is already over
            return self._next_logout(key)
        if "SAMLRequest" in query:
            return await self._sp_logout(scope, binding, query)
        return page(400, "Sign-out", "No SAMLRequest or SAMLResponse: sign out at the portal.")

    async def _sp_logout(self, scope: Scope, binding: str, query: Mapping[str, str]) -> Reply:
        """SP-initiated single logout (SAML Profiles 4.4.3): end the gateway session, then
        the user's other SP sessions, then answer the SP that asked."""
        assert self.saml is not None
        try:
            sp, request, relay_state = self.saml.logout_request_in(binding, query)
        except SamlRefused as exc:
            REFUSED.labels("saml", exc.kind).inc()
            log.info("%s", exc)
            return page(400, "Sign-out refused", str(exc))
        final = self.saml.logout_response_url(request, relay_state)
        cookies = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode("latin-1")
        now = int(self.gateway.clock())
        session = self.gateway.codec.open(cookie_value(cookies, COOKIE), now)
        others: list[SpSession] = []
        if session is not None:
            self.gateway.codec.store.revoke(sid=session.sid, now=now)
            self.gateway.decisions.emit(
                {"event": "logout", "sub": session.sub, "host": self.host, "by": sp.app}
            )
            others = [s for s in self.saml.sessions.pop(session.sid, []) if s.app != sp.app]
            await self._backchannel_logouts(session.sid)
        key = secrets.token_urlsafe(16)
        self.logouts[key] = (others, final)
        reply = self._next_logout(key)
        return redirect(
            dict(reply.headers)[b"location"].decode(),
            (b"set-cookie", clear_cookie(COOKIE).encode()),
        )


def _error(body: str | dict[str, Any]) -> str:
    """The OAuth 2.0 error code of an error body (a short, fixed vocabulary)."""
    try:
        doc = body if isinstance(body, dict) else json.loads(body or "{}")
    except ValueError:
        return "invalid_request"
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, str) and error.isascii() and len(error) < 40 else "other"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
