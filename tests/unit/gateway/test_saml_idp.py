"""The gateway's SAML IdP against SPs made with pysaml2 (no daemons; xmlsec1 signs and checks).

SP "a" signs its AuthnRequests (its metadata says so) and gets the email as NameID; SP "b"
does not sign and gets a persistent pseudonym. Each refusal names its reason and kind.
"""

from __future__ import annotations

import base64
import datetime
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import (
    NAME_FORMAT_BASIC,
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
)
from saml2.xmldsig import SIG_RSA_SHA256

from gateway import idp_key
from gateway.config import Idp, SamlSp
from gateway.saml_endpoints import SamlRefused
from gateway.saml_idp import XMLSEC, SamlIdp
from tests.conftest import require_binaries

BASE = "https://gw.example"
NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)


@pytest.fixture(scope="module", autouse=True)
def _xmlsec() -> None:
    """Signing needs Debian's xmlsec1: skipped without it, but a failure in CI."""
    require_binaries(XMLSEC)


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return datetime.datetime.now(datetime.UTC).timestamp() + self.offset


def sp_settings(tmp: Path, name: str, signs: bool) -> tuple[dict[str, object], str]:
    """An SP's pysaml2 settings and the metadata the gateway imports."""
    entity = f"https://{name}.example/sp"
    settings: dict[str, object] = {
        "entityid": entity,
        "xmlsec_binary": XMLSEC,
        "service": {
            "sp": {
                "endpoints": {
                    "assertion_consumer_service": [
                        (f"https://{name}.example/acs", BINDING_HTTP_POST)
                    ]
                },
                "authn_requests_signed": signs,
                "want_response_signed": True,
                "want_assertions_signed": True,
                "allow_unsolicited": False,
            }
        },
    }
    if signs:
        key = idp_key.load(Idp(dev_dir=tmp / name), name, NOW)
        settings |= {"key_file": str(key.key_file), "cert_file": str(key.cert_file)}
    config = SPConfig()
    config.load(settings)
    metadata = create_metadata_string(None, config=config, valid=None)
    return settings, metadata.decode() if isinstance(metadata, bytes) else metadata


def client(settings: dict[str, object], idp_metadata: str) -> Saml2Client:
    """The SP, trusting the IdP's metadata as a SaaS vendor would import it."""
    config = SPConfig()
    config.load(settings | {"metadata": {"inline": [idp_metadata]}})
    return Saml2Client(config=config)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SamlIdp, Saml2Client, Saml2Client, Clock]:
    tmp = tmp_path_factory.mktemp("saml")
    a_settings, a_md = sp_settings(tmp, "a", signs=True)
    b_settings, b_md = sp_settings(tmp, "b", signs=False)
    key = idp_key.load(Idp(dev_dir=tmp / "idp"), "gw.example", NOW)
    clock = Clock()
    sps = {
        "a": (SamlSp(metadata="https://a.example/md", attributes={"mail": "email"}), a_md),
        "b": (SamlSp(metadata="https://b.example/md", name_id="persistent"), b_md),
    }
    idp = SamlIdp(f"{BASE}/.overcast/saml/metadata", BASE, key, sps, 300, clock)
    return idp, client(a_settings, idp.metadata()), client(b_settings, idp.metadata()), clock


def redirect_query(client: Saml2Client, sign: bool, **kwargs: str) -> tuple[str, dict[str, str]]:
    request_id, request = client.create_authn_request(f"{BASE}/.overcast/saml/sso", **kwargs)
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(request),
        f"{BASE}/.overcast/saml/sso",
        "relay",
        sign=sign,
        sigalg=SIG_RSA_SHA256,
    )
    location = dict(info["headers"])["Location"]
    return request_id, dict(parse_qsl(urlsplit(location).query))


def refused(idp: SamlIdp, query: dict[str, str]) -> SamlRefused:
    with pytest.raises(SamlRefused) as caught:
        idp.parse(BINDING_HTTP_REDIRECT, query)
    return caught.value


def test_signed_request_gets_a_signed_response_the_sp_accepts(world) -> None:  # type: ignore[no-untyped-def]
    idp, a, _, _ = world
    request_id, query = redirect_query(a, sign=True)
    request = idp.parse(BINDING_HTTP_REDIRECT, query)
    assert request.acs_url == "https://a.example/acs" and request.id == request_id
    form = idp.respond(
        request, "sid-1", "alice", "alice@corp.example", {"mail": "alice@corp.example"}
    )
    saml_response = re.search(r'name="SAMLResponse" value="([^"]+)"', form)
    assert saml_response is not None
    # The SP's own checks (pysaml2's): signatures, audience, InResponseTo, validity.
    answer = a.parse_authn_request_response(
        saml_response.group(1), BINDING_HTTP_POST, outstanding={request_id: "/"}
    )
    assert answer.name_id.format == NAMEID_FORMAT_EMAILADDRESS
    assert answer.name_id.text == "alice@corp.example"
    statement = answer.assertion.attribute_statement[0].attribute[0]
    assert (statement.name, statement.name_format) == ("mail", NAME_FORMAT_BASIC)
    assert statement.attribute_value[0].text == "alice@corp.example"
    xml = base64.b64decode(saml_response.group(1)).decode()
    assert xml.count("rsa-sha256") >= 2  # response and assertion both signed
    # The SP never accepts the same response twice (its InResponseTo is spent).
    with pytest.raises(Exception, match=r"(?i)unsolicited|in_response_to|outstanding"):
        a.parse_authn_request_response(saml_response.group(1), BINDING_HTTP_POST, outstanding={})


def test_persistent_nameid_is_a_stable_pseudonym_per_sp(world) -> None:  # type: ignore[no-untyped-def]
    idp, _, b, _ = world
    ids = []
    for _ in range(2):
        request_id, query = redirect_query(b, sign=False)
        form = idp.respond(idp.parse(BINDING_HTTP_REDIRECT, query), "sid-2", "alice", None, {})
        value = re.search(r'name="SAMLResponse" value="([^"]+)"', form)
        assert value is not None
        answer = b.parse_authn_request_response(
            value.group(1), BINDING_HTTP_POST, outstanding={request_id: "/"}
        )
        assert answer.name_id.format == NAMEID_FORMAT_PERSISTENT
        ids.append(answer.name_id.text)
    assert ids[0] == ids[1] == idp.key.pseudonym("alice", "https://b.example/sp")
    assert ids[0] != idp.key.pseudonym("alice", "https://a.example/sp") and "alice" not in ids[0]


def test_bad_requests_are_refused_with_their_reason(world) -> None:  # type: ignore[no-untyped-def]
    idp, a, b, clock = world
    # a's metadata asks for signed requests: unsigned or tampered ones are refused.
    _, unsigned = redirect_query(a, sign=False)
    assert refused(idp, unsigned).kind == "signature"
    _, query = redirect_query(a, sign=True)
    forged = query | {"RelayState": "elsewhere"}  # the signature covers RelayState
    assert refused(idp, forged).kind == "signature"
    # An AssertionConsumerService URL not in the SP's metadata, or another SP's.
    _, evil = redirect_query(
        b, sign=False, assertion_consumer_service_url="https://evil.example/acs"
    )
    assert refused(idp, evil).kind == "acs"
    _, other = redirect_query(b, sign=False, assertion_consumer_service_url="https://a.example/acs")
    assert refused(idp, other).kind == "acs"
    # The same request twice.
    _, once = redirect_query(b, sign=False)
    idp.parse(BINDING_HTTP_REDIRECT, once)
    assert refused(idp, once).kind == "replay"
    # A request issued too long ago.
    _, old = redirect_query(b, sign=False)
    clock.offset = 900
    try:
        assert refused(idp, old).kind == "stale"
    finally:
        clock.offset = 0
    # No request, or not SAML at all.
    assert refused(idp, {}).kind == "malformed"
    assert refused(idp, {"SAMLRequest": "bm90IHNhbWw="}).kind == "malformed"
