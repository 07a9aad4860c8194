"""The `attest:` section of overcast.yaml: which sites must prove their state, and the
policy they are held to.

```yaml
attest:
  sites: [cloud-a, cloud-b]      # default: every site
  interval_s: 10                 # re-attest each admitted site this often
  measure:                       # what a site measures before it joins: name -> path
    overcast: package            #   (the word `package`: the installed Overcast packages)
    wireguard-go: /usr/bin/wireguard-go
    ovs-vswitchd: /usr/sbin/ovs-vswitchd
  accept:                        # the known-good digests (`overcast attest policy` prints them)
    wireguard-go: [9f1c...]
```

The site's rendered config is always measured too (as `config`); its accepted digest is
computed from this file, so a config edited at the site outside Overcast fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, Field

from overcast.model import ConfigError, Model

# PCR 15: a static-OS PCR (TCG PC Client Platform Firmware Profile, section 2.3.4: PCRs
# 8-15 are for the OS) that no firmware or boot loader extends, and that only a TPM reset
# (a reboot) clears, unlike PCR 16 (debug) or 23 (application, resettable by software).
DEFAULT_PCR = 15
PACKAGE = "package"  # `measure:` value for the installed Overcast packages
CONFIG_EVENT = "config"  # the event name of the site's rendered config
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_ITEM_RE = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")


def _sha256_hex(value: str) -> str:
    value = value.lower()
    if not _DIGEST_RE.match(value):
        raise ValueError(
            f"{value!r} is not a SHA-256 digest (64 hex digits); take it from "
            "'overcast attest policy' on a known-good install"
        )
    return value


def _item(value: str) -> str:
    if not _ITEM_RE.match(value) or value == CONFIG_EVENT:
        raise ValueError(
            f"{value!r} is not a measurement name; use 1-32 lower-case letters, digits, "
            f"'.', '_' or '-' (not {CONFIG_EVENT!r}, which is the site's config)"
        )
    return value


Digest = Annotated[str, AfterValidator(_sha256_hex)]
Item = Annotated[str, AfterValidator(_item)]


def _default_measure() -> dict[str, str]:
    return {
        "overcast": PACKAGE,
        "wireguard-go": "/usr/bin/wireguard-go",
        "ovs-vswitchd": "/usr/sbin/ovs-vswitchd",
    }


class AttestConfig(Model):
    # None: every site of the config must attest.
    sites: tuple[str, ...] | None = None
    pcr: int = Field(DEFAULT_PCR, ge=8, le=15)
    # A changed site is cut off at most this long (plus one quote, about 0.5 s) after the
    # change is measured. 10 s keeps a TPM quote (~0.3 s of TPM time) a rare event.
    interval_s: float = Field(10.0, ge=1.0, le=86_400)
    measure: dict[Item, str] = Field(default_factory=_default_measure, min_length=1)
    accept: dict[Item, tuple[Digest, ...]] = {}

    def required(self, all_sites: list[str]) -> list[str]:
        """The sites that must attest, in config order."""
        wanted = set(self.sites) if self.sites is not None else set(all_sites)
        return [s for s in all_sites if s in wanted]

    def problems(self, all_sites: list[str]) -> Iterator[ConfigError]:
        for i, site in enumerate(self.sites or ()):
            if site not in all_sites:
                yield ConfigError(
                    f"attest.sites.{i}",
                    f"unknown site {site!r}; use one of: {', '.join(all_sites)}",
                )
        for name, path in self.measure.items():
            if path != PACKAGE and not path.startswith("/"):
                yield ConfigError(
                    f"attest.measure.{name}",
                    f"{path!r} is neither an absolute path nor {PACKAGE!r}; give the "
                    "file's absolute path at the site",
                )
        for name in self.accept:
            if name not in self.measure:
                yield ConfigError(
                    f"attest.accept.{name}",
                    f"{name!r} is not measured; add it under attest.measure or remove it",
                )
