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

from gateway.identity_headers import FAMILIES

Headers = list[tuple[bytes, bytes]]

GATEWAY_COOKIE = "__Host-overcast"

# Every family's exact names and prefixes (folded), see gateway.identity_headers.
_IDENTITY_NAMES = frozenset().union(*(f.names for f in FAMILIES))
_IDENTITY_PREFIXES = tuple(sorted({p for f in FAMILIES for p in f.prefixes}))

# RFC 9110 section 5.1: field-name = token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@functools.lru_cache(maxsize=1024)  # a proxy folds the same few names on every request
def fold(name: bytes | str) -> str:
    """A header name as a server that maps `_` to `-` and ignores case would see it."""
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    return text.strip().lower().replace("_", "-")


def is_identity_header(name: bytes | str, *, keep_authorization: bool = False) -> bool:
    """Whether a client's header of this name could claim an identity, a path or an address
    (any spelling of a name or prefix in `gateway.identity_headers.FAMILIES`)."""
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
    also_drop_prefixes: tuple[str, ...] = (),
) -> Headers:
    """`headers` without identity headers, malformed names, the gateway's cookies, and the
    fields whose folded names are in `also_drop` or start with one of `also_drop_prefixes`.

    `keep_authorization` passes the client's `Authorization` through, for an app that has
    its own API tokens; off by default so a user's bearer token never reaches an upstream
    that did not ask for it. Cookies named `NAME` or `NAME-<chunk>` are removed.
    """
    names = tuple(cookie_names)
    out: Headers = []
    for name, value in headers:
        folded = fold(name)
        if (
            folded in also_drop
            or _dropped(name, keep_authorization)
            or (also_drop_prefixes and folded.startswith(also_drop_prefixes))
        ):
            continue
        if folded == "cookie":
            value = _strip_cookie(value, names)
            if not value:
                continue
        out.append((name, value))
    return out
