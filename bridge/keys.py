"""WireGuard keys: X25519 pairs generated and held by the enterprise.

The enterprise runs `KeyStore` on a machine it controls and generates one key pair per site,
provider sites included, so no cloud vendor ever chooses or sees a key it should not. What
is distributed:

- every site receives the *public* keys of its peers (in its `SitePlan`);
- a provider site receives exactly one private key, its own, delivered as a 0600 file to
  the host that terminates its tunnel, and nothing of any other site. Its key directory
  holds `<site>.key` plus the peers' `<peer>.pub` files, which is all `apply_site` needs.

Private keys stay in `<dir>/<site>.key` (mode 0600, directory 0700); they are never logged,
printed or put on a command line (`wg` reads them from stdin or a file).

Over a key's life: `rotate` replaces a site's pair (and re-admits a revoked site), `revoke`
deletes it and leaves `<site>.revoked` (its last public key) so no command regenerates it,
and `provision` writes a site's own key directory: its private key and its peers' public
keys, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from overcast.secretfile import ExposedSecretError, read_secret_file

KEY_BYTES = 32  # Curve25519 (RFC 7748 section 5)


class KeyStoreError(Exception):
    """A key file is missing, malformed or readable by others; the message says the fix."""


def generate_private_key() -> str:
    """A new base64 private key, clamped like `wg genkey` (RFC 7748 section 5)."""
    raw = bytearray(X25519PrivateKey.generate().private_bytes_raw())
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode()


def public_key_of(private_key: str) -> str:
    """The base64 public key for a base64 private key (what `wg pubkey` prints)."""
    raw = _decode(private_key, "private key")
    public = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    return base64.b64encode(public).decode()


def check_public_key(key: str, what: str = "public key") -> str:
    """`key` if it is a base64 WireGuard key, else a KeyStoreError naming `what`."""
    _decode(key, what)
    return key


def _decode(key: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        # Never echo the value: it may be a private key.
        raise KeyStoreError(
            f"{what} is not a WireGuard key (44 base64 characters encoding 32 bytes); regenerate it"
        )
    return raw


def _key_text(data: bytes) -> str:
    """A key file's text; bytes that are not ASCII give "" so the caller's check reports a
    malformed key without echoing the bytes."""
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        return ""


def _write_key(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    tmp.replace(path)


def _read_key(path: Path) -> str:
    try:
        return _key_text(path.read_bytes())
    except OSError as exc:
        raise KeyStoreError(f"cannot read {path}: {exc.strerror}") from None


class KeyStore:
    """One key pair per site in `directory`: `<site>.key` (0600) and `<site>.pub`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r})"

    def private_key_file(self, site: str) -> Path:
        return self.directory / f"{site}.key"

    def ensure(self, site: str) -> str:
        """Generate `site`'s key pair unless it exists; return its public key."""
        path = self.private_key_file(site)
        if self.directory.exists() and not self.directory.is_dir():
            raise KeyStoreError(f"{self.directory} is not a directory; give a key directory")
        if site in self.revoked():
            raise KeyStoreError(
                f"site {site!r} is revoked in {self.directory}; give it a new key with "
                f"'overcast bridge keys rotate CONFIG {site} --keys {self.directory}'"
            )
        if not path.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            private = generate_private_key()
            # O_EXCL: two processes racing must not overwrite each other's key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return self.public_key(site)
            with os.fdopen(fd, "w") as f:
                f.write(private + "\n")
            (self.directory / f"{site}.pub").write_text(public_key_of(private) + "\n")
        return self.public_key(site)

    def ensure_all(self, sites: Iterable[str]) -> dict[str, str]:
        """Public keys of `sites` (less the revoked ones), generating missing pairs."""
        revoked = self.revoked()
        return {site: self.ensure(site) for site in sites if site not in revoked}

    def revoked(self) -> frozenset[str]:
        """Sites whose key was revoked (and not rotated since)."""
        if not self.directory.is_dir():
            return frozenset()
        return frozenset(p.stem for p in self.directory.glob("*.revoked"))

    def rotate(self, site: str) -> tuple[str | None, str]:
        """Replace `site`'s key pair with a new one; return (old public key or None, new).
        A revoked site is re-admitted with the new key."""
        old = None
        if self.private_key_file(site).exists() or (self.directory / f"{site}.pub").exists():
            old = self.public_key(site)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = generate_private_key()
        # Written aside and renamed over: a reader sees the old pair or the new, never half.
        _write_key(self.private_key_file(site), private, 0o600)
        _write_key(self.directory / f"{site}.pub", public_key_of(private), 0o644)
        (self.directory / f"{site}.revoked").unlink(missing_ok=True)
        return old, public_key_of(private)

    def install_public(self, site: str, public: str) -> None:
        """Keep only `site`'s public key: its private key was sealed to the site's TPM and
        never stored here (attest/verifier.py). Re-admits a revoked site."""
        check_public_key(public, f"public key of site {site!r}")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_key(self.directory / f"{site}.pub", public, 0o644)
        self.private_key_file(site).unlink(missing_ok=True)
        (self.directory / f"{site}.revoked").unlink(missing_ok=True)

    def revoke(self, site: str) -> str:
        """Delete `site`'s key pair and mark it revoked; return the revoked public key."""
        revoked = self.directory / f"{site}.revoked"
        if revoked.exists():
            return _read_key(revoked)
        public = self.public_key(site)
        _write_key(revoked, public, 0o644)
        self.private_key_file(site).unlink(missing_ok=True)
        (self.directory / f"{site}.pub").unlink(missing_ok=True)
        return public

    def provision(
        self, site: str, peers: Iterable[str], directory: Path, *, own_key: bool = True
    ) -> KeyStore:
        """Make `directory` hold what `site` needs and nothing more: its own private key
        and its `peers`' public keys (other files of ours are removed). Without `own_key`
        the site's private key is not ours to write (its TPM delivered it) and is kept."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        wanted = {f"{site}.key": (self.private_key(site), 0o600)} if own_key else {}
        for peer in peers:
            wanted[f"{peer}.pub"] = (self.public_key(peer), 0o644)
        for path in (*directory.glob("*.key"), *directory.glob("*.pub")):
            if path.name not in wanted and path.name != f"{site}.key":
                path.unlink()
        for name, (text, mode) in wanted.items():
            path = directory / name
            if not path.exists() or _key_text(path.read_bytes()) != text:
                _write_key(path, text, mode)
        return KeyStore(directory)

    def public_key(self, site: str) -> str:
        """From `<site>.pub` (all a site needs of its peers), else derived from `<site>.key`.
        `apply_site` checks that the private key in use matches the planned public key."""
        pub = self.directory / f"{site}.pub"
        if pub.exists():
            return check_public_key(_read_key(pub), f"public key in {pub}")
        return public_key_of(self.private_key(site))

    def private_key(self, site: str) -> str:
        """The private key text, for handing to `wg` on stdin. Never log it."""
        path = self.private_key_file(site)
        try:
            text = _key_text(read_secret_file(path, "key", renew="regenerate it"))
        except FileNotFoundError:
            raise KeyStoreError(
                f"no key for site {site!r} in {self.directory}; generate it with "
                f"'overcast bridge keys generate CONFIG --keys {self.directory}'"
            ) from None
        except OSError as exc:
            raise KeyStoreError(f"cannot read {path}: {exc.strerror}") from None
        except ExposedSecretError as exc:
            raise KeyStoreError(str(exc)) from None
        _decode(text, f"private key in {path}")
        return text
