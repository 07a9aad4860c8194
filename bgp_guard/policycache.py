"""The compiled guard policy of a config, kept between runs of `guard replay`.

Validating the guard: section takes the schema library: importing pydantic and building
the schema cost more CPU than replaying a few thousand RIS-live messages. A replay of a
config already seen loads its `Compiled` policy instead and never imports pydantic.

An entry is found by the SHA-256 of the config file's bytes together with the source of
the code that reads and compiles a config (so an upgrade or an edit of that code misses),
and is used only while every file the config merged in (guard.bgpalerter_file) still has
the bytes it had. A pickle runs code when it is loaded, as the .pyc files beside the
modules do: the cache directory ($XDG_CACHE_HOME/overcast, else ~/.cache/overcast) is made
0700, and an entry is read only if it and its directory belong to the user and nobody else
can write them. Anything amiss (no home, a full disk, a damaged entry) is a miss, never an
error: the config is then validated as without a cache.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from bgp_guard.policy import Policy

KEEP = 32  # entries kept; the oldest go first
_PACKAGES = Path(__file__).resolve().parents[1]
# The code between the config's bytes and a Policy: the schema, the YAML reader, the
# BGPalerter import and the compilers. A change to any of them makes every entry stale.
_CODE = (
    "overcast/configfile.py",
    "overcast/model.py",
    "overcast/yamlsrc.py",
    "bgp_guard/config.py",
    "bgp_guard/sinks/config.py",
    "bgp_guard/bgpalerter.py",
    "bgp_guard/communities.py",
    "bgp_guard/detect/path.py",
    "bgp_guard/monitored.py",
    "bgp_guard/policy.py",
    "bgp_guard/policycache.py",
    "bgp_guard/cli.py",
)


@dataclass(frozen=True, slots=True)
class Compiled:
    """What a replay needs of a config: the policy, the data files it names (read afresh on
    every run), the notes its BGPalerter import printed, and the digests of the files merged
    into it."""

    policy: Policy
    vrp_file: str | None
    asrel_file: str | None
    aspa_file: str | None
    notes: tuple[str, ...] = ()
    merged: tuple[tuple[str, str], ...] = ()  # (path, SHA-256 of its bytes)


def directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "overcast" / "guard-policy"


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _entry(config_path: str) -> Path | None:
    """The entry's file, or None for a config that is not a regular file: a pipe
    (`--config <(...)`) can be read once only, by the validation."""
    if not Path(config_path).is_file():
        return None
    key = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for name in _CODE:
        key.update((_PACKAGES / name).read_bytes())
    key.update(Path(config_path).read_bytes())
    return directory() / f"{key.hexdigest()}.pickle"


def _trusted(path: Path) -> bool:
    """Ours, and writable by nobody else (an entry and its directory)."""
    for p in (path.parent, path):
        st = p.stat()
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def load(config_path: str) -> Compiled | None:
    """The compiled policy of `config_path` if this config was compiled before, else None."""
    try:
        entry = _entry(config_path)
        if entry is None or not entry.exists() or not _trusted(entry):
            return None
        compiled = pickle.loads(entry.read_bytes())
        if not isinstance(compiled, Compiled):
            return None
        if any(digest(path) != sha for path, sha in compiled.merged):
            return None
        return compiled
    except Exception:  # a miss: the caller validates the config itself
        return None


def store(config_path: str, compiled: Compiled) -> None:
    """Keep `compiled` for the next run on the same config; drops the oldest entries."""
    import tempfile  # and shutil with it: not on a cached replay's start-up

    try:
        entry = _entry(config_path)
        if entry is None:
            return
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(compiled, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(scratch, entry)
        entries = sorted(entry.parent.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)
    except (OSError, pickle.PicklingError):
        pass  # no cache this time: the next run validates again
