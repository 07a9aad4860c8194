"""gateway.headers: no client-sent identity reaches an upstream."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.headers import strip_cookie, strip_identity_headers


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


_IDENTITY = [
    "x-forwarded-email",
    "x-forwarded-user",
    "x-auth-request-email",
    "x-pomerium-jwt-assertion",
    "x-overcast-jwt-assertion",
    "authorization",
    "x-forwarded-uri",
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_IDENTITY), st.lists(st.booleans(), min_size=40, max_size=40), st.data())
def test_fuzz_every_spelling_is_stripped(name: str, upper: list[bool], data: st.DataObject) -> None:
    spelled = "".join(
        (c.upper() if up else c) if c != "-" else data.draw(st.sampled_from("-_"))
        for c, up in zip(name, upper, strict=False)
    )
    assert strip_identity_headers([(spelled.encode(), b"x")]) == []
