"""TLS for the gateway: certificates, the dev CA, and client certificates for mTLS apps.

Dev mode: with no certificate configured, `dev_ca()` makes a local CA and a server
certificate for the gateway's names (kept in a directory and reused, so a browser told to
trust the CA once keeps trusting it). The CA key never leaves that directory.

mTLS: the listener asks every client for a certificate (CERT_OPTIONAL) from the union of
the apps' client CAs; each mTLS app then checks that the certificate chains to *its* CA
(`gateway.server` hands the peer's certificate to the app).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

CA_DAYS = 3650
LEAF_DAYS = 397  # the CA/Browser Forum's cap for server certificates


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    ca: Path | None = None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Overcast dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        if "@" in name:
            entries.append(x509.RFC822Name(name))
            continue
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_ca(
    common_name: str, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Iterable[str],
    now: datetime.datetime,
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for server `names` (DNS or IP), or a client certificate."""
    names = list(names)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def write_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, stem: Path) -> CertFiles:
    files = CertFiles(stem.with_suffix(".pem"), stem.with_suffix(".key"))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key, _key_pem(key))
    return files


def dev_ca(directory: Path, names: Iterable[str], now: datetime.datetime) -> CertFiles:
    """The dev CA in `directory` (made once) and a server certificate for `names`.

    The server certificate is re-issued when the names change.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = sorted(set(names))
    ca_files = CertFiles(directory / "ca.pem", directory / "ca.key")
    if ca_files.cert.exists() and ca_files.key.exists():
        ca = x509.load_pem_x509_certificate(ca_files.cert.read_bytes())
        loaded = serialization.load_pem_private_key(ca_files.key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_files.key}: not an EC key; delete {directory} to start over")
        ca_key = loaded
    else:
        ca, ca_key = make_ca("Overcast dev CA", now)
        write_pair(ca, ca_key, directory / "ca")
    server = CertFiles(directory / "server.pem", directory / "server.key", ca_files.cert)
    stamp = directory / "server.names"
    if not (server.cert.exists() and stamp.exists() and stamp.read_text() == "\n".join(names)):
        write_pair(*issue(ca, ca_key, names, now), directory / "server")
        stamp.write_text("\n".join(names))
    return server


def server_context(files: CertFiles, client_cas: Iterable[Path] = ()) -> ssl.SSLContext:
    """TLS 1.2+ server context; asks for (but does not demand) client certificates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.cert, files.key)
    ctx.set_alpn_protocols(["http/1.1"])
    cas = list(client_cas)
    for ca in cas:
        ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL if cas else ssl.CERT_NONE
    return ctx


def client_context(cafile: Path | None) -> ssl.SSLContext:
    """Context for the gateway's own outbound TLS (IdP, upstreams): verify, TLS 1.2+."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# -- client certificates -----------------------------------------------------------------


@lru_cache(maxsize=1024)
def cert_details(pem: str) -> Mapping[str, Any]:
    """The fields policy can match, in `RequestContext.client_cert`'s documented shape."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, email = san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        dns, email = [], []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        "san_dns": tuple(dns),
        "san_email": tuple(email),
    }


@dataclass(frozen=True)
class ClientCA:
    """One mTLS app's trust anchor: does a client certificate chain to it?"""

    store: Store

    @classmethod
    def load(cls, path: Path) -> ClientCA:
        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the client CA bundle ({exc})") from None
        return cls(Store(certs))

    def verifies(self, pem: str, now: datetime.datetime) -> bool:
        cert = x509.load_pem_x509_certificate(pem.encode())
        verifier = PolicyBuilder().store(self.store).time(now).build_client_verifier()
        try:
            verifier.verify(cert, [])
        except VerificationError:
            return False
        return True
