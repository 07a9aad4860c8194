"""A real browser (Debian Chromium, headless) signs in through `overcast gateway serve`.

The gateway runs as the CLI does in production (its own process, TLS, uvloop, a separate
metrics listener); the IdP is oidc-provider; the app is a TLS upstream on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.assertion import HEADER
from gateway.session import COOKIE
from lab.idp import JS, NODE
from tests.conftest import require
from tests.integration.gateway.sso_peers import (
    APP_HOST,
    GATEWAY_HOST,
    USERS,
    Served,
    cli_gateway,
    free_port,
    identity_provider,
    require_js,
    upstream_app,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    with (
        identity_provider(tmp, port) as issuer,
        upstream_app(tmp) as upstream,
        cli_gateway(tmp, issuer, port, upstream) as running,
    ):
        yield running


def spki_hash(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_signs_in_reaches_the_app_and_signs_out(served: Served, tmp_path: Path) -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing (apt-get install chromium)")
    require_js("playwright-core")
    app = f"https://{APP_HOST}:{served.port}/reports/q3"
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "app": app,
                "user": "alice",
                "password": USERS["alice"]["password"],
                "spki": spki_hash(served.ca.parent / "server.pem"),
            }
        )
    )
    run = subprocess.run(
        [str(NODE), str(JS / "browser_login.mjs"), str(job)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["landed"] == app
    seen = {k.lower(): v for k, v in result["app"]["headers"].items()}
    assert result["app"]["path"] == "/reports/q3" and seen[HEADER].count(".") == 2
    (cookie,) = [c for c in result["cookies"] if c["name"] == COOKIE]
    assert cookie == {
        "name": COOKIE,
        "domain": APP_HOST,
        "path": "/",
        "secure": True,
        "httpOnly": True,
        "sameSite": "Lax",
    }
    assert result["signed_out"].endswith("/.overcast/signed-out")
    # Signed out means the next visit goes back to the IdP.
    assert result["after_logout"].startswith(served.issuer)

    decisions = served.decisions()
    assert any(d["allowed"] and d["sub"] == "alice" for d in decisions)
    assert all(d["reason"] for d in decisions if d["event"] == "decision")


def test_metrics_only_on_their_own_listener(served: Served) -> None:
    public = httpx.get(f"https://{GATEWAY_HOST}:{served.port}/metrics", verify=served.trust())
    assert public.status_code == 404
    on_app_host = httpx.get(f"https://{APP_HOST}:{served.port}/metrics", verify=served.trust())
    assert on_app_host.status_code == 302  # an app path like any other: sign in first
    metrics = httpx.get(f"http://127.0.0.1:{served.metrics_port}/metrics")
    assert metrics.status_code == 200
    assert "overcast_gateway_requests_total" in metrics.text
