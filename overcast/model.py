"""Base pieces every part's config schema is built from.

Parts declare immutable pydantic models on `Model`; `overcast.config` composes them into the
one `overcast.yaml` schema. Validators raise `ValueError` whose text names the fix; the
loader prefixes the dotted path and the file position.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Model(BaseModel):
    """Immutable, strict about unknown keys: a typo must never be silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


@dataclass(frozen=True, order=True)
class ConfigError:
    """One problem in a config file: where it is and what to do about it."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def render(self, source: str = "") -> str:
        where = source
        if self.line is not None:
            where = f"{source}:{self.line}:{self.column}" if source else f"line {self.line}"
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.path}: {self.message}" if self.path else f"{prefix}{self.message}"


_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")


def _name(value: str) -> str:
    # Names become parts of interface, namespace and OVS bridge names, which Linux caps at
    # 15 characters (IFNAMSIZ - 1); 10 leaves room for our prefixes.
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name; use 1-10 lower-case letters, digits or '-', "
            "starting with a letter (e.g. 'hq', 'cloud-a')"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


def _address(value: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address; write it like 192.0.2.1 or 2001:db8::1"
        ) from None


def parse_prefix(value: Any) -> IPNetwork:
    """An IP prefix written exactly: host bits set are refused, not masked, because they
    mean a typo or an address where a prefix belongs. The ValueError names the input and
    the fix; every part that reads a prefix from its config uses this one."""
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP prefix; write it like 198.51.100.0/24 or 2001:db8::/32"
        ) from None
    raise ValueError(f"{text!r} has host bits set; write the prefix {loose}")


def parse_underlay(value: Any) -> IPAddress | dict[str, IPAddress]:
    """A site's underlay: one address, or a mapping of underlay network name -> address."""
    if not isinstance(value, dict):
        return _address(value)
    if not value:
        raise ValueError(
            "no underlay networks given; write {NETWORK: ADDRESS, ...}, e.g. "
            "{isp-a: 192.0.2.1, isp-b: 198.51.100.1}"
        )
    out: dict[str, IPAddress] = {}
    for network, address in value.items():
        try:
            out[_name(str(network))] = _address(address)
        except ValueError as exc:
            raise ValueError(f"network {network}: {exc}") from None
    return out


Address = Annotated[IPAddress, BeforeValidator(_address)]
Prefix = Annotated[IPNetwork, BeforeValidator(parse_prefix)]
