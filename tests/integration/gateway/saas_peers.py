"""SaaS stand-ins from Debian for the gateway's SAML IdP and OpenID provider tests.

One Apache instance of the test's own (its own config dir, pid file and logs; never the
system's), TLS on loopback with the gateway's dev certificate, one port per SP:
- `mellon`: mod_auth_mellon, a SAML 2.0 SP whose metadata (from Debian's
  mellon_create_metadata) asks for signed AuthnRequests;
- `shib`: Shibboleth SP 3 (mod_shib and its own shibd), a SAML 2.0 SP that does not sign its
  AuthnRequests and is given a persistent pseudonymous NameID;
- `openidc`: mod_auth_openidc, an OpenID Connect relying party (code flow, PKCE S256).
Each protected page is a server-side include that prints who the SP thinks is signed in.
"""

from __future__ import annotations

import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from lab import netns
from tests.conftest import require_binaries
from tests.integration.gateway.sso_peers import free_port, until

MODULES = Path("/usr/lib/apache2/modules")
USER = ("-u", "www-data", "-g", "www-data")
OIDC_CLIENT = "tickets"
OIDC_SECRET = "tickets-secret-0123456789abcdef"


@dataclass(frozen=True)
class Sps:
    dir: Path
    mellon_port: int
    openidc_port: int
    shib_port: int

    @property
    def mellon_entity(self) -> str:
        return f"https://127.0.0.1:{self.mellon_port}/mellon/metadata"

    @property
    def mellon_metadata(self) -> Path:
        return self.dir / "mellon-sp.xml"

    @property
    def mellon_app(self) -> str:
        return f"https://127.0.0.1:{self.mellon_port}/app/index.shtml"

    @property
    def shib_entity(self) -> str:
        return f"https://127.0.0.1:{self.shib_port}/shibboleth"

    @property
    def shib_metadata(self) -> Path:
        return self.dir / "shib-sp.xml"

    @property
    def shib_app(self) -> str:
        return f"https://127.0.0.1:{self.shib_port}/app/index.shtml"

    @property
    def openidc_app(self) -> str:
        return f"https://127.0.0.1:{self.openidc_port}/app/index.shtml"

    @property
    def openidc_redirect(self) -> str:
        return f"https://127.0.0.1:{self.openidc_port}/app/redirect_uri"

    def access_log(self) -> str:
        """Both Apache instances' access logs."""
        return "".join(p.read_text() for p in sorted(self.dir.glob("*-access.log")))


@contextmanager
def sp_dir(logs: Path) -> Iterator[Sps]:
    """Ports and the mellon SP's key and metadata, made before the gateway starts (the
    gateway imports the SP metadata; the SP imports the gateway's once it runs)."""
    require_binaries("apache2", "mellon_create_metadata", "shibd", "openssl")
    # Apache's children run as www-data: the directory must be theirs to read, so it is not
    # under pytest's root-only tmp directory.
    directory = Path(tempfile.mkdtemp(prefix="overcast-sp-"))
    try:
        sps = Sps(directory, free_port(), free_port(), free_port())
        subprocess.run(
            [
                "mellon_create_metadata",
                sps.mellon_entity,
                f"https://127.0.0.1:{sps.mellon_port}/mellon",
            ],
            cwd=directory,
            check=True,
            capture_output=True,
        )
        stem = next(directory.glob("*.xml")).stem
        for suffix, name in ((".xml", "mellon-sp.xml"), (".key", "mellon-sp.key")):
            (directory / f"{stem}{suffix}").rename(directory / name)
        (directory / f"{stem}.cert").rename(directory / "mellon-sp.pem")
        _shib_sp(sps)
        yield sps
    finally:
        for log in directory.glob("*.log"):  # kept with the test's files, for a failure
            shutil.copy(log, logs / f"apache-{log.name}")
        shutil.rmtree(directory, ignore_errors=True)


def _shib_sp(sps: Sps) -> None:
    """The Shibboleth SP's key and the metadata the gateway imports (written here, since
    the SP serves its own only once it runs)."""
    d = sps.dir
    key, cert_file = str(d / "shib-sp.key"), str(d / "shib-sp.pem")
    subprocess.run(
        [
            *[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "7",
                "-subj",
                "/CN=shib-sp",
            ],
            "-keyout",
            key,
            "-out",
            cert_file,
        ],
        check=True,
        capture_output=True,
    )
    cert = "".join(
        line for line in (d / "shib-sp.pem").read_text().splitlines() if "-----" not in line
    )
    base = f"https://127.0.0.1:{sps.shib_port}/Shibboleth.sso"
    sps.shib_metadata.write_text(f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{sps.shib_entity}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate>
    </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="{base}/SLO/Redirect"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="{base}/SAML2/POST" index="1"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
""")


def _shib_conf(sps: Sps, idp_entity: str) -> None:
    d = sps.dir
    (
        d / "shibboleth2.xml"
    ).write_text(f"""<SPConfig xmlns="urn:mace:shibboleth:3.0:native:sp:config"
    xmlns:conf="urn:mace:shibboleth:3.0:native:sp:config" clockSkew="60">
  <OutOfProcess logger="{d}/shibd.logger"/>
  <InProcess logger="{d}/native.logger"/>
  <UnixListener address="{d}/shibd.sock"/>
  <StorageService type="Memory" id="mem" cleanupInterval="900"/>
  <SessionCache type="StorageService" StorageService="mem" cacheAssertions="false"
      cacheAllowance="900" inprocTimeout="900" cleanupInterval="900"/>
  <ReplayCache StorageService="mem"/>
  <ApplicationDefaults entityID="{sps.shib_entity}" REMOTE_USER="persistent-id">
    <Sessions lifetime="600" timeout="600" relayState="ss:mem" checkAddress="false"
        handlerSSL="true" cookieProps="https" redirectLimit="exact">
      <SSO entityID="{idp_entity}">SAML2</SSO>
      <Logout>SAML2 Local</Logout>
      <Handler type="Session" Location="/Session" showAttributeValues="true"/>
    </Sessions>
    <Errors supportContact="root@localhost" showErrors="true"
        session="/etc/shibboleth/sessionError.html" metadata="/etc/shibboleth/metadataError.html"
        access="/etc/shibboleth/attrChecker.html" ssl="/etc/shibboleth/sslError.html"
        localLogout="/etc/shibboleth/localLogout.html"
        partialLogout="/etc/shibboleth/partialLogout.html"
        globalLogout="/etc/shibboleth/globalLogout.html"/>
    <MetadataProvider type="XML" validate="true" path="{d}/idp-metadata.xml"/>
    <AttributeExtractor type="XML" validate="true" reloadChanges="false"
        path="{d}/attribute-map.xml"/>
    <CredentialResolver type="File" use="signing" key="{d}/shib-sp.key"
        certificate="{d}/shib-sp.pem"/>
  </ApplicationDefaults>
  <SecurityPolicyProvider type="XML" validate="true" path="/etc/shibboleth/security-policy.xml"/>
  <ProtocolProvider type="XML" validate="true" reloadChanges="false"
      path="/etc/shibboleth/protocols.xml"/>
</SPConfig>
""")
    (
        d / "attribute-map.xml"
    ).write_text("""<Attributes xmlns="urn:mace:shibboleth:2.0:attribute-map"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Attribute name="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" id="persistent-id">
    <AttributeDecoder xsi:type="NameIDAttributeDecoder" formatter="$Name"/>
  </Attribute>
  <Attribute name="mail" id="mail"
      nameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"/>
</Attributes>
""")
    for name in ("shibd", "native"):
        (d / f"{name}.logger").write_text(f"""log4j.rootCategory=INFO, log
log4j.appender.log=org.apache.log4j.FileAppender
log4j.appender.log.fileName={d}/{name}.log
log4j.appender.log.layout=org.apache.log4j.PatternLayout
log4j.appender.log.layout.ConversionPattern=%d %p %c: %m%n
""")


PAGE = """<!DOCTYPE html><html><body><pre id="who">
user=<!--#echo var="REMOTE_USER" -->
nameid=<!--#echo var="MELLON_NAME_ID" -->
mail=<!--#echo var="MELLON_mail" -->
groups=<!--#echo var="MELLON_memberOf" -->
shib_user=<!--#echo var="persistent-id" -->
shib_mail=<!--#echo var="mail" -->
email=<!--#echo var="OIDC_CLAIM_email" -->
name=<!--#echo var="OIDC_CLAIM_name" -->
</pre></body></html>
"""


def _instance(d: Path, name: str, modules: list[str], server: Path, key: Path) -> str:
    """What every Apache instance of the test has: its own pid file, logs and runtime dir,
    one child process, TLS with the gateway's dev certificate, SSI pages."""
    run = d / f"{name}-run"
    run.mkdir()
    loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in modules)
    return f"""
ServerRoot {d}
ServerName 127.0.0.1
PidFile {run}/httpd.pid
DefaultRuntimeDir {run}
Mutex file:{run}
{loads}
User www-data
Group www-data
ErrorLog {d}/{name}-error.log
LogLevel warn
LogFormat "%h %{{%s}}t \\"%r\\" %>s" short
CustomLog {d}/{name}-access.log short
ServerLimit 1
StartServers 1
ThreadsPerChild 8
MaxRequestWorkers 8
MinSpareThreads 1
MaxSpareThreads 8
TypesConfig /etc/mime.types
DocumentRoot {d}/www
AddType text/html .shtml
AddOutputFilter INCLUDES .shtml
SSLEngine on
SSLCertificateFile {server}
SSLCertificateKeyFile {key}
SSLSessionCache none
"""


BASE_MODULES = ["mpm_event", "authn_core", "authz_core", "authz_user", "mime", "include"]
BASE_MODULES += ["socache_shmcb", "ssl"]


def _sso_conf(sps: Sps, gateway_url: str, server: Path, key: Path, ca: Path) -> str:
    """mod_auth_mellon and mod_auth_openidc, one instance."""
    d = sps.dir
    head = _instance(d, "sso", [*BASE_MODULES, "auth_mellon", "auth_openidc"], server, key)
    return (
        head
        + f"""
Listen 127.0.0.1:{sps.mellon_port}
<VirtualHost 127.0.0.1:{sps.mellon_port}>
  <Directory {d}/www>
    Options +Includes
    Require all granted
  </Directory>
  <Location />
    MellonEndpointPath /mellon
    MellonSPentityId {sps.mellon_entity}
    MellonSPPrivateKeyFile {d}/mellon-sp.key
    MellonSPCertFile {d}/mellon-sp.pem
    MellonSPMetadataFile {d}/mellon-sp.xml
    MellonIdPMetadataFile {d}/idp-metadata.xml
    MellonSecureCookie On
    MellonSessionLength 300
  </Location>
  <Location /app>
    AuthType Mellon
    MellonEnable auth
    Require valid-user
  </Location>
</VirtualHost>

Listen 127.0.0.1:{sps.openidc_port}
<VirtualHost 127.0.0.1:{sps.openidc_port}>
  <Directory {d}/www>
    Options +Includes
    Require all granted
  </Directory>
  OIDCProviderMetadataURL {gateway_url}/.well-known/openid-configuration
  OIDCCABundlePath {ca}
  OIDCClientID {OIDC_CLIENT}
  OIDCClientSecret {OIDC_SECRET}
  OIDCRedirectURI {sps.openidc_redirect}
  OIDCCryptoPassphrase overcast-test-passphrase
  OIDCScope "openid email profile"
  OIDCPKCEMethod S256
  OIDCRemoteUserClaim email
  <Location /app>
    AuthType openid-connect
    Require valid-user
  </Location>
</VirtualHost>
"""
    )


def _shib_apache_conf(sps: Sps, server: Path, key: Path) -> str:
    """mod_shib in an instance of its own: beside mod_auth_mellon, mellon's sessions failed
    authorization (401 after a good response)."""
    d = sps.dir
    head = _instance(d, "shib", BASE_MODULES, server, key)
    return (
        head
        + f"""
LoadModule mod_shib {MODULES}/mod_shib.so
ShibConfig {d}/shibboleth2.xml
ShibCompatValidUser Off

Listen 127.0.0.1:{sps.shib_port}
<VirtualHost 127.0.0.1:{sps.shib_port}>
  <Directory {d}/www>
    Options +Includes
    Require all granted
  </Directory>
  <Location /Shibboleth.sso>
    SetHandler shib
  </Location>
  <Location /app>
    AuthType shibboleth
    ShibRequestSetting requireSession 1
    ShibUseEnvironment On
    Require shib-session
  </Location>
</VirtualHost>

"""
    )


def _start(argv: list[str], d: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=open(d / f"{name}-stderr.log", "wb"),
    )


def _alive(proc: subprocess.Popen[bytes], d: Path, name: str) -> None:
    if proc.poll() is not None:
        logs = [p.read_text() for p in sorted(d.glob(f"{name}*.log"))]
        raise AssertionError(f"{name} exited: {' '.join(logs)[-2000:]}")


@contextmanager
def apache(sps: Sps, gateway_url: str, server: Path, key: Path, ca: Path) -> Iterator[Sps]:
    """Run the SPs once the gateway serves its IdP metadata: shibd, then two Apache
    instances (mellon + openidc, and shib)."""
    d = sps.dir
    trust = ssl.create_default_context(cafile=str(ca))
    metadata = httpx.get(f"{gateway_url}/.overcast/saml/metadata", verify=trust)
    assert metadata.status_code == 200, metadata.text[:500]
    (d / "idp-metadata.xml").write_text(metadata.text)
    _shib_conf(sps, f"{gateway_url}/.overcast/saml/metadata")
    (d / "www" / "app").mkdir(parents=True)
    (d / "www" / "app" / "index.shtml").write_text(PAGE)
    for name, source in (("server.pem", server), ("server.key", key), ("ca.pem", ca)):
        shutil.copy(source, d / name)
    server, key = d / "server.pem", d / "server.key"
    (d / "sso.conf").write_text(_sso_conf(sps, gateway_url, server, key, d / "ca.pem"))
    (d / "shib.conf").write_text(_shib_apache_conf(sps, server, key))
    www = pwd.getpwnam("www-data")
    os.chmod(d, 0o755)
    for path in [d, *d.rglob("*")]:
        os.chown(path, www.pw_uid, www.pw_gid)
    config = str(d / "shibboleth2.xml")
    procs = {
        "shibd": _start(
            ["shibd", "-F", "-f", "-c", config, "-p", str(d / "shibd.pid"), *USER],
            d,
            "shibd",
        )
    }
    try:

        def shibd_up() -> bool:
            _alive(procs["shibd"], d, "shibd")
            return (d / "shibd.sock").exists()

        until(shibd_up, 30, "shibd to listen")
        for name in ("sso", "shib"):
            procs[name] = _start(
                ["apache2", "-f", str(d / f"{name}.conf"), "-DFOREGROUND"], d, name
            )

        def up() -> bool:
            for name, proc in procs.items():
                _alive(proc, d, name)
            try:
                for port in (sps.openidc_port, sps.shib_port):
                    httpx.get(f"https://127.0.0.1:{port}/", verify=trust)
                return True
            except httpx.HTTPError:
                return False

        until(up, 20, "apache2 (mellon, openidc; shib) to listen")
        yield sps
    finally:
        netns.stop(list(procs.values()), 15)
