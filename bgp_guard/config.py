"""The `guard:` section of overcast.yaml: which prefixes we watch and what is expected of them."""

from __future__ import annotations

from pydantic import Field

from overcast.model import ConfigError, Model, Prefix

ASN = int  # 4-byte AS numbers, RFC 6793


class MonitoredPrefix(Model):
    origins: tuple[int, ...] = Field(min_length=1)
    upstreams: tuple[int, ...] = ()


class GuardConfig(Model):
    prefixes: dict[Prefix, MonitoredPrefix] = {}

    def problems(self) -> list[ConfigError]:
        """Checks that need the whole section; paths are relative to the file root."""
        return []
