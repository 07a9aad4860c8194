"""One Prometheus registry for the whole process; each part registers its own metrics on it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose REGISTRY on http://addr:port/metrics (loopback unless the operator says otherwise)."""
    start_http_server(port, addr=addr, registry=REGISTRY)
