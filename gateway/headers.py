"""Remove from a client's request everything an upstream could mistake for identity.

The upstream trusts the gateway's signed assertion and nothing else, so any header a client
could use to *claim* an identity, a path or an address is dropped before forwarding. Names
are compared after folding case and turning `_` into `-`: oauth2-proxy was bypassed with
`X_Forwarded_Email` because servers such as gunicorn, PHP and Rack map both spellings to the
same variable. The gateway's own session cookie is removed from `Cookie` too: the upstream
must never see (or leak) it.

Headers are ASGI pairs: `list[tuple[bytes, bytes]]`, names lower-case (ASGI spec).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

GATEWAY_COOKIE = "__Host-overcast"

# Exact names (folded) that carry identity, the original URL, or client addressing that the
# proxy recomputes itself (see gateway.forwarded).
_IDENTITY_NAMES = frozenset(
    {
        "proxy-authorization",
        "forwarded",
        "remote-user",
        "remote-addr",
        "x-remote-user",
        "x-remote-group",
        "x-remote-groups",
        "x-remote-email",
        "x-user",
        "x-username",
        "x-email",
        "x-groups",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "x-original-url",
        "x-original-uri",
        "x-original-method",
        "x-original-host",
        "x-rewrite-url",
        "x-envoy-original-path",
        "x-access-token",
        "x-id-token",
        "x-jwt-assertion",
        "x-userinfo",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)

# Folded name prefixes: whole families of identity or proxy-to-app headers.
_IDENTITY_PREFIXES = (
    "x-forwarded-",  # -email, -user, -groups, -uri, -for, -host, -proto, -access-token, ...
    "x-auth-request-",  # oauth2-proxy
    "x-pomerium-",
    "x-overcast-",
    "x-authenticated-",
    "x-webauth-",
    "x-ssl-client-",
    "ssl-client-",
    "x-client-cert",
    "x-client-verify",
    "x-tls-client-",
    "x-amzn-oidc-",
    "x-goog-authenticated-",
    "x-ms-client-principal",
    "cf-access-",
    "x-vouch-",
    "x-authelia-",
)

# RFC 9110 section 5.1: field-name = token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@functools.lru_cache(maxsize=1024)  # a proxy folds the same few names on every request
def fold(name: bytes | str) -> str:
    """A header name as a server that maps `_` to `-` and ignores case would see it."""
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    return text.strip().lower().replace("_", "-")


def is_identity_header(name: bytes | str, *, keep_authorization: bool = False) -> bool:
    folded = fold(name)
    if folded == "authorization":
        return not keep_authorization
    return folded in _IDENTITY_NAMES or folded.startswith(_IDENTITY_PREFIXES)


@functools.lru_cache(maxsize=1024)  # the same few names on every request
def _dropped(name: bytes, keep_authorization: bool) -> bool:
    """Whether a request header of this name never reaches an upstream."""
    malformed = not _TOKEN.fullmatch(name)
    return malformed or is_identity_header(name, keep_authorization=keep_authorization)


def strip_cookie(value: bytes, cookie_names: Iterable[str]) -> bytes:
    """`value` of a Cookie header without the named cookies (compared case-insensitively)."""
    return _strip_cookie(value, tuple(cookie_names))


@functools.lru_cache(maxsize=1024)  # a browser sends the same Cookie header many times
def _strip_cookie(value: bytes, cookie_names: tuple[str, ...]) -> bytes:
    drop = {n.lower() for n in cookie_names}
    kept = []
    for pair in value.split(b";"):
        name = pair.split(b"=", 1)[0].strip().decode("latin-1").lower()
        if name and name not in drop and not any(name.startswith(d + "-") for d in drop):
            kept.append(pair.strip())
    return b"; ".join(kept)


def strip_identity_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    cookie_names: Iterable[str] = (GATEWAY_COOKIE,),
    keep_authorization: bool = False,
    also_drop: frozenset[str] = frozenset(),
) -> Headers:
    """`headers` without identity headers, malformed names, the gateway's cookies, and the
    fields whose folded names are in `also_drop`.

    `keep_authorization` passes the client's `Authorization` through, for an app that has
    its own API tokens; off by default so a user's bearer token never reaches an upstream
    that did not ask for it. Cookies named `NAME` or `NAME-<chunk>` are removed.
    """
    names = tuple(cookie_names)
    out: Headers = []
    for name, value in headers:
        folded = fold(name)
        if folded in also_drop or _dropped(name, keep_authorization):
            continue
        if folded == "cookie":
            value = _strip_cookie(value, names)
            if not value:
                continue
        out.append((name, value))
    return out
