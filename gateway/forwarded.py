"""Who the client is when the gateway sits behind load balancers.

`X-Forwarded-For` is a list every hop appends to, so only the entries added by proxies we
run can be believed. Walk it from the right, skipping our own proxies; the first address
that is not one of ours is the client (the "rightmost untrusted" rule). Anything left of it
was written by the client and is ignored. `X-Forwarded-Proto` and `-Host` are believed only
when the TCP peer itself is a trusted proxy. With no trusted ranges configured (the
default) every `X-Forwarded-*` header is ignored.

>>> import ipaddress
>>> lb = [ipaddress.ip_network("10.0.0.0/8")]
>>> client_ip("10.0.0.5", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.4")], lb)
'203.0.113.9'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from gateway.headers import fold

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, ranges: Sequence[Network]) -> bool:
    return any(address in net for net in ranges)


def _values(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[str]:
    """All comma-separated items of every `name` header, in order received."""
    items: list[str] = []
    for key, value in headers:
        if fold(key) == name:
            items.extend(v.strip() for v in value.decode("latin-1").split(","))
    return items


def client_ip(
    peer_ip: str, headers: Iterable[tuple[bytes, bytes]], trusted_ranges: Sequence[Network]
) -> str:
    """The client's address: `peer_ip`, or the rightmost untrusted X-Forwarded-For entry."""
    if not trusted_ranges:
        return peer_ip  # the common case, and the hot path: nothing to believe
    peer = _parse(peer_ip)
    if peer is None or not _trusted(peer, trusted_ranges):
        return peer_ip
    nearest = peer
    for item in reversed(_values(headers, "x-forwarded-for")):
        address = _parse(item)
        if address is None:
            # Garbage can only come from the client side: stop at the last hop we believe.
            return str(nearest)
        if not _trusted(address, trusted_ranges):
            return str(address)
        nearest = address
    return str(nearest)


class Origin(NamedTuple):
    """What the client asked for, as seen at the first trusted hop (a tuple: made once per
    request, and immutable)."""

    client_ip: str
    proto: str
    host: str


def origin(
    peer_ip: str,
    scheme: str,
    host: str,
    headers: Iterable[tuple[bytes, bytes]],
    trusted_ranges: Sequence[Network],
) -> Origin:
    """Client address, scheme and host, believing `X-Forwarded-*` only from our proxies."""
    headers = list(headers)
    proto, forwarded_host = scheme, host
    peer = _parse(peer_ip) if trusted_ranges else None
    if peer is not None and _trusted(peer, trusted_ranges):
        protos = _values(headers, "x-forwarded-proto")
        if protos and protos[-1].lower() in ("http", "https"):
            proto = protos[-1].lower()
        hosts = _values(headers, "x-forwarded-host")
        if hosts and _HOST.fullmatch(hosts[-1]):
            forwarded_host = hosts[-1]
    return Origin(client_ip(peer_ip, headers, trusted_ranges), proto, forwarded_host.lower())
