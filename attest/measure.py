"""What a site measures before it joins: its software and its rendered config.

Digests are SHA-256 of file content. The Overcast packages are many small files, so they
are one measurement: the digest of their sorted manifest (path and digest of every file),
which changes when any file of them changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from attest.config import CONFIG_EVENT, PACKAGE
from overcast.config import OvercastConfig

# The distribution's top-level packages (pyproject.toml, tool.setuptools.packages.find).
PACKAGES = ("overcast", "bridge", "controller", "bgp_guard", "gateway", "lab", "attest")
_CHUNK = 1 << 20


class MeasureError(Exception):
    """A measured file cannot be read; the message names it."""


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise MeasureError(f"cannot measure {path}: {exc.strerror}") from None
    return h.hexdigest()


def package_digest() -> str:
    """The digest of the installed Overcast packages' manifest."""
    lines = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                lines.append(f"{name}/{path.relative_to(root)}\0{file_digest(path)}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def measure(items: dict[str, str], root: Path = Path("/")) -> dict[str, str]:
    """name -> digest of each `attest.measure` item; paths are taken under `root` (the
    lab gives each site its own root with copies of the binaries)."""
    return {
        name: package_digest() if where == PACKAGE else file_digest(root / where.lstrip("/"))
        for name, where in items.items()
    }


def render_site_config(config: OvercastConfig, site: str) -> bytes:
    """The part of the config that shapes `site`, canonically (sorted JSON): the site, its
    segments and the bridge settings. The enterprise writes it to the site, the site
    measures it, and the verifier computes the same bytes to know the accepted digest."""
    data = {
        "site": site,
        "settings": config.sites[site].model_dump(mode="json"),
        "segments": {n: s.model_dump(mode="json") for n, s in config.segments_at(site).items()},
        "bridge": config.bridge.model_dump(mode="json"),
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def config_digest(config: OvercastConfig, site: str) -> str:
    return hashlib.sha256(render_site_config(config, site)).hexdigest()


def measure_all(items: dict[str, str], site_config: Path, root: Path = Path("/")) -> dict[str, str]:
    """Every measurement a site makes: the policy's items and its rendered config."""
    return measure(items, root) | {CONFIG_EVENT: file_digest(site_config)}
