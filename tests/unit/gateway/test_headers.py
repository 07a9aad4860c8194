"""gateway.headers: no client-sent identity reaches an upstream."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.headers import fold, strip_cookie, strip_identity_headers
from gateway.identity_headers import FAMILIES, Family


@pytest.mark.parametrize(
    "name",
    [
        b"x-forwarded-email",
        b"X-Forwarded-Email",
        b"x_forwarded_email",
        b"X_FORWARDED_EMAIL",
        b"x-forwarded_email",
        b"x-forwarded-user",
        b"x-forwarded-groups",
        b"x-forwarded-preferred-username",
        b"x-forwarded-access-token",
        b"x-forwarded-uri",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"forwarded",
        b"x-real-ip",
        b"x-auth-request-email",
        b"x_auth_request_user",
        b"x-pomerium-jwt-assertion",
        b"x-pomerium-claim-email",
        b"x-overcast-assertion",
        b"X_Overcast_Identity",
        b"authorization",
        b"proxy-authorization",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-http-method-override",
        b"remote-user",
        b"x-remote-user",
        b"x-ssl-client-s-dn",
        b"x-forwarded-client-cert",
        b"x-client-cert",
        b"x-amzn-oidc-identity",
        b"x-authelia-user",
        b"x forwarded email",  # not a token: dropped rather than guessed at
        b"x-forwarded-email ",
    ],
)
def test_identity_header_is_stripped(name: bytes) -> None:
    out = strip_identity_headers([(name, b"admin@corp.example"), (b"accept", b"*/*")])
    assert out == [(b"accept", b"*/*")]


def test_ordinary_headers_pass_in_order() -> None:
    headers = [(b"accept", b"text/html"), (b"user-agent", b"t"), (b"x-request-id", b"42")]
    assert strip_identity_headers(headers) == headers


def test_authorization_kept_only_when_configured() -> None:
    headers = [(b"authorization", b"Bearer app-token"), (b"proxy-authorization", b"x")]
    assert strip_identity_headers(headers, keep_authorization=True) == headers[:1]


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (b"__Host-overcast=abc", None),
        (b"a=1; __Host-overcast=abc; b=2", b"a=1; b=2"),
        (b"__host-OVERCAST=abc;theme=dark", b"theme=dark"),
        (b"__Host-overcast-1=chunk; __Host-overcast-2=chunk", None),
        (b"__Host-overcastle=keep", b"__Host-overcastle=keep"),
        (b"theme=dark", b"theme=dark"),
    ],
)
def test_gateway_cookie_removed(value: bytes, kept: bytes | None) -> None:
    out = strip_identity_headers([(b"cookie", value)])
    assert out == ([] if kept is None else [(b"cookie", kept)])


def test_strip_cookie_custom_name() -> None:
    assert strip_cookie(b"sid=1; app=2", ["sid"]) == b"app=2"


def family_headers() -> list[str]:
    """Every exact name, and a name under every prefix, of every family (folded)."""
    return sorted(
        {n for f in FAMILIES for n in f.names} | {p + "user" for f in FAMILIES for p in f.prefixes}
    )


def spellings(name: str) -> list[str]:
    """The spellings a server may read as the same name (RFC 9110 section 5.1: case does not
    matter; CGI-style servers map '-' and '_' to one variable)."""
    title = "-".join(part.capitalize() for part in name.split("-"))
    return [name, name.upper(), title, name.replace("-", "_"), title.replace("-", "_").upper()]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_in_every_spelling_is_stripped(family: Family) -> None:
    names = [*family.names, *(p + "user" for p in family.prefixes), *family.prefixes]
    assert names, "a family with nothing to strip"
    for name in names:
        for spelled in spellings(name):
            out = strip_identity_headers([(spelled.encode(), b"forged"), (b"accept", b"*/*")])
            assert out == [(b"accept", b"*/*")], spelled


def test_every_family_cites_its_source() -> None:
    for family in FAMILIES:
        assert family.source and all(fold(n) == n for n in family.names), family.name
        assert all(fold(p) == p for p in family.prefixes), family.name


@pytest.mark.parametrize(
    "name",
    [b"accept-language", b"x-request-id", b"x-amzn-trace-id", b"x-goog-api-client", b"user-agent"],
)
def test_ordinary_look_alikes_pass(name: bytes) -> None:
    assert strip_identity_headers([(name, b"v")]) == [(name, b"v")]


def test_the_apps_own_names_and_prefixes_are_stripped_in_any_spelling() -> None:
    headers = [
        (b"X_EMPLOYEE_ID", b"7"),
        (b"x-acme-role", b"admin"),
        (b"X_Acme_Tenant", b"t"),
        (b"x-acmex", b"kept"),
    ]
    out = strip_identity_headers(
        headers, also_drop=frozenset({"x-employee-id"}), also_drop_prefixes=("x-acme-",)
    )
    assert out == [(b"x-acmex", b"kept")]


_IDENTITY = family_headers()


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(_IDENTITY), st.data())
def test_fuzz_every_spelling_is_stripped(name: str, data: st.DataObject) -> None:
    """Any name of any family, each letter in either case and each '-' as '-' or '_'."""
    spelled = "".join(
        data.draw(st.sampled_from("-_"))
        if c == "-"
        else (c.upper() if data.draw(st.booleans()) else c)
        for c in name
    )
    tail = data.draw(st.text("abcdefghijklmnopqrstuvwxyz-_", max_size=12))
    prefixed = any(name == p + "user" for f in FAMILIES for p in f.prefixes)
    spelled += tail if prefixed else ""
    assert strip_identity_headers([(spelled.encode(), b"x")]) == [], spelled
