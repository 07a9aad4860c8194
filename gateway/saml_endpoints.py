"""Names of the gateway's SAML IdP that the rest of the gateway uses without loading pysaml2
(which takes seconds to import): its endpoints, the bindings, its refusal."""

SSO = "/.overcast/saml/sso"
SLO = "/.overcast/saml/slo"
METADATA = "/.overcast/saml/metadata"
LAUNCH = "/.overcast/saml/launch/"  # + app name: IdP-initiated sign-in
# SAML Bindings sections 3.4 and 3.5.
BINDING_HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


class SamlRefused(Exception):
    """A SAML message the IdP will not answer; the text says why (safe to show), `kind`
    is the short label it is counted under."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
