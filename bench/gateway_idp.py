"""What one sign-in costs the gateway as identity provider, in process (no network).

SAML: an SP made with pysaml2 sends an AuthnRequest (HTTP-Redirect, unsigned, then signed);
the gateway checks it and issues the signed response (response and assertion, RSA-SHA256,
RSA 3072 by xmlsec1). OIDC: authorization request check, code, then the token request
(client_secret_basic, PKCE) with an RS256 ID token. Figures vary with load (printed).

    .venv/bin/python bench/gateway_idp.py --rounds 30
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.xmldsig import SIG_RSA_SHA256

from gateway import idp_key
from gateway.config import Idp, OidcClient, SamlSp
from gateway.op import Client, Grantee, OpenIdProvider
from gateway.saml_idp import XMLSEC, SamlIdp

BASE = "https://gw.example"
REDIRECT = "https://tickets.example/cb"


def timed(rounds: int, work: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(what: str, times: list[float]) -> None:
    print(
        f"{what:<44} median {statistics.median(times):7.1f} ms   "
        f"max {max(times):7.1f} ms   ({len(times)} rounds)"
    )


def saml(tmp: Path, rounds: int) -> None:
    now = datetime.datetime.now(datetime.UTC)
    sp_key = idp_key.load(Idp(dev_dir=tmp / "sp"), "sp", now)
    settings: dict[str, object] = {
        "entityid": "https://sp.example/sp",
        "xmlsec_binary": XMLSEC,
        "key_file": str(sp_key.key_file),
        "cert_file": str(sp_key.cert_file),
        "service": {
            "sp": {
                "endpoints": {
                    "assertion_consumer_service": [("https://sp.example/acs", BINDING_HTTP_POST)]
                },
                "authn_requests_signed": True,
            }
        },
    }
    config = SPConfig()
    config.load(settings)
    metadata = create_metadata_string(None, config=config, valid=None)
    sp_xml = metadata.decode() if isinstance(metadata, bytes) else str(metadata)
    key = idp_key.load(Idp(dev_dir=tmp / "idp"), "gw.example", now)
    sps = {"hr": (SamlSp(metadata="https://sp.example/md", attributes={"mail": "email"}), sp_xml)}
    idp = SamlIdp(f"{BASE}/.overcast/saml/metadata", BASE, key, sps, 300)
    config = SPConfig()
    config.load(settings | {"metadata": {"inline": [idp.metadata()]}})
    client = Saml2Client(config=config)

    def request() -> dict[str, str]:
        _, message = client.create_authn_request(f"{BASE}/.overcast/saml/sso")
        info = client.apply_binding(
            BINDING_HTTP_REDIRECT, str(message), f"{BASE}/.overcast/saml/sso", "r",
            sign=True, sigalg=SIG_RSA_SHA256,
        )  # fmt: skip
        location = dict(info["headers"])["Location"]
        from urllib.parse import parse_qsl, urlsplit

        return dict(parse_qsl(urlsplit(location).query))

    queries = [request() for _ in range(rounds)]
    pending = iter(queries)
    report(
        "SAML: signed AuthnRequest checked",
        timed(rounds, lambda: idp.parse(BINDING_HTTP_REDIRECT, next(pending))),
    )
    checked = [idp.parse(BINDING_HTTP_REDIRECT, request()) for _ in range(rounds)]
    ready = iter(checked)
    report(
        "SAML: response + assertion signed",
        timed(
            rounds,
            lambda: idp.respond(
                next(ready), "sid", "alice", "alice@corp.example", {"mail": "alice@corp.example"}
            ),
        ),
    )


def oidc(tmp: Path, rounds: int) -> None:
    now = datetime.datetime.now(datetime.UTC)
    key = idp_key.load(Idp(dev_dir=tmp / "idp"), "gw.example", now)
    settings = OidcClient(client_id="tickets", redirect_uris=(REDIRECT,))
    provider = OpenIdProvider(BASE, key, {"tickets": Client("tickets", settings, "s3cret")}, 300)
    grantee = Grantee("alice", {"email": "alice@corp.example"}, int(time.time()))
    basic = "Basic " + base64.b64encode(b"tickets:s3cret").decode()

    def sign_in() -> None:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = [
            ("response_type", "code"),
            ("client_id", "tickets"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email"),
            ("state", "s"),
            ("nonce", secrets.token_urlsafe(8)),
            ("code_challenge", challenge.decode().rstrip("=")),
            ("code_challenge_method", "S256"),
        ]
        grant = provider.check(f"{BASE}/.overcast/oidc/authorize", query, grantee)
        assert not hasattr(grant, "status"), grant
        answer = provider.authorize(grant, grantee)  # type: ignore[arg-type]
        code = dict(answer.headers)["Location"].split("code=")[1].split("&")[0]
        form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ]
        token = provider.token(f"{BASE}/.overcast/oidc/token", {"Authorization": basic}, form)
        assert token.status == 200 and "id_token" in token.body, token

    report("OIDC: authorize + code + token + ID token", timed(rounds, sign_in))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        saml(Path(tmp), args.rounds)
        oidc(Path(tmp), args.rounds)


if __name__ == "__main__":
    main()
