"""The gateway: section: safe defaults, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import GatewayConfig
from overcast import exitcodes
from overcast.cli import main


def test_minimal_section_gets_safe_defaults() -> None:
    gw = GatewayConfig.model_validate(
        {"issuer": "https://idp.example/", "apps": {"crm": {"upstream": "https://crm.example"}}}
    )
    assert gw.app_host("crm") == "crm.localhost"
    assert gw.listen != gw.metrics_listen
    assert gw.assertion_lifetime <= 60


@pytest.mark.parametrize(
    ("section", "fix"),
    [
        ({"issuer": "http://idp.example/"}, "https:// URL"),
        ({"apps": {"crm": {"upstream": "http://crm.example"}}}, "https:// URL"),
        ({"metrics_listen": "127.0.0.1:8443"}, "metrics are never public"),
        ({"listen": "8443"}, "ADDRESS:PORT"),
        ({"assertion_lifetime": 300}, "less than or equal to 60"),
        ({"tls": {"cert": "/x.pem"}}, "both tls.cert and tls.key"),
        ({"limits": {"tls_handshake_timeout": 0}}, "greater than 0"),
        ({"limits": {"keep_alive_timeout": "soon"}}, "valid number"),
        ({"limits": {"max_connections": 0}}, "greater than or equal to 1"),
        ({"apps": {"crm": {"upstream": "https://c", "host": "localhost"}}}, "own host"),
        ({"apps": {"crm": {"upstream": "https://c", "path_prefix": "api"}}}, "start with '/'"),
        ({"apps": {"crm": {"upstream": "https://c", "host": "a/b"}}}, "not a host name"),
        ({"apps": {"crm": {"upstream": "https://c", "strip_headers": ["*"]}}}, "X-Acme-\\*"),
        ({"apps": {"crm": {"upstream": "https://c", "strip_headers": ["X-A*b"]}}}, "only at"),
        ({"apps": {"crm": {"upstream": "https://c", "strip_headers": ["X Id"]}}}, "header name"),
        (
            {
                "apps": {
                    "a": {"upstream": "https://a", "host": "x.example"},
                    "b": {"upstream": "https://b", "host": "X.example."},
                }
            },
            "both claim x.example/",
        ),
    ],
)
def test_bad_section_names_the_fix(section: dict[str, object], fix: str) -> None:
    with pytest.raises(ValidationError, match=fix):
        GatewayConfig.model_validate({"issuer": "https://idp.example/"} | section)


def test_strip_headers_folded_into_names_and_prefixes() -> None:
    gw = GatewayConfig.model_validate(
        {
            "issuer": "https://idp.example/",
            "apps": {
                "crm": {
                    "upstream": "https://crm.example",
                    "strip_headers": ["X_Employee_Id", "X-Acme-*"],
                }
            },
        }
    )
    app = gw.apps["crm"]
    assert app.strip_names == {"x-employee-id"} and app.strip_prefixes == ("x-acme-",)


def test_validate_names_a_bad_strip_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "overcast.yaml"
    path.write_text(
        "gateway:\n"
        "  issuer: https://idp.example/\n"
        "  apps:\n"
        "    crm:\n"
        "      upstream: https://crm.example\n"
        "      strip_headers: [X-Employee-Id, 'X Acme']\n"
    )
    assert main(["validate", str(path)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert "gateway.apps.crm.strip_headers" in err and "'X Acme'" in err
    assert "Traceback" not in err
