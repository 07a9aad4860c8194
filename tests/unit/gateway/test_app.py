"""Pure pieces of the gateway app: Host parsing, identity from claims, WebSocket origin."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from gateway.app import (
    REQUESTS,
    DecisionLog,
    DecodedHeaders,
    _host_of,
    _same_origin,
    identity_of,
)
from gateway.proxy import Route
from gateway.request import Identity
from gateway.session import Session


@pytest.mark.parametrize(
    ("values", "host"),
    [
        ([b"CRM.Corp.Example"], "crm.corp.example"),
        ([b"crm.corp.example:8443"], "crm.corp.example"),
        ([b"crm.corp.example."], "crm.corp.example"),
        ([b"[2001:db8::1]:443"], "[2001:db8::1]"),
        ([], None),
        ([b"a.example", b"b.example"], None),  # RFC 9112 section 3.2: exactly one Host
        ([b""], None),
        ([b"[2001:db8::1"], None),
    ],
)
def test_host(values: list[bytes], host: str | None) -> None:
    assert _host_of(values) == host


def session(claims: dict[str, object]) -> Session:
    return Session("s", "alice", claims, 0, 10, 10)


@pytest.mark.parametrize("flag", ["true", 1, "yes", None])
def test_only_json_true_verifies_an_email(flag: object) -> None:
    identity = identity_of(session({"email": "alice@corp.example", "email_verified": flag}))
    assert identity.email_verified is False


def test_identity_from_claims() -> None:
    identity = identity_of(
        session({"email": "alice@corp.example", "email_verified": True, "groups": ["a", 5, "b"]})
    )
    assert identity.email_verified is True
    assert identity.groups == ("a", "b")
    assert identity_of(session({"groups": "sales"})).groups == ()


@pytest.mark.parametrize(
    ("origin", "same"),
    [
        (None, True),
        (b"https://crm.corp.example", True),
        (b"https://crm.corp.example:8443", True),
        (b"https://CRM.corp.example", True),
        (b"https://evil.example", False),
        (b"https://crm.corp.example.evil.example", False),
        (b"null", False),
    ],
)
def test_websocket_origin(origin: bytes | None, same: bool) -> None:
    headers = [(b"origin", origin)] if origin is not None else []
    assert _same_origin(headers, "crm.corp.example") is same


def test_decisions_are_json_lines_written_once_per_loop_turn() -> None:
    stream = io.StringIO()
    log = DecisionLog(stream)

    async def burst() -> str:
        for i in range(3):
            log.emit({"event": "decision", "allowed": i == 1, "reason": f"r{i}"})
        written_during_turn = stream.getvalue()
        await asyncio.sleep(0)
        return written_during_turn

    assert asyncio.run(burst()) == ""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [d["reason"] for d in lines] == ["r0", "r1", "r2"]
    DecisionLog(None).emit({"event": "decision"})  # no stream: nothing, no error


@pytest.mark.parametrize(
    ("identity", "path", "reason"),
    [
        (None, "/", "denied: not signed in"),
        (Identity("alice", "alice@corp.example"), "/a%22b", 'allowed: "quoted" \\ back'),
        (Identity("bj\u00f6rn\u2028", None), "/\u00e9\n", "denied: r\u00e9ason\t"),
    ],
)
def test_a_decision_line_is_what_json_dumps_writes(
    identity: Identity | None, path: str, reason: str
) -> None:
    stream = io.StringIO()
    log = DecisionLog(stream)
    route = Route("crm", "crm.corp.example", "/", "https://crm.internal")

    async def one() -> None:
        log.decision(route, "GET", path, "192.0.2.7", identity, identity is not None, reason)
        await asyncio.sleep(0)

    asyncio.run(one())
    expected = {
        "event": "decision",
        "app": "crm",
        "host": "crm.corp.example",
        "method": "GET",
        "path": path,
        "client_ip": "192.0.2.7",
        "sub": identity.sub if identity else None,
        "email": identity.email if identity else None,
        "allowed": identity is not None,
        "reason": reason,
    }
    assert stream.getvalue() == json.dumps(expected) + "\n"


def test_policy_headers_decode_like_a_dict_of_the_pairs() -> None:
    raw = [(b"accept", b"*/*"), (b"x-team", b"caf\xe9"), (b"accept", b"text/html")]
    lazy = DecodedHeaders(raw)
    assert dict(lazy) == {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    assert lazy["x-team"] == "caf\u00e9"
    assert "cookie" not in lazy
    assert len(lazy) == 2


def test_decisions_are_counted_once_per_loop_turn() -> None:
    log = DecisionLog(None)  # no log stream: still counted
    route = Route("counted-app", "crm.corp.example", "/", "https://crm.internal")
    allowed = REQUESTS.labels("counted-app", "allow")
    before = allowed._value.get()

    async def burst() -> float:
        for _ in range(3):
            log.decision(route, "GET", "/", "192.0.2.7", None, True, "allowed")
        log.decision(route, "GET", "/", "192.0.2.7", None, False, "denied")
        during = allowed._value.get()
        await asyncio.sleep(0)
        return float(during)

    assert asyncio.run(burst()) == before
    assert allowed._value.get() == before + 3
    assert REQUESTS.labels("counted-app", "deny")._value.get() == 1
