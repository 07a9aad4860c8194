"""The request headers other identity-aware proxies and load balancers set for their apps.

An app moved from one of these to the gateway often still trusts its old proxy's headers, so
a client must never be able to send them through us (issue 11). Each family lists the exact
names and the name prefixes its documentation gives, folded as `gateway.headers.fold` folds
a name (lower case, `_` as `-`): `X_Goog_Iap_Jwt_Assertion` is the same header to gunicorn,
PHP or Rack as `x-goog-iap-jwt-assertion`. Where a family sets a whole group (claims, tokens,
metadata), its prefix is listed, so a header it adds later is covered too.

Several of these products let the operator name further headers; those, and any header an
upstream trusts of its own, go in the app's `strip_headers` (see `gateway.config.App`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One product's identity headers, as its documentation names them."""

    name: str
    source: str  # where the names come from
    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family(
        "oauth2-proxy",
        "https://oauth2-proxy.github.io/oauth2-proxy/configuration/overview "
        "(--set-xauthrequest, --pass-user-headers, --pass-access-token, GAP-Auth)",
        names=frozenset({"gap-auth", "gap-signature"}),
        # X-Auth-Request-User/-Email/-Groups/-Preferred-Username/-Access-Token/-Redirect;
        # X-Forwarded-User/-Email/-Groups/-Preferred-Username/-Access-Token.
        prefixes=("x-auth-request-", "x-forwarded-"),
    ),
    Family(
        "Pomerium",
        "https://www.pomerium.com/docs/capabilities/getting-users-identity "
        "(X-Pomerium-Jwt-Assertion, X-Pomerium-Claim-*)",
        prefixes=("x-pomerium-",),
    ),
    Family(
        "Google Cloud IAP, Cloud Run, ESP and API Gateway",
        "https://cloud.google.com/iap/docs/signed-headers-howto (x-goog-iap-jwt-assertion, "
        "x-goog-authenticated-user-{email,id}); Cloud Run X-Serverless-Authorization; "
        "ESP X-Endpoint-API-UserInfo; API Gateway X-Apigateway-Api-Userinfo",
        names=frozenset(
            {"x-serverless-authorization", "x-endpoint-api-userinfo", "x-apigateway-api-userinfo"}
        ),
        prefixes=("x-goog-iap-", "x-goog-authenticated-"),
    ),
    Family(
        "Cloudflare Access",
        "https://developers.cloudflare.com/cloudflare-one/identity/authorization-cookie/"
        "application-token (Cf-Access-Jwt-Assertion, Cf-Access-Authenticated-User-Email, "
        "service tokens Cf-Access-Client-Id/-Secret); Cf-Connecting-IP, True-Client-IP",
        names=frozenset({"cf-connecting-ip", "cf-connecting-ipv6", "true-client-ip"}),
        prefixes=("cf-access-",),
    ),
    Family(
        "AWS ALB OIDC, ALB mTLS, Verified Access, API Gateway to Lambda",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/"
        "listener-authenticate-users.html (x-amzn-oidc-accesstoken, -identity, -data); "
        "mutual-authentication.html (X-Amzn-Mtls-Clientcert-*); Verified Access "
        "x-amzn-ava-user-context; serverless-express x-apigateway-event/-context",
        names=frozenset({"x-apigateway-event", "x-apigateway-context"}),
        prefixes=("x-amzn-oidc-", "x-amzn-mtls-", "x-amzn-ava-"),
    ),
    Family(
        "Azure App Service / Functions / Static Web Apps Easy Auth, Front Door",
        "https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities"
        " (X-MS-CLIENT-PRINCIPAL, -ID, -NAME, -IDP; X-MS-TOKEN-AAD-ID-TOKEN, "
        "X-MS-TOKEN-<provider>-*); X-ARR-ClientCert; Front Door X-Azure-ClientIP/-SocketIP",
        names=frozenset({"x-arr-clientcert", "x-azure-clientip", "x-azure-socketip"}),
        prefixes=("x-ms-client-principal", "x-ms-token-"),
    ),
    Family(
        "Authelia (and Caddy forward_auth, 2FAuth, Papermerge conventions)",
        "https://www.authelia.com/integration/trusted-header-sso/introduction "
        "(Remote-User, Remote-Groups, Remote-Email, Remote-Name)",
        prefixes=("remote-", "x-authelia-"),
    ),
    Family(
        "authentik",
        "https://docs.goauthentik.io/add-secure-apps/providers/proxy "
        "(X-authentik-username, -groups, -entitlements, -email, -name, -uid, -jwt, -meta-*)",
        prefixes=("x-authentik-",),
    ),
    Family(
        "Vouch Proxy",
        "https://github.com/vouch/vouch-proxy config/config.yml_example "
        "(X-Vouch-User, X-Vouch-IdP-Claims-*, X-Vouch-IdP-IdToken, -AccessToken)",
        prefixes=("x-vouch-",),
    ),
    Family(
        "Traefik forward-auth and passTLSClientCert, traefik-forward-auth",
        "https://doc.traefik.io/traefik/middlewares/http/forwardauth/ (X-Forwarded-Method, "
        "-Uri, authResponseHeaders); passtlsclientcert (X-Forwarded-Tls-Client-Cert, -Info)",
        prefixes=("x-forwarded-",),
    ),
    Family(
        "Istio / Envoy",
        "https://istio.io/latest/docs/tasks/security/authentication/claim-to-header "
        "(outputClaimToHeaders X-Jwt-Claim-*, outputPayloadToHeader); Envoy jwt_authn "
        "forward_payload_header, x-forwarded-client-cert (XFCC), x-envoy-* (internal only)",
        names=frozenset({"x-forwarded-client-cert"}),
        prefixes=("x-jwt-", "x-envoy-", "x-istio-"),
    ),
    Family(
        "Teleport application access",
        "https://goteleport.com/docs/enroll-resources/application-access/jwt/introduction "
        "(Teleport-Jwt-Assertion)",
        prefixes=("teleport-",),
    ),
    Family(
        "Ory Oathkeeper",
        "https://www.ory.sh/docs/oathkeeper/pipeline/mutator (header mutator, X-User in the "
        "examples; id_token mutator puts the token in Authorization)",
        names=frozenset({"x-user", "x-user-id", "x-userid"}),
    ),
    Family(
        "Keycloak Gatekeeper / Louketo / gogatekeeper",
        "https://www.keycloak.org/docs/latest/securing_apps/#_keycloak_generic_adapter "
        "(X-Auth-Userid, -Subject, -Username, -Email, -ExpiresIn, -Token, -Roles, -Groups, "
        "-Audience); this also covers OpenStack-style X-Auth-Token and X-Auth-User",
        prefixes=("x-auth-",),
    ),
    Family(
        "nginx auth_request conventions",
        "https://nginx.org/en/docs/http/ngx_http_auth_request_module.html (auth_request_set "
        "forwards the auth server's headers; the usual ones: X-User, X-Email, X-Original-URI)",
        names=frozenset(
            {
                "x-email",
                "x-username",
                "x-groups",
                "x-original-url",
                "x-original-uri",
                "x-original-method",
                "x-original-host",
                "x-rewrite-url",
            }
        ),
    ),
    Family(
        "Kong",
        "https://developer.konghq.com/plugins/key-auth/ (upstream headers X-Consumer-ID, "
        "-Custom-ID, -Username, -Groups, X-Credential-Identifier, X-Anonymous-Consumer, "
        "X-Authenticated-Scope, -Userid, -Groups); kong-oidc X-Userinfo, X-Access-Token, "
        "X-ID-Token",
        names=frozenset({"x-userinfo", "x-access-token", "x-id-token"}),
        prefixes=("x-consumer-", "x-credential-", "x-anonymous-", "x-authenticated-"),
    ),
    Family(
        "Apache mod_auth_openidc and mod_auth_mellon",
        "https://github.com/OpenIDC/mod_auth_openidc/blob/master/auth_openidc.conf "
        "(OIDCClaimPrefix default OIDC_CLAIM_, OIDC_access_token, OIDC_id_token_payload, "
        "OIDC_userinfo_json); mod_auth_mellon MELLON_*",
        prefixes=("oidc-", "mellon-"),
    ),
    Family(
        "Shibboleth SP",
        "https://shibboleth.atlassian.net/wiki/spaces/SP3/pages/2065335257/AttributeAccess "
        "(ShibUseHeaders: Shib-Session-ID, Shib-Identity-Provider, ...; attributes by their "
        "attribute-map.xml id: eppn, affiliation, entitlement, persistent-id, ...)",
        names=frozenset(
            {
                "eppn",
                "affiliation",
                "unscoped-affiliation",
                "entitlement",
                "targeted-id",
                "persistent-id",
                "subject-id",
                "pairwise-id",
            }
        ),
        prefixes=("shib-",),
    ),
    Family(
        "Kubernetes authenticating proxy and impersonation",
        "https://kubernetes.io/docs/reference/access-authn-authz/authentication/ "
        "(X-Remote-User, X-Remote-Group, X-Remote-Extra-*; Impersonate-User, -Group, -Uid, "
        "-Extra-*)",
        prefixes=("x-remote-", "impersonate-"),
    ),
    Family(
        "Tailscale Serve",
        "https://tailscale.com/kb/1312/serve (Tailscale-User-Login, Tailscale-User-Name, "
        "Tailscale-User-Profile-Pic)",
        prefixes=("tailscale-",),
    ),
    Family(
        "Grafana auth proxy and caddy-tailscale",
        "https://grafana.com/docs/grafana/latest/setup-grafana/configure-security/"
        "configure-authentication/auth-proxy/ (X-WEBAUTH-USER, -EMAIL, -NAME, -GROUPS)",
        prefixes=("x-webauth-",),
    ),
    Family(
        "CGI REMOTE_USER and client certificates from TLS terminators",
        "RFC 3875 section 4.1.11 (REMOTE_USER); nginx $ssl_client_*, HAProxy "
        "X-SSL-Client-*, Apache SSL_CLIENT_*",
        names=frozenset({"remote-user", "remote-addr", "x-client-verify"}),
        prefixes=("x-ssl-", "ssl-client-", "x-client-cert", "x-tls-client-"),
    ),
    Family(
        "Client addressing and request overrides the gateway recomputes or refuses",
        "RFC 7239 (Forwarded); RFC 9110 section 11.7.1 (Proxy-Authorization is for the "
        "proxy); X-Real-IP, X-Client-IP, X-Cluster-Client-IP; X-HTTP-Method-Override",
        names=frozenset(
            {
                "forwarded",
                "proxy-authorization",
                "x-real-ip",
                "x-client-ip",
                "x-cluster-client-ip",
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
            }
        ),
    ),
    Family(
        "Overcast itself",
        "gateway.assertion (X-Overcast-Jwt-Assertion)",
        prefixes=("x-overcast-",),
    ),
)
