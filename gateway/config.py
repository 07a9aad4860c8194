"""The `gateway:` section of overcast.yaml: the identity provider and the apps it fronts."""

from __future__ import annotations

from typing import Any

from overcast.model import Model


class App(Model):
    upstream: str
    allow: dict[str, Any] = {}


class GatewayConfig(Model):
    issuer: str
    apps: dict[str, App] = {}
