"""Single sign-on to SaaS apps the gateway cannot proxy, against real SPs from Debian.

`overcast gateway serve` is the SAML IdP and OpenID provider; Apache mod_auth_mellon (SAML
SP) and mod_auth_openidc (OIDC RP) stand in for SaaS; npm oidc-provider is the enterprise
IdP; Chromium signs in once and opens both SPs and a proxied app. One set of daemons for
the module.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from lxml import etree  # type: ignore[import-untyped]

from lab.idp import JS, NODE
from tests.conftest import require
from tests.integration.gateway.saas_peers import (
    OIDC_CLIENT,
    OIDC_SECRET,
    Sps,
    apache,
    sp_dir,
)
from tests.integration.gateway.sso_peers import (
    APP_HOST,
    GATEWAY_HOST,
    USERS,
    Served,
    cli_gateway,
    free_port,
    identity_provider,
    require_js,
    sign_in,
    upstream_app,
)
from tests.integration.gateway.test_browser import CHROMIUM, spki_hash

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]  # a cap for a loaded machine


@dataclass
class World:
    served: Served
    sps: Sps
    tmp: Path

    @property
    def portal(self) -> str:
        return f"https://{GATEWAY_HOST}:{self.served.port}/"

    def client(self) -> httpx.Client:
        return httpx.Client(verify=self.served.trust(), timeout=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("saas")
    port = free_port()
    with sp_dir(tmp) as sps, identity_provider(tmp, port) as issuer, upstream_app(tmp) as upstream:
        (tmp / "tickets-secret").write_text(OIDC_SECRET)
        saas = {
            "hr": {
                "saml": {
                    "metadata": str(sps.mellon_metadata),
                    "attributes": {"mail": "email", "memberOf": "groups"},
                },
                "allow": {"groups": "sales"},
            },
            "wiki": {
                "saml": {
                    "metadata": str(sps.shib_metadata),
                    "name_id": "persistent",
                    "attributes": {"mail": "email"},
                },
                "allow": {"groups": "sales"},
            },
            "tickets": {
                "oidc": {
                    "client_id": OIDC_CLIENT,
                    "client_secret_file": str(tmp / "tickets-secret"),
                    "redirect_uris": [sps.openidc_redirect],
                    "backchannel_logout_uri": sps.openidc_redirect + "?logout=backchannel",
                    "backchannel_logout_ca": str(tmp / "ca" / "ca.pem"),
                },
                "launch": sps.openidc_app,
                "allow": {"groups": {"any": ["sales", "eng"]}},
            },
        }
        settings = {"saas": saas, "idp": {"dev_dir": str(tmp / "idp")}}
        with cli_gateway(tmp, issuer, port, upstream, **settings) as served:
            ca = tmp / "ca"
            url = f"https://{GATEWAY_HOST}:{port}"
            with apache(sps, url, ca / "server.pem", ca / "server.key", ca / "ca.pem"):
                yield World(served, sps, tmp)


def browser(world: World, user: str, apps: dict[str, str], after: list[str]) -> dict:  # type: ignore[type-arg]
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing (apt-get install chromium)")
    require_js("playwright-core")
    job = world.tmp / f"job-{user}.json"
    job.write_text(
        json.dumps(
            {
                "portal": world.portal,
                "user": user,
                "password": USERS[user]["password"],
                "spki": spki_hash(world.tmp / "ca" / "server.pem"),
                "apps": apps,
                "after_logout": after,
            }
        )
    )
    run = subprocess.run(
        [str(NODE), str(JS / "saas_login.mjs"), str(job)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, (
        run.stderr[-3000:] + (world.sps.dir / "sso-error.log").read_text()[-3000:]
    )
    result: dict = json.loads(run.stdout.splitlines()[-1])  # type: ignore[type-arg]
    return result


def test_one_sign_in_opens_saml_oidc_and_proxied_apps(world: World) -> None:
    crm = f"https://{APP_HOST}:{world.served.port}/reports"
    sps = world.sps
    apps = {"hr": sps.mellon_app, "wiki": sps.shib_app, "tickets": sps.openidc_app, "crm": crm}
    result = browser(world, "alice", apps, after=[sps.mellon_app, sps.shib_app, sps.openidc_app])
    links = sorted(link["id"] for link in result["portal"])
    assert links == ["app-crm", "app-hr", "app-tickets", "app-wiki"]

    hr = result["apps"]["hr"]
    assert hr["url"] == world.sps.mellon_app and not hr["sign_in_form"], hr
    assert "nameid=alice@corp.example" in hr["text"] and "groups=sales" in hr["text"], hr
    assert "mail=alice@corp.example" in hr["text"]
    wiki = result["apps"]["wiki"]
    assert wiki["url"] == sps.shib_app and not wiki["sign_in_form"], wiki
    # A persistent NameID: an opaque pseudonym for this SP, never the email.
    pseudonym = re.search(r"shib_user=([0-9a-f]{64})\b", wiki["text"])
    assert pseudonym is not None and "shib_mail=alice@corp.example" in wiki["text"], wiki
    tickets = result["apps"]["tickets"]
    assert tickets["url"] == world.sps.openidc_app and not tickets["sign_in_form"], tickets
    assert "email=alice@corp.example" in tickets["text"] and "name=alice" in tickets["text"]
    proxied = result["apps"]["crm"]
    assert proxied["url"] == crm and json.loads(proxied["text"])["path"] == "/reports"

    # Signing out at the portal ended the SAML SP's session too (single logout): the SP
    # sends the browser back through the gateway to the enterprise IdP's sign-in form.
    assert result["signed_out"].endswith("/.overcast/signed-out")
    # ... and the OIDC relying party's, by a back-channel logout token.
    for app in (sps.mellon_app, sps.shib_app, sps.openidc_app):
        assert result["after_logout"][app]["sign_in_form"], app
    events = world.served.decisions()
    assert {"event": "oidc-backchannel-logout", "app": "tickets", "ok": True}.items() <= next(
        e for e in events if e["event"] == "oidc-backchannel-logout"
    ).items()
    log = sps.access_log()
    assert "GET /mellon/logout?SAMLRequest=" in log
    assert "GET /Shibboleth.sso/SLO/Redirect?SAMLRequest=" in log

    decisions = [d for d in world.served.decisions() if d["event"] == "decision"]
    for app in ("hr", "tickets"):
        assert any(d["app"] == app and d["allowed"] and d["sub"] == "alice" for d in decisions)


def test_user_outside_the_policy_is_refused_and_the_sp_gets_nothing(world: World) -> None:
    before = world.sps.access_log().count("POST /mellon/postResponse")
    with world.client() as client:
        refused = sign_in(client, world.sps.mellon_app, "bob")
        assert refused.status_code == 403 and "no allow rule matched" in refused.text
        assert urlsplit(str(refused.url)).port == world.served.port
        # bob may use tickets: the portal lists only that one.
        portal = client.get(world.portal)
        assert 'id="app-tickets"' in portal.text and 'id="app-hr"' not in portal.text
    assert world.sps.access_log().count("POST /mellon/postResponse") == before
    assert any(
        d["app"] == "hr" and not d["allowed"] and d["sub"] == "bob"
        for d in world.served.decisions()
        if d["event"] == "decision"
    )


def test_bad_saml_requests_are_refused(world: World) -> None:
    with world.client() as client:
        sign_in(client, world.portal, "alice")
        # mellon signs its AuthnRequests (HTTP-Redirect: the signature is in the query).
        sso = _to_gateway(client, world.sps.mellon_app, world.served.port)
        query = dict(parse_qsl(urlsplit(sso).query))
        assert {"SAMLRequest", "SigAlg", "Signature"} <= set(query)
        base = sso.split("?", 1)[0]

        unsigned = {k: v for k, v in query.items() if k not in ("SigAlg", "Signature")}
        answer = client.get(f"{base}?{urlencode(unsigned)}")
        assert answer.status_code == 400 and "must sign" in answer.text

        signature = query["Signature"]
        # Another first base64 digit: a different signature whatever the real one starts with.
        forged = query | {"Signature": ("B" if signature[0] == "A" else "A") + signature[1:]}
        answer = client.get(f"{base}?{urlencode(forged)}")
        assert answer.status_code == 400 and "must sign" in answer.text

        first = client.get(sso)
        assert first.status_code == 200 and 'name="SAMLResponse"' in first.text
        again = client.get(sso)
        assert again.status_code == 400 and "answered before" in again.text


def test_oidc_redirect_uri_must_match_exactly(world: World) -> None:
    with world.client() as client:
        sign_in(client, world.portal, "alice")
        query = {
            "response_type": "code",
            "client_id": OIDC_CLIENT,
            "scope": "openid email",
            "state": "s",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        url = f"{world.portal}.overcast/oidc/authorize"
        for bad in (world.sps.openidc_redirect + "x", world.sps.openidc_redirect + "?a=b"):
            answer = client.get(url, params=query | {"redirect_uri": bad})
            assert answer.status_code == 400 and "location" not in answer.headers, bad
        ok = client.get(url, params=query | {"redirect_uri": world.sps.openidc_redirect})
        assert ok.status_code == 302
        assert ok.headers["location"].startswith(world.sps.openidc_redirect + "?code=")
        no_pkce = {k: v for k, v in query.items() if not k.startswith("code_challenge")}
        refused = client.get(url, params=no_pkce | {"redirect_uri": world.sps.openidc_redirect})
        assert "error=invalid_request" in refused.headers.get("location", "")


def _to_gateway(client: httpx.Client, url: str, port: int) -> str:
    """Follow the SP's redirects up to the first one into the gateway: that URL."""
    for _ in range(5):
        answer = client.get(url)
        assert answer.status_code in (302, 303), answer.text[:300]
        url = str(answer.url.join(answer.headers["location"]))
        if urlsplit(url).port == port:
            return url
    raise AssertionError(f"{url} never led to the gateway")


_FIELD = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass(frozen=True)
class Posted:
    """A SAML response the gateway issued, not yet posted to the SP's ACS."""

    acs: str
    response: bytes  # the XML
    relay_state: str

    def post(self, client: httpx.Client, xml: bytes | None = None) -> httpx.Response:
        body = base64.b64encode(xml if xml is not None else self.response).decode()
        return client.post(self.acs, data={"SAMLResponse": body, "RelayState": self.relay_state})


def issued(client: httpx.Client, app: str, port: int) -> Posted:
    """Start the SP's sign-in and take the gateway's auto-posting form apart."""
    form = client.get(_to_gateway(client, app, port))
    assert form.status_code == 200, form.text[:300]
    fields = dict(re.findall(r'name="(SAMLResponse|RelayState)" value="([^"]*)"', form.text))
    action = re.search(r'action="([^"]+)"', form.text)
    assert action is not None and "SAMLResponse" in fields
    response = base64.b64decode(html.unescape(fields["SAMLResponse"]))
    return Posted(html.unescape(action.group(1)), response, html.unescape(fields["RelayState"]))


def wrapping_attacks(xml: bytes, attacker: str) -> dict[str, bytes]:
    """XML signature wrapping variants (Somorovsky et al., "On Breaking SAML: Be Whoever
    You Want to Be", USENIX Security 2012: XSW1-XSW8), plus plain tampering and the
    comment-truncation trick (CVE-2017-11427 and others): each tries to make the SP read
    `attacker` while a signature still verifies over the original elements."""

    def tree() -> tuple[etree._Element, etree._Element]:
        root = etree.fromstring(xml)
        return root, root.find(f"{{{SAML}}}Assertion")

    def evil_from(assertion: etree._Element) -> etree._Element:
        evil = copy.deepcopy(assertion)
        for signature in evil.findall(f"{{{DS}}}Signature"):
            evil.remove(signature)
        evil.set("ID", "_evil" + evil.get("ID", ""))
        evil.find(f".//{{{SAML}}}NameID").text = attacker
        return evil

    attacks = {}
    root, assertion = tree()
    assertion.find(f".//{{{SAML}}}NameID").text = attacker
    attacks["tampered NameID"] = root
    root, assertion = tree()
    name_id = assertion.find(f".//{{{SAML}}}NameID")
    name_id.text = attacker
    name_id.append(etree.Comment(""))
    name_id[-1].tail = name_id.get("unused", "") + ".x"
    attacks["comment in NameID"] = root
    # XSW1/XSW2: a new unsigned Response around the evil assertion, the signed original
    # kept inside it (after it, or inside its Signature).
    for name, into_signature in (("XSW1", False), ("XSW2", True)):
        root, assertion = tree()
        evil_root = copy.deepcopy(root)
        evil_root.set("ID", "_evil" + root.get("ID", ""))
        for signature in evil_root.findall(f"{{{DS}}}Signature"):
            evil_root.remove(signature)
        evil_root.replace(evil_root.find(f"{{{SAML}}}Assertion"), evil_from(assertion))
        if into_signature:
            signature = copy.deepcopy(root.find(f"{{{DS}}}Signature"))
            signature.append(root)
            evil_root.insert(1, signature)
        else:
            evil_root.append(root)
        attacks[name] = evil_root
    # XSW3: the evil assertion before the signed one; XSW4: the evil one wraps it;
    # XSW5-ish: the signed one inside the evil one's Subject; XSW7: moved to Extensions.
    root, assertion = tree()
    root.insert(root.index(assertion), evil_from(assertion))
    attacks["XSW3"] = root
    root, assertion = tree()
    evil = evil_from(assertion)
    root.replace(assertion, evil)
    evil.append(assertion)
    attacks["XSW4"] = root
    root, assertion = tree()
    evil = evil_from(assertion)
    root.replace(assertion, evil)
    evil.find(f"{{{SAML}}}Subject").append(assertion)
    attacks["XSW5"] = root
    root, assertion = tree()
    evil = evil_from(assertion)
    root.replace(assertion, evil)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    extensions.append(assertion)
    root.insert(1, extensions)
    attacks["XSW7"] = root
    return {name: etree.tostring(root) for name, root in attacks.items()}


@pytest.mark.parametrize("sp", ["mellon", "shib"])
def test_sp_checks_refuse_wrapping_replay_and_another_audience(world: World, sp: str) -> None:
    """The checks the gateway depends on at the SP side, with responses it really issued."""
    app = world.sps.mellon_app if sp == "mellon" else world.sps.shib_app
    other = world.sps.shib_app if sp == "mellon" else world.sps.mellon_app
    attacker = "bob@corp.example" if sp == "mellon" else "0" * 64

    def signed_in(client: httpx.Client) -> str:
        page = client.get(app)
        return page.text if page.status_code == 200 and "user=" in page.text else ""

    with world.client() as client:
        sign_in(client, world.portal, "alice")
        # A genuine response works once, and only once.
        genuine = issued(client, app, world.served.port)
        with world.client() as first:
            first.cookies = client.cookies
            genuine.post(first)
            assert "alice" in signed_in(first)
        with world.client() as replayer:
            replayer.cookies = client.cookies
            genuine.post(replayer)
            assert not signed_in(replayer)
        # Wrapped and tampered ones never (the SP's replay cache may see their ids first,
        # so each attack gets a response of its own).
        for name in wrapping_attacks(genuine.response, attacker):
            fresh = issued(client, app, world.served.port)
            with world.client() as victim:
                victim.cookies = client.cookies  # as the browser that started the sign-in
                fresh.post(victim, wrapping_attacks(fresh.response, attacker)[name])
                assert attacker not in signed_in(victim), name
        # Another SP's response (its audience) is refused.
        foreign = issued(client, other, world.served.port)
        fresh = issued(client, app, world.served.port)
        with world.client() as victim:
            victim.cookies = client.cookies
            Posted(fresh.acs, foreign.response, fresh.relay_state).post(victim)
            assert not signed_in(victim)


def test_signing_out_at_an_sp_ends_the_gateway_session(world: World) -> None:
    """SP-initiated single logout: mellon's LogoutRequest (signed) ends the gateway session."""
    mellon = f"https://127.0.0.1:{world.sps.mellon_port}"
    with world.client() as client:
        sign_in(client, world.portal, "alice")
        issued(client, world.sps.mellon_app, world.served.port).post(client)
        assert "nameid=alice@corp.example" in client.get(world.sps.mellon_app).text
        done = f"{mellon}/signed-out"  # not under /app: that would sign in again
        out = client.get(
            f"{mellon}/mellon/logout", params={"ReturnTo": done}, follow_redirects=True
        )
        assert str(out.url) == done, out.text[:300]
        portal = client.get(world.portal)
        assert portal.status_code == 302 and portal.headers["location"].startswith(
            world.served.issuer
        )
        assert client.get(world.sps.mellon_app).status_code in (302, 303)
    assert "GET /mellon/logout?SAMLResponse=" in world.sps.access_log()
