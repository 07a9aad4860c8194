"""gateway.policy: deny wins, default deny, unknown never allows, reasons say why."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import Decision, Policy, Request
from gateway.request import Identity, RequestContext


def user(
    email: str | None = "alice@corp.example",
    email_verified: bool = True,
    groups: tuple[str, ...] = ("sales",),
    claims: Mapping[str, Any] | None = None,
) -> Identity:
    return Identity("u1", email, email_verified, groups, claims or {})


_ALICE = user()


def req(
    method: str = "GET",
    path: str = "/",
    client_ip: str = "198.51.100.10",
    client_cert: Mapping[str, Any] | None = None,
    identity: Identity | None = _ALICE,
) -> RequestContext:
    return RequestContext(
        method,
        "crm.corp.example",
        path,
        client_ip=client_ip,
        client_cert=client_cert,
        identity=identity,
    )


FP = "ab" * 32


def policy(text: str) -> Policy:
    return Policy.parse(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("rule", "request_", "allowed"),
    [
        ("email: alice@corp.example", req(), True),
        ("email: ALICE@corp.example", req(identity=user(email="Alice@Corp.Example")), True),
        ("email: [bob@corp.example]", req(), False),
        ("email: {in: [bob@corp.example, alice@corp.example]}", req(), True),
        ("domain: corp.example", req(), True),
        ("domain: {is: corp.example}", req(identity=user(email="a@evilcorp.example")), False),
        ("domain: corp.example", req(identity=user(email="a@sub.corp.example")), False),
        ("groups: sales", req(), True),
        ("groups: {has: admins}", req(), False),
        ("groups: {any: [admins, sales]}", req(), True),
        ("groups: {all: [admins, sales]}", req(), False),
        ("claim/dept: emea", req(identity=user(claims={"dept": "emea"})), True),
        ("claim/dept: {has: emea}", req(identity=user(claims={"dept": ["us", "emea"]})), True),
        ("claim/dept: emea", req(identity=user(claims={})), False),
        ("claim/dept: emea", req(identity=user(claims={"dept": {"x": "emea"}})), False),
        ("authenticated: true", req(), True),
        ("authenticated: true", req(identity=None), False),
        ("anyone: true", req(identity=None), True),
        ("method: [GET, HEAD]", req(method="get"), True),
        ("method: {is: GET}", req(method="POST"), False),
        ("path: {prefix: /docs}", req(path="/docs"), True),
        ("path: {prefix: /docs}", req(path="/docs/a"), True),
        ("path: {prefix: /docs/}", req(path="/docs"), True),
        ("path: {prefix: /docs}", req(path="/docsecret"), False),
        ("path: {exact: /ping}", req(path="/ping/"), False),
        ("path: {prefix: /%64ocs}", req(path="/docs/x"), True),
        ("source_ip: 198.51.100.0/24", req(), True),
        ("source_ip: {in: [203.0.113.0/24, 2001:db8::/32]}", req(), False),
        ("source_ip: 2001:db8::/32", req(client_ip="2001:db8::5"), True),
        ("source_ip: 198.51.100.0/24", req(client_ip="garbage"), False),
        (f"client_certificate: {{fingerprint: '{FP}'}}", req(), False),
        (f"client_certificate: {{fingerprint: '{FP}'}}", req(client_cert={"sha256": FP}), True),
        (
            "client_certificate: {fingerprint: '"
            + ":".join([FP[i : i + 2] for i in range(0, 64, 2)]).upper()
            + "'}",
            req(client_cert={"sha256": FP}),
            True,
        ),
        (
            "client_certificate: {subject: 'CN=alice,O=Corp'}",
            req(client_cert={"sha256": FP, "subject": "CN=alice,O=Corp"}),
            True,
        ),
        (
            f"client_certificate: {{fingerprint: '{FP}', subject: 'CN=bob'}}",
            req(client_cert={"sha256": FP, "subject": "CN=alice"}),
            False,
        ),
        ("and: [{groups: sales}, {method: GET}]", req(), True),
        ("and: [{groups: sales}, {method: POST}]", req(), False),
        ("or: [{groups: admins}, {method: GET}]", req(), True),
        ("[{groups: admins}, {method: GET}]", req(), True),
        ("not: {groups: admins}", req(), True),
    ],
)
def test_allow_criteria(rule: str, request_: RequestContext, allowed: bool) -> None:
    decision = Policy.parse({"allow": yaml.safe_load(rule)}).decide(request_)
    assert decision.allowed is allowed, decision.reason


def test_deny_wins() -> None:
    p = policy("allow: {groups: sales}\ndeny: {path: {prefix: /admin}}")
    assert p.decide(req(path="/deals")).allowed
    decision = p.decide(req(path="/admin/users"))
    assert not decision.allowed
    assert decision.reason == "denied by deny rule: path under ['/admin']"


def test_default_deny_reason() -> None:
    decision = policy("allow: {groups: admins}").decide(req())
    assert not decision.allowed
    assert decision.reason.startswith("denied: no allow rule matched")


@pytest.mark.parametrize(
    "identity",
    [
        None,
        user(email_verified=False),
        user(email="alice@evil.example@corp.example"),
        user(email="alice@corp.example\n"),
        user(email="alice"),
        user(email=None),
    ],
)
def test_unknown_email_never_allows_even_under_not(identity: Identity | None) -> None:
    # The classic fail-open: `not: {email: mallory}` must not admit someone we cannot name.
    p = policy("allow: {not: {email: mallory@corp.example}}")
    assert not p.decide(req(identity=identity)).allowed
    p = policy("allow: {domain: corp.example}")
    assert not p.decide(req(identity=identity)).allowed


def test_unknown_triggers_deny() -> None:
    p = policy("allow: {anyone: true}\ndeny: {not: {domain: corp.example}}")
    assert p.decide(req()).allowed
    for identity in (None, user(email_verified=False), user(email="a@evil@corp.example")):
        decision = p.decide(req(identity=identity))
        assert not decision.allowed
        assert decision.reason.startswith("denied: deny rule cannot be ruled out")


def test_no_allow_rule_means_nobody() -> None:
    for data in ({}, {"deny": {"groups": "contractors"}}):
        decision = Policy.parse(data).decide(req())
        assert decision == Decision(False, "denied: the app has no allow rule")


def test_anonymous_reason_is_not_signed_in() -> None:
    assert policy("allow: {groups: sales}").decide(req(identity=None)).reason == (
        "denied: not signed in"
    )


def test_reason_is_one_json_line() -> None:
    p = policy("allow: {or: [{groups: admins}, {and: [{groups: sales}, {method: GET}]}]}")
    decision = p.decide(req())
    assert decision.allowed
    assert "groups include any of ['sales'] and method in ['GET']" in decision.reason
    line = json.dumps({"allowed": decision.allowed, "reason": decision.reason})
    assert "\n" not in line


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[]", "a policy is a mapping"),
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
        (
            "{allow: {source_ip: 198.51.100.1/24}}",
            "allow.source_ip: '198.51.100.1/24' has host bits set; write the prefix 198.51.100.0/24",
        ),
        (
            "{allow: {source_ip: corp}}",
            "allow.source_ip: 'corp' is not an IP prefix; write it like 198.51.100.0/24 or",
        ),
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
    assert app.policy.decide(req()).allowed
    assert app.model_dump() == {"policy": {"allow": {"groups": "sales"}}}
    with pytest.raises(ValidationError, match="unknown criterion"):
        App.model_validate({"policy": {"allow": {"grops": "sales"}}})


def test_request_context_satisfies_the_policy_protocol() -> None:
    request: Request = req()._replace(path="/x/y")  # mypy checks the contract here
    assert policy("allow: {path: {prefix: /x}}").decide(request).allowed


def test_app_config_carries_its_policy() -> None:
    from pydantic import ValidationError

    from gateway.config import App

    app = App.model_validate(
        {
            "upstream": "https://crm.saas.example",
            "allow": {"groups": ["sales"]},
            "deny": {"path": {"prefix": "/admin"}},
        }
    )
    assert app.policy.decide(req(path="/deals")).allowed
    assert not app.policy.decide(req(path="/admin")).allowed
    assert not App.model_validate({"upstream": "https://c.example"}).policy.decide(req()).allowed
    with pytest.raises(ValidationError, match=r"allow\.grups: unknown criterion"):
        App.model_validate({"upstream": "https://c.example", "allow": {"grups": "x"}})


@pytest.mark.parametrize(
    "path", ["/ADMIN", "/Admin/users", "/admin;jsessionid=1/users", "/ADMIN;x"]
)
def test_case_and_params_variants_still_denied(path: str) -> None:
    p = policy("allow: {anyone: true}\ndeny: {path: {prefix: /admin}}")
    decision = p.decide(req(path=path))
    assert not decision.allowed, decision.reason


@pytest.mark.parametrize("path", ["/PUBLIC/x", "/public;x/y"])
def test_case_and_params_variants_never_allow(path: str) -> None:
    p = policy("allow: {and: [{path: {prefix: /public}}, {anyone: true}]}")
    assert p.decide(req(path="/public/x", identity=None)).allowed
    assert not p.decide(req(path=path, identity=None)).allowed


# Property: built from criteria about the user, with any nesting of and/or/not, no policy ever
# lets an anonymous request through, by allowing it or by failing to deny it (Kleene logic).
_ABOUT_THE_USER = [
    {"email": "alice@corp.example"},
    {"domain": "corp.example"},
    {"domain": "evil.example"},
    {"groups": "sales"},
    {"claim/dept": "emea"},
]


def _trees(leaves: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        st.sampled_from(leaves),
        lambda inner: st.one_of(
            st.builds(lambda r: {"not": r}, inner),
            st.builds(lambda rs: {"and": rs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda rs: {"or": rs}, st.lists(inner, min_size=1, max_size=3)),
        ),
        max_leaves=8,
    )


# `authenticated` is left out: it is a known fact for an anonymous request, so
# `not: {authenticated: true}` rightly admits exactly the signed-out.
_TREES = _trees(_ABOUT_THE_USER)


@settings(max_examples=300, deadline=None)
@given(_TREES)
def test_fuzz_anonymous_never_allowed_by_user_criteria(tree: dict[str, Any]) -> None:
    assert not Policy.parse({"allow": tree}).decide(req(identity=None)).allowed


@settings(max_examples=300, deadline=None)
@given(_TREES)
def test_fuzz_anonymous_never_escapes_a_deny_about_the_user(tree: dict[str, Any]) -> None:
    policy = Policy.parse({"allow": {"anyone": True}, "deny": tree})
    assert not policy.decide(req(identity=None)).allowed


@settings(max_examples=300, deadline=None)
@given(_TREES)
def test_fuzz_unverified_email_never_decides_by_address(tree: dict[str, Any]) -> None:
    # Whatever the tree says about email/domain, an unverified address must give the same
    # answer as no address at all.
    unverified = user(email="alice@corp.example", email_verified=False, groups=("sales",))
    absent = user(email=None, groups=("sales",))
    p = Policy.parse({"allow": tree})
    assert p.decide(req(identity=unverified)).allowed == p.decide(req(identity=absent)).allowed
