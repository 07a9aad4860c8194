"""The gateway: section: safe defaults, and errors that name the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import GatewayConfig


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
        ({"apps": {"crm": {"upstream": "https://c", "host": "localhost"}}}, "own host"),
        ({"apps": {"crm": {"upstream": "https://c", "path_prefix": "api"}}}, "start with '/'"),
        ({"apps": {"crm": {"upstream": "https://c", "host": "a/b"}}}, "not a host name"),
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
