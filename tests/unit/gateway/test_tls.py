"""The dev CA, server contexts and per-app client-certificate checks."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.server import TurnBatchedTransport
from gateway.tls import (
    ClientCA,
    cert_details,
    dev_ca,
    issue,
    make_ca,
    server_context,
)

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)


def test_dev_ca_is_made_once_and_reissues_on_new_names(tmp_path: Path) -> None:
    files = dev_ca(tmp_path, ["gw.localhost", "127.0.0.1"], NOW)
    ca_before = (tmp_path / "ca.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.localhost"]
    assert oct(files.key.stat().st_mode & 0o777) == "0o600"
    again = dev_ca(tmp_path, ["127.0.0.1", "gw.localhost"], NOW)
    assert again.cert.read_bytes() == files.cert.read_bytes()
    before = files.cert.read_bytes()
    dev_ca(tmp_path, ["crm.localhost"], NOW)
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    assert files.cert.read_bytes() != before
    ctx = server_context(files)
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_client_certificate_checked_against_the_apps_ca(tmp_path: Path) -> None:
    ca, ca_key = make_ca("finance CA", NOW)
    other, other_key = make_ca("other CA", NOW)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    good, _ = issue(ca, ca_key, ["alice@corp.example"], NOW, client=True)
    bad, _ = issue(other, other_key, ["alice@corp.example"], NOW, client=True)
    anchor = ClientCA.load(tmp_path / "ca.pem")
    good_pem = good.public_bytes(serialization.Encoding.PEM).decode()
    assert anchor.verifies(good_pem, NOW)
    assert not anchor.verifies(bad.public_bytes(serialization.Encoding.PEM).decode(), NOW)
    assert not anchor.verifies(good_pem, NOW + datetime.timedelta(days=400))
    details = cert_details(good_pem)
    assert details["san_email"] == ("alice@corp.example",)
    assert details["issuer"] == "CN=finance CA,O=Overcast dev"
    assert len(details["sha256"]) == 64
    ctx = server_context(dev_ca(tmp_path / "d", ["gw"], NOW), [tmp_path / "ca.pem"])
    assert ctx.verify_mode == ssl.CERT_OPTIONAL


class _Recorder:
    """The few transport methods TurnBatchedTransport uses, recording what was written."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_in_one_turn_leave_as_one_and_close_flushes_first() -> None:
    async def scenario() -> list[list[bytes]]:
        raw = _Recorder()
        batched = TurnBatchedTransport(cast(asyncio.Transport, raw), asyncio.get_running_loop())
        batched.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        batched.write(b"ok")
        seen = [list(raw.writes)]  # nothing left yet: the turn is not over
        await asyncio.sleep(0)
        seen.append(list(raw.writes))
        batched.write(b"tail")
        batched.close()
        seen.append(list(raw.writes))
        assert raw.closed
        assert batched.get_extra_info("peername") == "info:peername"
        return seen

    during, after_turn, after_close = asyncio.run(scenario())
    assert during == []
    assert after_turn == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    assert after_close == [*after_turn, b"tail"]
