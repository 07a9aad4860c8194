"""SaaS stand-ins from Debian for the gateway's SAML IdP and OpenID provider tests.

One Apache instance of the test's own (its own config dir, pid file and logs; never the
system's), TLS on loopback with the gateway's dev certificate, one port per SP:
- `mellon`: mod_auth_mellon, a SAML 2.0 SP whose metadata (from Debian's
  mellon_create_metadata) asks for signed AuthnRequests;
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

from tests.conftest import require_binaries
from tests.integration.gateway.sso_peers import free_port, until

MODULES = Path("/usr/lib/apache2/modules")
OIDC_CLIENT = "tickets"
OIDC_SECRET = "tickets-secret-0123456789abcdef"


@dataclass(frozen=True)
class Sps:
    dir: Path
    mellon_port: int
    openidc_port: int

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
    def openidc_app(self) -> str:
        return f"https://127.0.0.1:{self.openidc_port}/app/index.shtml"

    @property
    def openidc_redirect(self) -> str:
        return f"https://127.0.0.1:{self.openidc_port}/app/redirect_uri"

    def access_log(self) -> str:
        path = self.dir / "access.log"
        return path.read_text() if path.exists() else ""


@contextmanager
def sp_dir(logs: Path) -> Iterator[Sps]:
    """Ports and the mellon SP's key and metadata, made before the gateway starts (the
    gateway imports the SP metadata; the SP imports the gateway's once it runs)."""
    require_binaries("apache2", "mellon_create_metadata")
    # Apache's children run as www-data: the directory must be theirs to read, so it is not
    # under pytest's root-only tmp directory.
    directory = Path(tempfile.mkdtemp(prefix="overcast-sp-"))
    try:
        sps = Sps(directory, free_port(), free_port())
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
        yield sps
    finally:
        for log in directory.glob("*.log"):  # kept with the test's files, for a failure
            shutil.copy(log, logs / f"apache-{log.name}")
        shutil.rmtree(directory, ignore_errors=True)


PAGE = """<!DOCTYPE html><html><body><pre id="who">
user=<!--#echo var="REMOTE_USER" -->
nameid=<!--#echo var="MELLON_NAME_ID" -->
mail=<!--#echo var="MELLON_mail" -->
groups=<!--#echo var="MELLON_memberOf" -->
email=<!--#echo var="OIDC_CLAIM_email" -->
name=<!--#echo var="OIDC_CLAIM_name" -->
</pre></body></html>
"""


def _conf(sps: Sps, gateway_url: str, server: Path, key: Path, ca: Path) -> str:
    d = sps.dir
    modules = [
        "mpm_event",
        "authn_core",
        "authz_core",
        "authz_user",
        "mime",
        "include",
        "socache_shmcb",
        "ssl",
        "auth_mellon",
        "auth_openidc",
    ]
    loads = "\n".join(
        f"LoadModule {m}_module {MODULES}/mod_{m}.so"
        for m in modules
        if m not in ("auth_mellon", "auth_openidc")
    )
    return f"""
ServerRoot {d}
ServerName 127.0.0.1
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}
Mutex file:{d}
{loads}
LoadModule auth_mellon_module {MODULES}/mod_auth_mellon.so
LoadModule auth_openidc_module {MODULES}/mod_auth_openidc.so
User www-data
Group www-data
ErrorLog {d}/error.log
LogLevel warn auth_mellon:info auth_openidc:info
LogFormat "%h %{{%s}}t \\"%r\\" %>s" short
CustomLog {d}/access.log short
ServerLimit 1
StartServers 1
ThreadsPerChild 8
MaxRequestWorkers 8
TypesConfig /etc/mime.types
MinSpareThreads 1
MaxSpareThreads 8
DocumentRoot {d}/www
AddType text/html .shtml
AddOutputFilter INCLUDES .shtml
SSLEngine on
SSLCertificateFile {server}
SSLCertificateKeyFile {key}
SSLSessionCache none

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


@contextmanager
def apache(sps: Sps, gateway_url: str, server: Path, key: Path, ca: Path) -> Iterator[Sps]:
    """Run the SPs once the gateway serves its IdP metadata."""
    d = sps.dir
    trust = ssl.create_default_context(cafile=str(ca))
    metadata = httpx.get(f"{gateway_url}/.overcast/saml/metadata", verify=trust)
    assert metadata.status_code == 200, metadata.text[:500]
    (d / "idp-metadata.xml").write_text(metadata.text)
    (d / "www" / "app").mkdir(parents=True)
    (d / "www" / "app" / "index.shtml").write_text(PAGE)
    for name, source in (("server.pem", server), ("server.key", key), ("ca.pem", ca)):
        shutil.copy(source, d / name)
    (d / "httpd.conf").write_text(
        _conf(sps, gateway_url, d / "server.pem", d / "server.key", d / "ca.pem")
    )
    www = pwd.getpwnam("www-data")
    os.chmod(d, 0o755)
    for path in d.rglob("*"):
        os.chown(path, www.pw_uid, www.pw_gid)
    proc = subprocess.Popen(
        ["apache2", "-f", str(d / "httpd.conf"), "-DFOREGROUND"],
        stdout=subprocess.DEVNULL,
        stderr=open(d / "stderr.log", "wb"),  # noqa: SIM115 - closed with the process
    )

    def up() -> bool:
        if proc.poll() is not None:
            logs = [(d / n).read_text() for n in ("stderr.log", "error.log") if (d / n).exists()]
            raise AssertionError(f"apache2 exited: {' '.join(logs)[-2000:]}")
        try:
            httpx.get(f"https://127.0.0.1:{sps.openidc_port}/", verify=trust)
            return True
        except httpx.HTTPError:
            return False

    try:
        until(up, 20, "apache2 with mellon and openidc to listen")
        yield sps
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
