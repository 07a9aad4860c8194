"""gateway.policy: deny wins, default deny, unknown never allows, reasons say why."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import yaml

from gateway.policy import Policy


@dataclass(frozen=True)
class User:
    sub: str = "u1"
    email: str | None = "alice@corp.example"
    email_verified: bool = True
    groups: tuple[str, ...] = ("sales",)
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Req:
    method: str = "GET"
    path: str = "/"
    client_ip: str = "198.51.100.10"
    client_cert: Mapping[str, Any] | None = None
    identity: User | None = field(default_factory=User)


FP = "ab" * 32


def policy(text: str) -> Policy:
    return Policy.parse(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("rule", "request_", "allowed"),
    [
        ("email: alice@corp.example", Req(), True),
        ("email: ALICE@corp.example", Req(identity=User(email="Alice@Corp.Example")), True),
        ("email: [bob@corp.example]", Req(), False),
        ("email: {in: [bob@corp.example, alice@corp.example]}", Req(), True),
        ("domain: corp.example", Req(), True),
        ("domain: {is: corp.example}", Req(identity=User(email="a@evilcorp.example")), False),
        ("domain: corp.example", Req(identity=User(email="a@sub.corp.example")), False),
        ("groups: sales", Req(), True),
        ("groups: {has: admins}", Req(), False),
        ("groups: {any: [admins, sales]}", Req(), True),
        ("groups: {all: [admins, sales]}", Req(), False),
        ("claim/dept: emea", Req(identity=User(claims={"dept": "emea"})), True),
        ("claim/dept: {has: emea}", Req(identity=User(claims={"dept": ["us", "emea"]})), True),
        ("claim/dept: emea", Req(identity=User(claims={})), False),
        ("claim/dept: emea", Req(identity=User(claims={"dept": {"x": "emea"}})), False),
        ("authenticated: true", Req(), True),
        ("authenticated: true", Req(identity=None), False),
        ("anyone: true", Req(identity=None), True),
        ("method: [GET, HEAD]", Req(method="get"), True),
        ("method: {is: GET}", Req(method="POST"), False),
        ("path: {prefix: /docs}", Req(path="/docs"), True),
        ("path: {prefix: /docs}", Req(path="/docs/a"), True),
        ("path: {prefix: /docs/}", Req(path="/docs"), True),
        ("path: {prefix: /docs}", Req(path="/docsecret"), False),
        ("path: {exact: /ping}", Req(path="/ping/"), False),
        ("path: {prefix: /%64ocs}", Req(path="/docs/x"), True),
        ("source_ip: 198.51.100.0/24", Req(), True),
        ("source_ip: {in: [203.0.113.0/24, 2001:db8::/32]}", Req(), False),
        ("source_ip: 2001:db8::/32", Req(client_ip="2001:db8::5"), True),
        ("source_ip: 198.51.100.0/24", Req(client_ip="garbage"), False),
        (f"client_certificate: {{fingerprint: '{FP}'}}", Req(), False),
        (f"client_certificate: {{fingerprint: '{FP}'}}", Req(client_cert={"sha256": FP}), True),
        (
            "client_certificate: {fingerprint: '"
            + ":".join([FP[i : i + 2] for i in range(0, 64, 2)]).upper()
            + "'}",
            Req(client_cert={"sha256": FP}),
            True,
        ),
        (
            "client_certificate: {subject: 'CN=alice,O=Corp'}",
            Req(client_cert={"sha256": FP, "subject": "CN=alice,O=Corp"}),
            True,
        ),
        (
            f"client_certificate: {{fingerprint: '{FP}', subject: 'CN=bob'}}",
            Req(client_cert={"sha256": FP, "subject": "CN=alice"}),
            False,
        ),
        ("and: [{groups: sales}, {method: GET}]", Req(), True),
        ("and: [{groups: sales}, {method: POST}]", Req(), False),
        ("or: [{groups: admins}, {method: GET}]", Req(), True),
        ("[{groups: admins}, {method: GET}]", Req(), True),
        ("not: {groups: admins}", Req(), True),
    ],
)
def test_allow_criteria(rule: str, request_: Req, allowed: bool) -> None:
    decision = Policy.parse({"allow": yaml.safe_load(rule)}).decide(request_)
    assert decision.allowed is allowed, decision.reason


def test_deny_wins() -> None:
    p = policy("allow: {groups: sales}\ndeny: {path: {prefix: /admin}}")
    assert p.decide(Req(path="/deals")).allowed
    decision = p.decide(Req(path="/admin/users"))
    assert not decision.allowed
    assert decision.reason == "denied by deny rule: path under ['/admin']"


def test_default_deny_reason() -> None:
    decision = policy("allow: {groups: admins}").decide(Req())
    assert not decision.allowed
    assert decision.reason.startswith("denied: no allow rule matched")


@pytest.mark.parametrize(
    "identity",
    [
        None,
        User(email_verified=False),
        User(email="alice@evil.example@corp.example"),
        User(email="alice@corp.example\n"),
        User(email="alice"),
        User(email=None),
    ],
)
def test_unknown_email_never_allows_even_under_not(identity: User | None) -> None:
    # The classic fail-open: `not: {email: mallory}` must not admit someone we cannot name.
    p = policy("allow: {not: {email: mallory@corp.example}}")
    assert not p.decide(Req(identity=identity)).allowed
    p = policy("allow: {domain: corp.example}")
    assert not p.decide(Req(identity=identity)).allowed


def test_unknown_triggers_deny() -> None:
    p = policy("allow: {anyone: true}\ndeny: {not: {domain: corp.example}}")
    assert p.decide(Req()).allowed
    for identity in (None, User(email_verified=False), User(email="a@evil@corp.example")):
        decision = p.decide(Req(identity=identity))
        assert not decision.allowed
        assert decision.reason.startswith("denied: deny rule cannot be ruled out")


def test_anonymous_reason_is_not_signed_in() -> None:
    assert policy("allow: {groups: sales}").decide(Req(identity=None)).reason == (
        "denied: not signed in"
    )


def test_reason_is_one_json_line() -> None:
    p = policy("allow: {or: [{groups: admins}, {and: [{groups: sales}, {method: GET}]}]}")
    decision = p.decide(Req())
    assert decision.allowed
    assert "groups include any of ['sales'] and method in ['GET']" in decision.reason
    line = json.dumps({"allowed": decision.allowed, "reason": decision.reason})
    assert "\n" not in line


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[]", "a policy is a mapping"),
        ("{deny: {anyone: true}}", "allow: missing"),
        ("{allow: {anyone: true}, alow: x}", "alow: unknown key"),
        ("{allow: {group: sales}}", "allow.group: unknown criterion 'group'"),
        ("{allow: {groups: sales, method: GET}}", "exactly one key"),
        ("{allow: {and: []}}", "allow.and: `and` takes a non-empty list"),
        ("{allow: {or: {groups: x}}}", "allow.or: `or` takes a non-empty list"),
        ("{allow: {not: [{groups: x}, {email: 5}]}}", "allow.not[1].email"),
        ("{allow: {email: not-an-email}}", "is not an email address"),
        ("{allow: {email: a@b@corp.example}}", "is not an email address"),
        ("{allow: {domain: '@corp.example'}}", "is not a domain"),
        ("{allow: {groups: {is: sales}}}", "use one of has, any, all"),
        ("{allow: {groups: []}}", "non-empty list"),
        ("{allow: {authenticated: false}}", "wrap it in `not:`"),
        ("{allow: {method: 'GET /'}}", "is not an HTTP method"),
        ("{allow: {path: /admin}}", "path: {prefix: /admin}"),
        ("{allow: {path: {regex: '^/a'}}}", "use one of prefix, exact"),
        ("{allow: {path: {prefix: '/a%2Fb'}}}", "path separator"),
        ("{allow: {source_ip: 198.51.100.1/24}}", "did you mean 198.51.100.0/24"),
        ("{allow: {source_ip: corp}}", "is not a prefix"),
        ("{allow: {client_certificate: {fingerprint: abc}}}", "SHA-256 fingerprint"),
        ("{allow: {client_certificate: {serial: 1}}}", "fingerprint and/or subject"),
        ("{allow: {'claim/': x}}", "name the claim"),
    ],
)
def test_parse_errors_name_key_and_fix(data: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Policy.parse(yaml.safe_load(data))
    assert message in str(err.value)


def test_pydantic_field_round_trip() -> None:
    from pydantic import ValidationError

    from overcast.model import Model

    class App(Model):
        policy: Policy

    app = App.model_validate({"policy": {"allow": {"groups": "sales"}}})
    assert app.policy.decide(Req()).allowed
    assert app.model_dump() == {"policy": {"allow": {"groups": "sales"}}}
    with pytest.raises(ValidationError, match="unknown criterion"):
        App.model_validate({"policy": {"allow": {"grops": "sales"}}})


def test_request_context_shape_is_accepted() -> None:
    p = policy("allow: {path: {prefix: /x}}")
    assert p.decide(replace(Req(), path="/x/y")).allowed
