"""Sign-in through the gateway against a real, certified OpenID provider (oidc-provider).

Covers the full login (PKCE, state, nonce), the identity assertion the app receives,
group-based deny, refresh with single flight, RP-initiated logout and back-channel logout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import pytest

from gateway.assertion import HEADER, verify
from gateway.session import COOKIE
from overcast.metrics import REGISTRY
from tests.integration.gateway.sso_peers import (
    APP_HOST,
    GATEWAY_HOST,
    ClientCerts,
    RunningGateway,
    client_certs,
    confirm_idp_logout,
    gateway_config,
    gateway_in_thread,
    identity_provider,
    loopback_socket,
    sign_in,
    until,
    upstream_app,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> ClientCerts:
    return client_certs(tmp_path_factory.mktemp("client-certs"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, certs: ClientCerts) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("sso")
    sock = loopback_socket()
    port = sock.getsockname()[1]
    with identity_provider(tmp, port) as issuer, upstream_app(tmp) as upstream:
        # A second app on the same host under /vault: mTLS, and a policy on the certificate.
        vault = {
            "vault": {
                "host": APP_HOST,
                "path_prefix": "/vault",
                "upstream": f"https://127.0.0.1:{upstream.port}",
                "upstream_ca": str(upstream.ca),
                "client_ca": str(certs.ca),
                "allow": {
                    "and": [
                        {"groups": "sales"},
                        {"client_certificate": {"fingerprint": certs.fingerprint}},
                    ]
                },
            }
        }
        config = gateway_config(tmp, issuer, port, upstream, apps=vault)
        with gateway_in_thread(config, sock) as running:
            yield running


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_login_reaches_the_app_with_a_signed_identity(gw: RunningGateway) -> None:
    with gw.client() as client:
        first = client.get(gw.url(APP_HOST, "/inbox?folder=1"))
        assert first.status_code == 302
        auth = urlsplit(first.headers["location"])
        query = parse_qs(auth.query)
        # PKCE S256, state and nonce on every login.
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        assert query["state"][0] and query["nonce"][0]
        assert query["redirect_uri"] == [gw.url(APP_HOST, "/.overcast/callback")]

        landed = sign_in(client, gw.url(APP_HOST, "/inbox?folder=1"), "alice")
        assert landed.status_code == 200, landed.text[:300]
        seen = landed.json()
        assert seen["path"] == "/inbox?folder=1"
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        # The gateway's cookies never reach the app.
        assert "__Host-overcast" not in headers.get("cookie", "")
        jwks = client.get(gw.url(GATEWAY_HOST, "/.well-known/jwks.json")).json()
        claims = verify(headers[HEADER], jwks, "crm", gw.gateway.signer.issuer)
        assert claims["sub"] == "alice" and claims["groups"] == ["sales"]
        assert claims["email"] == "alice@corp.example" and claims["email_verified"] is True
        assert claims["exp"] - claims["iat"] <= 60

        cookie = next(c for c in client.cookies.jar if c.name == COOKIE)
        assert cookie.secure and cookie.path == "/" and not cookie.domain_specified
        again = client.get(gw.url(APP_HOST, "/inbox"))
        assert again.status_code == 200


def test_client_sent_assertion_is_replaced(gw: RunningGateway) -> None:
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        forged = client.get(gw.url(APP_HOST, "/x"), headers={"X-Overcast-Jwt-Assertion": "forged"})
        values = [v for k, v in forged.json()["headers"].items() if k.lower() == HEADER]
        assert values and values[0] != "forged"


def test_group_based_deny_and_deny_rules(gw: RunningGateway) -> None:
    with gw.client() as client:
        denied = sign_in(client, gw.url(APP_HOST, "/"), "bob")
        assert denied.status_code == 403
        assert "no allow rule matched" in denied.text
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        assert client.get(gw.url(APP_HOST, "/admin/users")).status_code == 403
        # The deny rule holds on the normalised path, whatever the spelling.
        assert client.get(gw.url(APP_HOST, "/x/../%61dmin/users")).status_code == 403


def test_unverified_email_is_not_a_verified_identity(gw: RunningGateway) -> None:
    with gw.client() as client:
        landed = sign_in(client, gw.url(APP_HOST, "/"), "eve")
        # Group membership lets eve in; her unverified address must not be vouched for.
        assert landed.status_code == 200
        headers = {k.lower(): v for k, v in landed.json()["headers"].items()}
        jwks = client.get(gw.url(GATEWAY_HOST, "/.well-known/jwks.json")).json()
        claims = verify(headers[HEADER], jwks, "crm", gw.gateway.signer.issuer)
        assert claims["email_verified"] is False


def test_tampered_cookie_means_signed_out(gw: RunningGateway) -> None:
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        value = client.cookies.get(COOKIE)
    assert value

    def status(cookie: str) -> int:
        headers = {"cookie": f"{COOKIE}={cookie}"}
        return httpx.get(gw.url(APP_HOST, "/"), headers=headers, verify=gw.trust()).status_code

    assert status(value) == 200
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    kid, _, body = value.partition(".")
    for bad in (value[:-1], value[:20], flipped, f"other.{body}", f"{kid}.", "", "%00"):
        assert status(bad) == 302, bad


def test_refresh_is_single_flight(gw: RunningGateway) -> None:
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        value = client.cookies.get(COOKIE)
    before = metric("overcast_gateway_refreshes_total", result="ok")
    gw.clock.offset += 120  # past the access token's 60 s lifetime

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(verify=gw.trust(), timeout=20) as client:
            headers = {"cookie": f"{COOKIE}={value}"}
            return list(
                await asyncio.gather(
                    *(client.get(gw.url(APP_HOST, f"/r{i}"), headers=headers) for i in range(8))
                )
            )

    try:
        responses = asyncio.run(burst())
    finally:
        gw.clock.offset -= 120
    assert [r.status_code for r in responses] == [200] * 8
    assert metric("overcast_gateway_refreshes_total", result="ok") == before + 1
    assert any(COOKIE in r.headers.get("set-cookie", "") for r in responses)


def test_rp_initiated_logout_kills_the_session(gw: RunningGateway) -> None:
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        value = client.cookies.get(COOKIE)
        confirm = client.get(gw.url(APP_HOST, "/.overcast/logout"), follow_redirects=True)
        visited = [str(r.url) for r in (*confirm.history, confirm)]
        assert any(u.startswith(gw.gateway.rp.issuer) and "id_token_hint" in u for u in visited)
        done = confirm_idp_logout(client, confirm)
        assert done.status_code == 200 and str(done.url).endswith("/.overcast/signed-out")
    # A copy of the old cookie, replayed, is dead: revoked server-side, not just deleted.
    replay = httpx.get(
        gw.url(APP_HOST, "/"), headers={"cookie": f"{COOKIE}={value}"}, verify=gw.trust()
    )
    assert replay.status_code == 302


def test_backchannel_logout_at_the_idp_kills_the_session(gw: RunningGateway) -> None:
    before = metric("overcast_gateway_backchannel_logouts_total", result="ok")
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        assert client.get(gw.url(APP_HOST, "/")).status_code == 200
        issuer = gw.gateway.rp.issuer
        # The user signs out at the IdP itself; the gateway only hears it on the back channel.
        confirm = client.get(f"{issuer}/session/end", follow_redirects=True)
        confirm_idp_logout(client, confirm)
        until(
            lambda: metric("overcast_gateway_backchannel_logouts_total", result="ok") > before,
            10,
            "the IdP's back-channel logout",
        )
        assert client.get(gw.url(APP_HOST, "/")).status_code == 302


def test_backchannel_rejects_forged_logout_tokens(gw: RunningGateway) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."
    for body in ({"logout_token": forged}, {"logout_token": ""}, {}):
        response = httpx.post(
            gw.url(GATEWAY_HOST, "/.overcast/backchannel-logout"), data=body, verify=gw.trust()
        )
        assert response.status_code == 400
        assert json.loads(response.text)["error"] == "invalid_request"


def test_own_endpoints_are_exact_and_on_the_gateway_host(gw: RunningGateway) -> None:
    with gw.client() as client:
        assert client.get(gw.url(GATEWAY_HOST, "/ping")).text == "OK\n"
        assert client.get(gw.url(GATEWAY_HOST, "/ready")).status_code == 200
        assert client.get(gw.url(GATEWAY_HOST, "/ping/x")).status_code == 404
        assert client.get(gw.url(GATEWAY_HOST, "/metrics")).status_code == 404
        # On an app host /ping is the app's path, behind sign-in like every other.
        assert client.get(gw.url(APP_HOST, "/ping")).status_code == 302
        bad = client.get(gw.url(APP_HOST, "/.overcast/callback?state=x&code=y"))
        assert bad.status_code == 400 and "Sign-in expired" in bad.text


def test_mtls_app_needs_a_certificate_from_its_ca(gw: RunningGateway, certs: ClientCerts) -> None:
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        # Signed in, yet without a client certificate the mTLS app stays shut.
        response = client.get(gw.url(APP_HOST, "/vault/secrets"))
        assert response.status_code == 403 and "certificate" in response.text
    with gw.client(certs.stranger) as client, pytest.raises(httpx.HTTPError):
        # A certificate from another CA does not even complete the TLS handshake.
        client.get(gw.url(APP_HOST, "/vault/secrets"))
    with gw.client(certs.good) as client:
        landed = sign_in(client, gw.url(APP_HOST, "/vault/secrets"), "alice")
        assert landed.status_code == 200 and landed.json()["path"] == "/vault/secrets"
        seen = {k.lower(): v for k, v in landed.json()["headers"].items()}
        jwks = client.get(gw.url(GATEWAY_HOST, "/.well-known/jwks.json")).json()
        assert verify(seen[HEADER], jwks, "vault", gw.gateway.signer.issuer)["sub"] == "alice"
    with gw.client(certs.good) as client:
        # The right certificate, the wrong group.
        assert sign_in(client, gw.url(APP_HOST, "/vault/secrets"), "bob").status_code == 403


def test_websocket_passes_through_only_for_a_signed_in_same_origin_page(
    gw: RunningGateway,
) -> None:
    with gw.client() as client:
        sign_in(client, gw.url(APP_HOST, "/"), "alice")
        cookie = f"{COOKIE}={client.cookies.get(COOKIE)}"
    own = gw.url(APP_HOST, "").rstrip("/")
    url = gw.url(APP_HOST, "/ws").replace("https://", "wss://")

    async def talk(headers: dict[str, str]) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, headers=headers, ssl=gw.trust()) as ws,
        ):
            await ws.send_str("hello")
            return str((await ws.receive(timeout=10)).data)

    assert asyncio.run(talk({"Cookie": cookie, "Origin": own})) == "echo:hello"
    for headers in (
        {"Cookie": cookie, "Origin": "https://evil.example"},  # cross-site WebSocket hijack
        {"Origin": own},  # not signed in
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            asyncio.run(talk(headers))
        assert refused.value.status == 403
