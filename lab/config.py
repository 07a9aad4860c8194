"""The `lab:` section of overcast.yaml: how the one-machine lab builds each site."""

from __future__ import annotations

from pydantic import Field

from overcast.model import Model


class LabConfig(Model):
    hosts_per_segment: int = Field(1, ge=1, le=8)
