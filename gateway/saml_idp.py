"""The gateway as SAML 2.0 identity provider for SaaS apps that speak SAML.

pysaml2 does the protocol and Debian's xmlsec1 every XML signature: parsing and checking
AuthnRequests (the signature when the SP must sign, the ACS URL against the SP's
metadata: SAML Profiles 4.1.4.1), building the Response with its assertion (audience,
NotOnOrAfter, SubjectConfirmation Recipient and InResponseTo: SAML Profiles 4.1.4.2),
signing both response and assertion with RSA-SHA256, the HTTP-Redirect and HTTP-POST
bindings (SAML Bindings 3.4, 3.5), IdP metadata, and LogoutRequest/LogoutResponse.

What the gateway adds: the SPs from its config (metadata file or URL), the per-SP choice
of NameID (verified email, or a persistent pseudonym per SP) and of attributes, refusing
an AuthnRequest id seen before (a replayed request), and remembering which SPs a session
signed in to so that signing out can end them (single logout, SAML Profiles 4.4).
"""

from __future__ import annotations

import datetime
import logging
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

with warnings.catch_warnings():
    # pysaml2 names a cipher mode that cryptography moved; it is not one the IdP uses.
    warnings.simplefilter("ignore")
    import saml2.cryptography.symmetric  # noqa: F401
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import (
    AUTHN_PASSWORD_PROTECTED,
    NAME_FORMAT_BASIC,
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NameID,
)
from saml2.samlp import response_from_string
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from gateway.config import SamlSp
from gateway.idp_key import IdpKey
from gateway.saml_endpoints import SLO, SSO, SamlRefused

XMLSEC = "/usr/bin/xmlsec1"
CLOCK_SKEW = 60  # seconds an AuthnRequest's IssueInstant may be off
SEEN_FOR = 600  # how long an AuthnRequest id is remembered (older requests are refused)
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"

log = logging.getLogger("overcast.gateway")


@dataclass(frozen=True)
class ServiceProvider:
    app: str
    entity_id: str
    settings: SamlSp
    # The SP's metadata says AuthnRequestsSigned="true", or the config demands it.
    must_sign: bool


@dataclass(frozen=True)
class Request:
    """A checked AuthnRequest (or an IdP-initiated sign-in: no id)."""

    sp: ServiceProvider
    id: str | None
    acs_url: str
    binding: str
    relay_state: str


@dataclass(frozen=True)
class SpSession:
    """What single logout needs to name the user's session at one SP."""

    app: str
    entity_id: str
    name_id: NameID
    session_index: str


def sp_metadata(xml: str, where: str) -> tuple[str, bool]:
    """The entityID of SP metadata and whether it asks for signed AuthnRequests."""
    try:
        root = ET.fromstring(xml)  # trusted config input; pysaml2 parses it again
    except ET.ParseError as exc:
        raise ValueError(f"{where}: not XML ({exc}); give the SP's SAML metadata") from None
    entity = root if root.tag == f"{MD}EntityDescriptor" else root.find(f"{MD}EntityDescriptor")
    sp = entity.find(f"{MD}SPSSODescriptor") if entity is not None else None
    if entity is None or sp is None or not entity.get("entityID"):
        raise ValueError(f"{where}: no EntityDescriptor with an SPSSODescriptor and entityID")
    return str(entity.get("entityID")), sp.get("AuthnRequestsSigned") == "true"


@dataclass
class SamlIdp:
    entity_id: str
    base_url: str  # https://gateway-host[:port]
    key: IdpKey
    # app -> (settings, the SP's metadata XML)
    sps: Mapping[str, tuple[SamlSp, str]]
    lifetime: int
    clock: Callable[[], float] = time.time
    seen: dict[str, float] = field(default_factory=dict)
    # gateway session id -> the SPs it signed in to
    sessions: dict[str, list[SpSession]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_app: dict[str, ServiceProvider] = {}
        for app, (settings, xml) in self.sps.items():
            entity_id, signed = sp_metadata(xml, f"saas.{app}.saml.metadata")
            self.by_app[app] = ServiceProvider(
                app, entity_id, settings, signed or settings.require_signed_requests
            )
        self.by_entity = {sp.entity_id: sp for sp in self.by_app.values()}
        xmls = [xml for _, xml in self.sps.values()]
        # Two views of one IdP: one parses every request with signatures optional (to learn
        # its issuer), the other parses the requests of SPs that must sign.
        self.lenient = Server(config=self._config(xmls, must_sign=False))
        self.strict = Server(config=self._config(xmls, must_sign=True))

    def _config(self, metadata: list[str], must_sign: bool) -> IdPConfig:
        sso, slo = self.base_url + SSO, self.base_url + SLO
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "xmlsec_binary": XMLSEC,
                "key_file": str(self.key.key_file),
                "cert_file": str(self.key.cert_file),
                "metadata": {"inline": metadata},
                "accepted_time_diff": CLOCK_SKEW,
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [
                                (sso, BINDING_HTTP_REDIRECT),
                                (sso, BINDING_HTTP_POST),
                            ],
                            "single_logout_service": [
                                (slo, BINDING_HTTP_REDIRECT),
                                (slo, BINDING_HTTP_POST),
                            ],
                        },
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT],
                        "want_authn_requests_signed": must_sign,
                        "policy": {
                            "default": {
                                "lifetime": {"seconds": self.lifetime},
                                "name_form": NAME_FORMAT_BASIC,
                                "sign_response": True,
                                "sign_assertion": True,
                            }
                        },
                    }
                },
            }
        )
        # Attribute names go out exactly as the app's mapping spells them (the SP looks
        # for those), with NameFormat basic (SAML Core 8.2.2), not translated to the OIDs
        # of pysaml2's built-in maps.
        names = {name for settings, _ in self.sps.values() for name in settings.attributes}
        literal = AttributeConverter()
        literal.from_dict({"identifier": NAME_FORMAT_BASIC, "to": {n: n for n in names}, "fro": {}})
        config.attribute_converters = [literal]
        return config

    def metadata(self) -> str:
        """The IdP's metadata (SAML Metadata 2.4.3), for SPs to import."""
        xml = create_metadata_string(None, config=self.lenient.config, valid=None)
        return xml.decode() if isinstance(xml, bytes) else str(xml)

    # -- sign-in -----------------------------------------------------------------------

    def parse(self, binding: str, query: Mapping[str, str]) -> Request:
        """Check an AuthnRequest from the SSO endpoint; SamlRefused says why not."""
        message = query.get("SAMLRequest")
        if not message:
            raise SamlRefused("malformed", "no SAMLRequest: open this page from the app's sign-in")
        relay_state = query.get("RelayState", "")
        sp, parsed = self._from_an_sp("AuthnRequest", message, binding, query)
        request_id = str(parsed.message.id)
        self._fresh(request_id, str(parsed.message.issue_instant))
        try:
            args = self.lenient.response_args(parsed.message, [BINDING_HTTP_POST])
        except Exception as exc:
            raise SamlRefused(
                "acs",
                f"{sp.app}: the AssertionConsumerService URL is not in its metadata ({_why(exc)})",
            ) from None
        return Request(sp, request_id, str(args["destination"]), BINDING_HTTP_POST, relay_state)

    def _fresh(self, request_id: str, issue_instant: str) -> None:
        """Each AuthnRequest is answered once, and only while it is recent."""
        now = self.clock()
        self.seen = {k: t for k, t in self.seen.items() if t > now}
        if request_id in self.seen:
            raise SamlRefused("replay", f"AuthnRequest {request_id} was answered before (a replay)")
        try:
            issued = datetime.datetime.fromisoformat(issue_instant.replace("Z", "+00:00"))
        except ValueError:
            raise SamlRefused(
                "stale", f"AuthnRequest IssueInstant {issue_instant!r} unreadable"
            ) from None
        age = now - issued.timestamp()
        if not -CLOCK_SKEW <= age <= SEEN_FOR - CLOCK_SKEW:
            raise SamlRefused(
                "stale", f"AuthnRequest issued {int(age)} s ago; start the sign-in again"
            )
        self.seen[request_id] = now + SEEN_FOR

    def idp_initiated(self, app: str, relay_state: str = "") -> Request:
        """An unsolicited response (SAML Profiles 4.1.5) to the SP's first POST ACS."""
        sp = self.by_app[app]
        _, acs = self.lenient.pick_binding(
            "assertion_consumer_service", [BINDING_HTTP_POST], "spsso", entity_id=sp.entity_id
        )
        return Request(sp, None, str(acs), BINDING_HTTP_POST, relay_state)

    def respond(
        self,
        request: Request,
        gateway_sid: str,
        sub: str,
        email: str | None,
        attributes: Mapping[str, Any],
    ) -> str:
        """The signed Response as an auto-posting HTML form (HTTP-POST binding)."""
        sp = request.sp
        if sp.settings.name_id == "email":
            if email is None:
                raise SamlRefused("nameid", f"{sp.app} needs a verified email address as NameID")
            name_id = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email)
        else:
            name_id = NameID(
                format=NAMEID_FORMAT_PERSISTENT,
                text=self.key.pseudonym(sub, sp.entity_id),
                name_qualifier=self.entity_id,
                sp_name_qualifier=sp.entity_id,
            )
        identity = {k: v if isinstance(v, list) else [v] for k, v in attributes.items()}
        response = self.lenient.create_authn_response(
            identity,
            request.id,
            request.acs_url,
            sp.entity_id,
            name_id=name_id,
            authn={
                "class_ref": AUTHN_PASSWORD_PROTECTED,
                "authn_auth": self.entity_id,
                "authn_instant": int(self.clock()),
            },
            sign_response=True,
            sign_assertion=True,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        # The SessionIndex pysaml2 chose is what a LogoutRequest must name (SAML Core 3.7.1).
        statements = response_from_string(str(response)).assertion[0].authn_statement
        session_index = str(statements[0].session_index)
        visited = self.sessions.setdefault(gateway_sid, [])
        visited[:] = [s for s in visited if s.app != sp.app]
        visited.append(SpSession(sp.app, sp.entity_id, name_id, session_index))
        info = self.lenient.apply_binding(
            BINDING_HTTP_POST, str(response), request.acs_url, request.relay_state, response=True
        )
        return str(info["data"])

    # -- single logout -------------------------------------------------------------------

    def logout_request(self, session: SpSession, relay_state: str) -> str | None:
        """The URL that takes a LogoutRequest to the SP (HTTP-Redirect, signed), or None if
        the SP's metadata has no SingleLogoutService with that binding."""
        try:
            _, destination = self.lenient.pick_binding(
                "single_logout_service",
                [BINDING_HTTP_REDIRECT],
                "spsso",
                entity_id=session.entity_id,
            )
        except Exception:
            return None
        _, request = self.lenient.create_logout_request(
            destination,
            session.entity_id,
            name_id=session.name_id,
            session_indexes=[session.session_index],
            sign=False,  # the Redirect binding signs the query string instead
        )
        info = self.lenient.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(request),
            destination,
            relay_state,
            sign=True,
            sigalg=SIG_RSA_SHA256,
        )
        return str(dict(info["headers"])["Location"])

    def logout_request_in(
        self, binding: str, query: Mapping[str, str]
    ) -> tuple[ServiceProvider, Any, str]:
        """An SP's LogoutRequest (SP-initiated single logout), checked as AuthnRequests are:
        signed when the SP must sign. Returns the SP, the request and its RelayState."""
        sp, parsed = self._from_an_sp("LogoutRequest", query.get("SAMLRequest", ""), binding, query)
        return sp, parsed.message, query.get("RelayState", "")

    def _from_an_sp(
        self, kind: str, message: str, binding: str, query: Mapping[str, str]
    ) -> tuple[ServiceProvider, Any]:
        """Parse an AuthnRequest or LogoutRequest (`kind`): without signature checks to learn
        which SP sent it, then, for an SP that must sign, again with them."""
        name = {"AuthnRequest": "parse_authn_request", "LogoutRequest": "parse_logout_request"}
        extra = _redirect_args(binding, query)
        try:
            parsed = getattr(self.lenient, name[kind])(message, binding, **extra)
        except Exception as exc:  # pysaml2 raises many types; all mean "refused"
            raise SamlRefused("malformed", f"{kind} refused: {_why(exc)}") from None
        if parsed is None:
            raise SamlRefused("malformed", f"{kind} refused: not a SAML {kind}")
        issuer = parsed.message.issuer.text.strip() if parsed.message.issuer is not None else ""
        sp = self.by_entity.get(issuer)
        if sp is None:
            raise SamlRefused(
                "unknown_sp", f"{kind} from {issuer!r}, which is no app of this gateway"
            )
        if sp.must_sign:
            try:
                parsed = getattr(self.strict, name[kind])(message, binding, **extra)
            except Exception as exc:
                raise SamlRefused(
                    "signature", f"{sp.app} must sign its {kind}s: {_why(exc)}"
                ) from None
        return sp, parsed

    def logout_response_url(self, request: Any, relay_state: str) -> str:
        """The signed LogoutResponse (HTTP-Redirect) that tells the SP it is signed out."""
        response = self.lenient.create_logout_response(request, [BINDING_HTTP_REDIRECT], sign=False)
        info = self.lenient.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(response),
            str(response.destination),
            relay_state,
            response=True,
            sign=True,
            sigalg=SIG_RSA_SHA256,
        )
        return str(dict(info["headers"])["Location"])

    def logout_response(self, binding: str, query: Mapping[str, str]) -> None:
        """Check an SP's LogoutResponse (its signature when it sent one)."""
        message = query.get("SAMLResponse", "")
        try:
            self.lenient.parse_logout_request_response(message, binding)
        except Exception as exc:
            raise SamlRefused("logout", f"LogoutResponse refused: {_why(exc)}") from None


def _redirect_args(binding: str, query: Mapping[str, str]) -> dict[str, str | None]:
    """What pysaml2 needs to check an HTTP-Redirect signature (SAML Bindings 3.4.4.1)."""
    if binding != BINDING_HTTP_REDIRECT:
        return {}
    return {
        "relay_state": query.get("RelayState"),
        "sigalg": query.get("SigAlg"),
        "signature": query.get("Signature"),
    }


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
