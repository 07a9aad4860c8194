"""The gateway's saas: apps (SAML SPs, OpenID relying parties): errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import GatewayConfig
from overcast import exitcodes
from overcast.cli import main

OIDC = {"client_id": "tickets", "redirect_uris": ["https://tickets.example/cb"]}


def gateway(saas: dict[str, object], **more: object) -> GatewayConfig:
    return GatewayConfig.model_validate({"issuer": "https://idp.example/", "saas": saas} | more)


@pytest.mark.parametrize(
    ("saas", "fix"),
    [
        ({"t": {"launch": "https://t.example/"}}, "exactly one of saml: or oidc:"),
        ({"t": {"oidc": OIDC}}, "needs launch"),
        ({"t": {"oidc": OIDC, "launch": "http://t.example/"}}, "https:// URL"),
        (
            {"t": {"oidc": OIDC | {"redirect_uris": ["http://t/cb"]}, "launch": "https://t/"}},
            "https:// URL",
        ),
        (
            {"t": {"oidc": OIDC | {"redirect_uris": ["https://t/cb#x"]}, "launch": "https://t/"}},
            "fragment",
        ),
        (
            {"t": {"oidc": OIDC | {"claims": {"sub": "email"}}, "launch": "https://t/"}},
            "set by the gateway",
        ),
        (
            {"t": {"oidc": OIDC | {"claims": {"mail": "e mail"}}, "launch": "https://t/"}},
            "not a claim name",
        ),
        (
            {
                "t": {
                    "oidc": OIDC | {"backchannel_logout_uri": "http://t/logout"},
                    "launch": "https://t/",
                }
            },
            "back-channel logout URI must",
        ),
        ({"t": {"saml": {"metadata": "/nonexistent/sp.xml"}}}, "does not exist"),
        ({"t": {"saml": {"metadata": "http://sp.example/md"}}}, "https:// URL"),
        ({"t": {"saml": {"metadata": "https://sp/md", "name_id": "x"}}}, "'email' or"),
        ({"t": {"saml": {"metadata": "https://sp/md"}, "allow": {"grups": "x"}}}, "unknown"),
        (
            {
                "a": {"oidc": OIDC, "launch": "https://a/"},
                "b": {"oidc": OIDC, "launch": "https://b/"},
            },
            "share client_id",
        ),
    ],
)
def test_bad_saas_app_names_the_fix(saas: dict[str, object], fix: str) -> None:
    with pytest.raises(ValidationError, match=fix):
        gateway(saas)


def test_saas_and_proxied_apps_need_distinct_names_and_one_worker() -> None:
    saml = {"saml": {"metadata": "https://sp.example/md"}}
    with pytest.raises(ValidationError, match="both in apps and saas"):
        gateway({"crm": saml}, apps={"crm": {"upstream": "https://crm.example"}})
    with pytest.raises(ValidationError, match="workers: 1"):
        gateway({"hr": saml}, workers=2, session_store="redis://127.0.0.1:6379/0")
    with pytest.raises(ValidationError, match=r"both idp\.key_file and idp\.cert_file"):
        gateway({"hr": saml}, idp={"key_file": "/k.pem"})


def test_validate_names_the_bad_saas_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "overcast.yaml"
    path.write_text(
        "gateway:\n"
        "  issuer: https://idp.example/\n"
        "  saas:\n"
        "    hr:\n"
        "      saml: {metadata: /nonexistent/hr-sp.xml}\n"
    )
    assert main(["validate", str(path)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert "gateway.saas.hr.saml.metadata" in err and "does not exist" in err
    assert "Traceback" not in err
