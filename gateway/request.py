"""What the gateway knows about one request when it decides: the policy's only input.

Built once per request by `gateway.app` after path normalisation, trusted-proxy resolution,
TLS client-certificate extraction and session lookup, so the policy decides on exactly what
the proxy forwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Identity:
    """A signed-in user, as the identity provider's ID token described them.

    `email_verified` is kept beside `email` because policy must never trust an unverified
    address (OpenID Connect Core 1.0 section 5.1).
    """

    sub: str
    email: str | None = None
    email_verified: bool = False
    groups: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)


class RequestContext(NamedTuple):
    """One HTTP request as policy sees it (a tuple: made for every request, and immutable).

    `host` is lower-cased with the port removed; `path` is the normalised path that is also
    forwarded upstream; `headers` keys are lower-case, values joined per RFC 9110 section 5.3;
    `client_ip` is the peer address after trusted-proxy resolution; `client_cert` is None or
    the verified TLS client certificate's details with the keys `subject` and `issuer`
    (RFC 4514 strings), `serial` (lower-case hex), `sha256` (lower-case hex fingerprint of
    the DER), `san_dns` and `san_email` (tuples of str); `identity` is None when the request
    carries no valid session.
    """

    method: str
    host: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = MappingProxyType({})
    client_ip: str = ""
    client_cert: Mapping[str, Any] | None = None
    identity: Identity | None = None
