"""Gateway sessions sealed in a cookie, with server-side revocation.

Cookie value: `<key id>.<base64url(nonce || ChaCha20-Poly1305 ciphertext)>` (RFC 8439).
The cookie name and the key id are the associated data, so a value moved to another cookie
or relabelled with another key id fails to open. Any value that does not open, parse or is
past its expiry means "not signed in": `open()` returns None, never raises.

Keys rotate by adding a new first line to the key ring; older keys keep opening cookies
until they are removed. Sessions whose sealed form would pass 4 KB (browsers' limit on one
cookie, RFC 6265 section 6.1) are kept in `SessionStore` and the cookie carries only a
sealed reference. Back-channel logout marks a session, an IdP session id or a whole subject
as revoked in the store, which `SessionStore.alive()` checks on every request.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

COOKIE = "__Host-overcast"
LOGIN_COOKIE = "__Host-overcast-login"
MAX_COOKIE_BYTES = 4096
OPENED_CACHE = 50_000  # cookie values whose sessions are kept decrypted in memory
_NONCE = 12
_KEY_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class KeyRingError(ValueError):
    """The session key file is unusable; the message names the line and the fix."""


@dataclass(frozen=True)
class KeyRing:
    """Session keys by id; `current` seals, every key opens."""

    keys: Mapping[str, bytes]
    current: str

    @classmethod
    def generate(cls) -> KeyRing:
        kid = secrets.token_hex(4)
        return cls({kid: ChaCha20Poly1305.generate_key()}, kid)

    @classmethod
    def parse(cls, text: str, source: str = "session keys") -> KeyRing:
        keys: dict[str, bytes] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            kid, _, encoded = line.strip().partition(" ")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                key = b""
            if not kid or not set(kid) <= _KEY_ID_CHARS or len(key) != 32 or kid in keys:
                raise KeyRingError(
                    f"{source}:{number}: expected 'KEY_ID BASE64_KEY' with a unique id of "
                    "letters, digits, '-' or '_' and a 32-byte key "
                    "(make one with: head -c32 /dev/urandom | base64)"
                )
            keys[kid] = key
        if not keys:
            raise KeyRingError(f"{source}: no keys; add a line 'KEY_ID BASE64_KEY'")
        return cls(keys, next(iter(keys)))

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyRingError(
                f"{path}: cannot read the session key file ({exc.strerror}); make one with: "
                f"overcast gateway new-session-key > {path}"
            ) from None
        except UnicodeDecodeError:
            raise KeyRingError(
                f"{path}: the session key file is not text; it holds 'KEY_ID BASE64_KEY' "
                "lines from overcast gateway new-session-key"
            ) from None
        return cls.parse(text, str(path))

    def seal(self, name: str, payload: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = ChaCha20Poly1305(self.keys[self.current]).encrypt(
            nonce, payload, _aad(name, self.current)
        )
        return f"{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def unseal(self, name: str, value: str) -> bytes | None:
        kid, _, body = value.partition(".")
        key = self.keys.get(kid)
        if key is None or not body or len(body) > 2 * MAX_COOKIE_BYTES:
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE + 16:
            return None
        try:
            return ChaCha20Poly1305(key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(name, kid))
        except InvalidTag:
            return None


def _aad(name: str, kid: str) -> bytes:
    return f"{name}\x00{kid}".encode()


@dataclass(frozen=True)
class Session:
    """One signed-in browser at one app host.

    `sid` is the gateway's opaque id; `idp_sid` is the identity provider's session id (the
    ID token's `sid` claim), which back-channel logout names.
    """

    sid: str
    sub: str
    claims: Mapping[str, Any]
    issued_at: int
    expires_at: int
    # When the tokens need refreshing (the access token's expiry).
    refresh_at: int
    idp_sid: str | None = None
    id_token: str = ""
    refresh_token: str | None = None
    access_token: str = field(default="", repr=False)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session | None:
        try:
            session = cls(**data)
        except TypeError:
            return None
        ints = (session.issued_at, session.expires_at, session.refresh_at)
        if not (
            isinstance(session.sid, str)
            and isinstance(session.sub, str)
            and isinstance(session.claims, dict)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ints)
        ):
            return None
        return session

    def refreshed(self, **changes: Any) -> Session:
        return replace(self, **changes)


@dataclass
class SessionStore:
    """Server-side state: oversized sessions, refreshed sessions and revocations.

    Every change is also handed to `listener` as an event (a JSON-able dict); `apply()`
    takes such events from other gateway processes (`gateway.session_sync`), so that a
    logout received by one process ends the session in all of them.
    """

    listener: Callable[[dict[str, Any]], None] | None = None
    _big: dict[str, Session] = field(default_factory=dict)
    _revoked_sids: dict[str, int] = field(default_factory=dict)
    _revoked_idp_sids: dict[str, int] = field(default_factory=dict)
    # sub -> time: every session of this subject issued at or before it is dead.
    _revoked_subs: dict[str, int] = field(default_factory=dict)
    _latest: dict[str, Session] = field(default_factory=dict)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.listener is not None:
            self.listener(event)

    def put(self, session: Session) -> str:
        ref = secrets.token_urlsafe(24)
        self._big[ref] = session
        self._emit({"op": "put", "ref": ref, "session": asdict(session)})
        return ref

    def get(self, ref: str) -> Session | None:
        return self._big.get(ref)

    def remember(self, session: Session) -> None:
        """Keep the newest form of a session, so a request with a stale cookie sees a refresh."""
        self._remember(session)
        self._emit({"op": "latest", "session": asdict(session)})

    def _remember(self, session: Session) -> None:
        if self.latest(session) is session:
            self._latest[session.sid] = session

    def latest(self, session: Session) -> Session:
        newer = self._latest.get(session.sid)
        return newer if newer is not None and newer.refresh_at > session.refresh_at else session

    def revoke(
        self,
        *,
        sid: str | None = None,
        idp_sid: str | None = None,
        sub: str | None = None,
        now: int,
    ) -> None:
        self._revoke(sid, idp_sid, sub, now)
        self._emit({"op": "revoke", "sid": sid, "idp_sid": idp_sid, "sub": sub, "at": now})

    def _revoke(self, sid: str | None, idp_sid: str | None, sub: str | None, now: int) -> None:
        for table, key in (
            (self._revoked_sids, sid),
            (self._revoked_idp_sids, idp_sid),
            (self._revoked_subs, sub),
        ):
            if key:
                table[key] = max(now, table.get(key, now))

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Take another process's change; False if the event is malformed (then ignored)."""
        op = event.get("op")
        if op == "revoke" and isinstance(event.get("at"), int):
            keys = [event.get(k) for k in ("sid", "idp_sid", "sub")]
            if all(k is None or isinstance(k, str) for k in keys):
                self._revoke(keys[0], keys[1], keys[2], event["at"])
                return True
            return False
        data = event.get("session")
        session = Session.from_dict(data) if isinstance(data, dict) else None
        if session is None:
            return False
        if op == "put" and isinstance(event.get("ref"), str):
            self._big[event["ref"]] = session
            return True
        if op == "latest":
            self._remember(session)
            return True
        return False

    def alive(self, session: Session, now: int) -> bool:
        if session.expires_at <= now or session.sid in self._revoked_sids:
            return False
        if session.idp_sid and session.idp_sid in self._revoked_idp_sids:
            return False
        cutoff = self._revoked_subs.get(session.sub)
        return cutoff is None or session.issued_at > cutoff

    def expire(self, now: int, horizon: int) -> None:
        """Forget entries older than `horizon` seconds (the longest session lifetime)."""
        for table in (self._revoked_sids, self._revoked_idp_sids, self._revoked_subs):
            for key in [k for k, t in table.items() if t + horizon < now]:
                del table[key]
        for big in (self._big, self._latest):
            for key in [k for k, s in big.items() if s.expires_at <= now]:
                del big[key]


@dataclass(frozen=True)
class SessionCodec:
    """Seals sessions into cookie values and opens them again."""

    keys: KeyRing
    store: SessionStore
    _opened: dict[str, Session] = field(default_factory=dict, compare=False, repr=False)

    def seal(self, session: Session) -> str:
        value = self.keys.seal(COOKIE, session.encode())
        if len(COOKIE) + 1 + len(value) <= MAX_COOKIE_BYTES - 100:  # room for attributes
            return value
        ref = self.store.put(session)
        body = json.dumps({"ref": ref, "exp": session.expires_at}).encode()
        return self.keys.seal(COOKIE, body)

    def open(self, value: str | None, now: int) -> Session | None:
        if not value:
            return None
        # Opening is decrypt + JSON parse; a browser sends the same value many times.
        session = self._opened.get(value) or self._unseal(value)
        if session is None:
            return None
        if len(self._opened) >= OPENED_CACHE:
            self._opened.clear()
        self._opened[value] = session
        # Revocation, refresh and expiry are checked on every request, cached or not.
        session = self.store.latest(session)
        return session if self.store.alive(session, now) else None

    def _unseal(self, value: str) -> Session | None:
        raw = self.keys.unseal(COOKIE, value)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        ref = data.get("ref")
        return self.store.get(ref) if isinstance(ref, str) else Session.from_dict(data)


def set_cookie(name: str, value: str, max_age: int, same_site: str = "Lax") -> str:
    """A Set-Cookie value with the `__Host-` rules (RFC 6265bis section 4.1.3.2)."""
    return f"{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite={same_site}"


def clear_cookie(name: str) -> str:
    return f"{name}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"


@functools.lru_cache(maxsize=1024)  # a browser sends the same Cookie header many times
def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header; the first one wins (RFC 6265 5.4)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip()
    return None
