"""Where the gateway may send a browser after sign-in or sign-out.

Open redirects in oauth2-proxy and Pomerium came from validators that asked "does this look
relative?" while browsers answered differently: `/\\evil`, `/%09/evil` and `/./\\evil` are
all `//evil` to a browser (the WHATWG URL parser reads `\\` as `/` and drops tab and
newline). So the rule here is narrow: the target is either a path on our own origin or an
`https` URL whose host is *exactly* one of the allowed hosts. Anything with a backslash, a
control character or whitespace (raw or percent-encoded), userinfo, or an odd scheme is
refused, and the answer is rebuilt from the parsed parts, never echoed.

>>> safe_redirect("/inbox?x=1", allowed_hosts=["crm.corp.example"])
'/inbox?x=1'
>>> safe_redirect("https://crm.corp.example.evil.example/", ["crm.corp.example"]) is None
True
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from gateway.paths import BadPath, normalise

MAX_REDIRECT = 2048

# Visible ASCII only; everything else must arrive percent-encoded.
_VISIBLE = re.compile(r"[\x21-\x7e]*")
# Percent-encoded control characters, space, backslash and DEL; browsers may decode them.
_ENCODED_BAD = re.compile(r"%(?:[01][0-9A-Fa-f]|20|5[Cc]|7[Ff])")
_HOST = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_QUERY_FRAGMENT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")


def _host_key(host: str, port: int | None) -> str:
    return host if port in (None, 443) else f"{host}:{port}"


def _allowed_keys(allowed_hosts: Iterable[str]) -> set[str]:
    keys = set()
    for entry in allowed_hosts:
        host, _, port = entry.strip().lower().partition(":")
        keys.add(_host_key(host, int(port) if port else None))
    return keys


def _tail(query: str, fragment: str) -> str | None:
    """The '?query#fragment' part, re-assembled, or None if it carries anything odd."""
    if not (_QUERY_FRAGMENT.fullmatch(query) and _QUERY_FRAGMENT.fullmatch(fragment)):
        return None
    return (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def _path(path: str) -> str | None:
    try:
        return normalise(path or "/")
    except BadPath:
        return None


def safe_redirect(target: str, allowed_hosts: Iterable[str]) -> str | None:
    """`target` rebuilt in a safe form, or None when it must not be followed.

    Relative targets must be absolute paths on our origin (`/x`, never `//x` or `x`).
    Absolute targets must be `https://HOST[:PORT]/...` with HOST:PORT exactly in
    `allowed_hosts` (no suffix or wildcard match; 443 is the default port).
    """
    if not target or len(target) > MAX_REDIRECT or not _VISIBLE.fullmatch(target):
        return None
    if "\\" in target or _ENCODED_BAD.search(target):
        return None
    try:
        url = urllib.parse.urlsplit(target)
    except ValueError:
        return None
    tail = _tail(url.query, url.fragment)
    if tail is None:
        return None
    if not url.scheme and not url.netloc:
        # A path on our own origin: exactly one leading '/', the next character not '/'.
        if not target.startswith("/") or target.startswith("//"):
            return None
        path = _path(url.path)
        return None if path is None else path + tail
    if url.scheme != "https" or not target.lower().startswith("https://"):
        return None
    return _absolute(url, tail, _allowed_keys(allowed_hosts))


def _absolute(url: urllib.parse.SplitResult, tail: str, allowed: set[str]) -> str | None:
    if "@" in url.netloc or not url.netloc:
        return None
    host, sep, port_text = url.netloc.lower().partition(":")
    if not _HOST.fullmatch(host):
        return None
    port: int | None = None
    if sep:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    key = _host_key(host, port)
    if key not in allowed:
        return None
    path = _path(url.path)
    return None if path is None else f"https://{key}{path}{tail}"
