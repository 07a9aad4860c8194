"""A real browser (Debian Chromium, headless) signs in through `overcast gateway serve`.

The gateway runs as the CLI does in production (its own process, TLS, uvloop, a separate
metrics listener); the IdP is oidc-provider; the app is a TLS upstream on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.assertion import HEADER
from gateway.session import COOKIE
from tests.conftest import require, require_binaries
from tests.integration.gateway.sso_peers import (
    APP_HOST,
    CLIENT_ID,
    CLIENT_SECRET,
    GATEWAY_HOST,
    JS,
    USERS,
    free_port,
    identity_provider,
    until,
    upstream_app,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[3]
# The CLI runs from the test's directory; it imports this checkout's code.
ENV = os.environ | {"PYTHONPATH": str(REPO)}


@dataclass
class Served:
    port: int
    metrics_port: int
    issuer: str
    ca: Path
    log: Path

    def decisions(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]


def write_config(tmp: Path, issuer: str, port: int, metrics_port: int, upstream: Any) -> Path:
    (tmp / "client-secret").write_text(CLIENT_SECRET)
    keys = subprocess.run(
        [sys.executable, "-m", "overcast", "gateway", "new-session-key"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    ).stdout
    (tmp / "session-keys").write_text(keys)
    config = {
        "sites": {"hq": {"role": "enterprise", "underlay": "192.0.2.1"}},
        "gateway": {
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "client_secret_file": str(tmp / "client-secret"),
            "issuer_ca": str(tmp / "ca" / "ca.pem"),
            "scopes": ["openid", "email", "profile", "groups"],
            "host": GATEWAY_HOST,
            "listen": f"127.0.0.1:{port}",
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "tls": {"dev_dir": str(tmp / "ca")},
            "session_keys_file": str(tmp / "session-keys"),
            "apps": {
                "crm": {
                    "host": APP_HOST,
                    "upstream": f"https://127.0.0.1:{upstream.port}",
                    "upstream_ca": str(upstream.ca),
                    "allow": {"groups": "sales"},
                }
            },
        },
    }
    path = tmp / "overcast.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("browser")
    port, metrics_port = free_port(), free_port()
    with identity_provider(tmp, port) as issuer, upstream_app(tmp) as upstream:
        config = write_config(tmp, issuer, port, metrics_port, upstream)
        log = tmp / "gateway.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "overcast", "gateway", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115 - closed with the process
            cwd=tmp,
            env=ENV,
        )
        try:
            trust = tmp / "ca" / "ca.pem"

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"gateway exited: {log.read_text()[-2000:]}")
                try:
                    url = f"https://{GATEWAY_HOST}:{port}/ready"
                    return httpx.get(url, verify=_context(trust)).status_code == 200
                except httpx.HTTPError:
                    return False

            until(ready, 30, "overcast gateway serve to be ready")
            yield Served(port, metrics_port, issuer, trust, log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def spki_hash(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_signs_in_reaches_the_app_and_signs_out(served: Served, tmp_path: Path) -> None:
    require_binaries("node")
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing (apt-get install chromium)")
    require((JS / "node_modules" / "playwright-core").is_dir(), "tests/js needs `npm ci`")
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
        [shutil.which("node") or "node", str(JS / "browser_login.mjs"), str(job)],
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
    public = httpx.get(f"https://{GATEWAY_HOST}:{served.port}/metrics", verify=_context(served.ca))
    assert public.status_code == 404
    on_app_host = httpx.get(f"https://{APP_HOST}:{served.port}/metrics", verify=_context(served.ca))
    assert on_app_host.status_code == 302  # an app path like any other: sign in first
    metrics = httpx.get(f"http://127.0.0.1:{served.metrics_port}/metrics")
    assert metrics.status_code == 200
    assert "overcast_gateway_requests_total" in metrics.text
