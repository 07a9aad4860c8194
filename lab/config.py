"""The `lab:` section of overcast.yaml: how the one-machine lab builds each site."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from overcast.model import Model, Prefix


class LabConfig(Model):
    hosts_per_segment: int = Field(1, ge=1, le=8)
    # Addresses the lab gives the parts it invents. Both live only inside the lab's own
    # namespaces; the defaults are the RFC 2544 benchmarking range (RFC 5735 section 4),
    # which no real network routes.
    management: Prefix = ipaddress.ip_network("198.18.0.0/24")
    hosts: Prefix = ipaddress.ip_network("198.19.0.0/16")

    @field_validator("management")
    @classmethod
    def _management_fits(cls, value: Prefix) -> Prefix:
        if value.version != 4 or value.prefixlen > 28:
            raise ValueError(
                f"{value} is too small for the management network; use an IPv4 /28 or "
                "larger (e.g. 198.18.0.0/24)"
            )
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts_fit(cls, value: Prefix) -> Prefix:
        # One /24 per L2 segment is carved out of this prefix.
        if value.version != 4 or value.prefixlen > 24:
            raise ValueError(
                f"{value} is too small for lab hosts; use an IPv4 /24 or larger "
                "(e.g. 198.19.0.0/16: one /24 per L2 segment)"
            )
        return value
