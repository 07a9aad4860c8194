"""The key the gateway signs with as an identity provider (SAML responses, ID tokens).

RSA, because RSA-SHA256 is the one XML signature algorithm every SAML SP accepts and RS256
the one every OpenID relying party must (OIDC Core section 15.1). SPs pin the certificate
from the IdP metadata, so the dev key is made once and kept, never made per start.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.config import Idp

RSA_BITS = 3072  # NIST SP 800-57: 128-bit security
CERT_YEARS = 10  # SAML SPs check the key, not the certificate's dates (SAML Metadata 2.4.1.1)


class IdpKeyError(ValueError):
    """The IdP key or certificate is unusable; the message names the file and the fix."""


@dataclass(frozen=True)
class IdpKey:
    key_file: Path
    cert_file: Path
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def pseudonym(self, sub: str, audience: str) -> str:
        """A persistent NameID: the same for a user at one SP, unlinkable across SPs
        (SAML Core 8.3.7), stable as long as the key is."""
        der = self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        secret = hashlib.sha256(b"overcast persistent nameid\x00" + der).digest()
        return hmac.new(secret, f"{audience}\x00{sub}".encode(), hashlib.sha256).hexdigest()


def load(settings: Idp, common_name: str, now: datetime.datetime) -> IdpKey:
    if settings.key_file is not None and settings.cert_file is not None:
        return _read(settings.key_file, settings.cert_file)
    directory = settings.dev_dir
    key_file, cert_file = directory / "idp.key", directory / "idp.pem"
    if key_file.exists() and cert_file.exists():
        return _read(key_file, cert_file)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.touch(mode=0o600)
    key_file.write_bytes(pem)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return IdpKey(key_file, cert_file, key, cert)


def _read(key_file: Path, cert_file: Path) -> IdpKey:
    fix = "make a pair with: openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj /CN=idp"
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise IdpKeyError(f"{key_file} / {cert_file}: unusable ({exc}); {fix}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise IdpKeyError(f"{key_file}: need an RSA key of at least 2048 bits; {fix}")
    if cert.public_key() != key.public_key():
        raise IdpKeyError(f"{cert_file} is not the certificate of {key_file}; {fix}")
    return IdpKey(key_file, cert_file, key, cert)
