"""Session cookies: sealed, bound to their name, rotated by key id, revocable."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.session import (
    COOKIE,
    KeyRing,
    KeyRingError,
    Session,
    SessionCodec,
    SessionStore,
    cookie_value,
    set_cookie,
)

NOW = 1_800_000_000


def session(**changes: object) -> Session:
    base = Session(
        sid="s1",
        sub="alice",
        claims={"email": "alice@corp.example", "groups": ["sales"]},
        issued_at=NOW,
        expires_at=NOW + 3600,
        refresh_at=NOW + 300,
        idp_sid="idp-1",
        id_token="eyJ.id.token",
        refresh_token="rt",
    )
    return base.refreshed(**changes)


@pytest.fixture
def codec() -> SessionCodec:
    return SessionCodec(KeyRing.generate(), SessionStore())


def test_round_trip(codec: SessionCodec) -> None:
    s = session()
    assert codec.open(codec.seal(s), NOW) == s


def test_expired_is_not_signed_in(codec: SessionCodec) -> None:
    assert codec.open(codec.seal(session()), NOW + 3600) is None


def flip(value: str, at: int) -> str:
    kid, _, body = value.partition(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[at % len(raw)] ^= 1
    return f"{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


@given(st.integers(min_value=0, max_value=10_000))
def test_any_flipped_bit_is_not_signed_in(at: int) -> None:
    codec = SessionCodec(KeyRing({"k1": b"k" * 32}, "k1"), SessionStore())
    assert codec.open(flip(codec.seal(session()), at), NOW) is None


@pytest.mark.parametrize(
    "value",
    ["", ".", "k1", "k1.", "nokey.AAAA", "k1.!!!!", "k1.AAAA", "k1." + "A" * 20000, "\x00"],
)
def test_garbage_is_not_signed_in(value: str) -> None:
    codec = SessionCodec(KeyRing({"k1": b"k" * 32}, "k1"), SessionStore())
    assert codec.open(value, NOW) is None


def test_truncated_is_not_signed_in(codec: SessionCodec) -> None:
    value = codec.seal(session())
    for cut in range(1, len(value)):
        assert codec.open(value[:cut], NOW) is None


def test_name_is_bound(codec: SessionCodec) -> None:
    # The login cookie is sealed with the same keys; it must not open as a session.
    other = codec.keys.seal("__Host-overcast-login", session().encode())
    assert codec.open(other, NOW) is None


def test_sealed_non_session_json_is_not_signed_in(codec: SessionCodec) -> None:
    for body in (b"[]", b"{}", b'{"sid": 1}', b"not json", b'{"ref": 5}', b'{"ref": "nope"}'):
        assert codec.open(codec.keys.seal(COOKIE, body), NOW) is None


def test_key_rotation_keeps_old_cookies() -> None:
    old = KeyRing.parse("old " + base64.b64encode(b"o" * 32).decode())
    store = SessionStore()
    value = SessionCodec(old, store).seal(session())
    rotated = KeyRing.parse(
        "new "
        + base64.b64encode(b"n" * 32).decode()
        + "\nold "
        + base64.b64encode(b"o" * 32).decode()
    )
    codec = SessionCodec(rotated, store)
    assert codec.open(value, NOW) == session()
    assert codec.seal(session()).startswith("new.")
    retired = SessionCodec(KeyRing.parse("new " + base64.b64encode(b"n" * 32).decode()), store)
    assert retired.open(value, NOW) is None


@pytest.mark.parametrize(
    "text", ["", "# only a comment", "k1", "k1 short", "k/1 " + "A" * 44, "k1 AAAA\nk1 AAAA"]
)
def test_bad_key_file_names_the_fix(text: str) -> None:
    with pytest.raises(KeyRingError, match="KEY_ID BASE64"):
        KeyRing.parse(text)


def test_big_session_goes_server_side(codec: SessionCodec) -> None:
    big = session(claims={"groups": [f"group-{i:04d}" for i in range(600)]})
    value = codec.seal(big)
    assert len(value) < 300
    assert codec.open(value, NOW) == big
    # A fresh store (another process, a restart) does not know the reference.
    assert SessionCodec(codec.keys, SessionStore()).open(value, NOW) is None


def test_revocation(codec: SessionCodec) -> None:
    value = codec.seal(session())
    codec.store.revoke(idp_sid="idp-1", now=NOW + 1)
    assert codec.open(value, NOW + 2) is None
    other = codec.seal(session(sid="s2", idp_sid="idp-2"))
    codec.store.revoke(sub="alice", now=NOW + 3)
    assert codec.open(other, NOW + 4) is None
    # A login after the subject-wide logout is alive.
    later = codec.seal(session(sid="s3", idp_sid="idp-3", issued_at=NOW + 5))
    assert codec.open(later, NOW + 6) is not None
    codec.store.revoke(sid="s3", now=NOW + 7)
    assert codec.open(later, NOW + 8) is None


def test_refreshed_session_replaces_stale_cookie(codec: SessionCodec) -> None:
    stale = codec.seal(session())
    codec.store.remember(session(refresh_at=NOW + 900, refresh_token="rt2"))
    opened = codec.open(stale, NOW)
    assert opened is not None and opened.refresh_token == "rt2"


def test_cookie_attributes_and_parsing() -> None:
    header = set_cookie(COOKIE, "v", 60)
    for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
        assert attribute in header
    assert "Domain" not in header
    assert cookie_value(f"a=1; {COOKIE}=first; {COOKIE}=second", COOKIE) == "first"
    assert cookie_value("a=1", COOKIE) is None


def test_events_replicate_and_malformed_ones_are_refused() -> None:
    events: list[dict[str, object]] = []
    here = SessionStore(listener=events.append)
    there = SessionStore()
    ref = here.put(session())
    here.remember(session(refresh_at=NOW + 900))
    here.revoke(idp_sid="idp-9", now=NOW)
    assert all(there.apply(e) for e in json.loads(json.dumps(events)))
    assert there.get(ref) == session()
    assert there.latest(session()).refresh_at == NOW + 900
    assert not there.alive(session(idp_sid="idp-9"), NOW + 1)
    # An older refresh arriving late never replaces a newer one.
    assert there.apply({"op": "latest", "session": asdict(session(refresh_at=NOW + 400))})
    assert there.latest(session()).refresh_at == NOW + 900
    for bad in (
        {},
        {"op": "revoke", "at": "soon"},
        {"op": "revoke", "sid": 5, "at": NOW},
        {"op": "put", "session": {"sid": "x"}},
        {"op": "put", "session": asdict(session())},
        {"op": "drop", "session": asdict(session())},
    ):
        assert not there.apply(bad), bad
