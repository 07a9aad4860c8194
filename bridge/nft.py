"""The nftables tables the bridge keeps in a site's namespace: each one is rendered whole
from the plan, carries a digest of its rules in its comment, and is replaced in one nft
transaction only when that digest differs, so re-applying changes nothing and no table is
ever half-written."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from bridge.netns import ApplyError, run

_COMMENT_RE = re.compile(r'^\s*comment "([^"]*)"$', re.MULTILINE)


def digest(rules: Any) -> str:
    """What a table's comment says of its rules (`rules`: anything JSON can write)."""
    return "plan " + hashlib.sha256(json.dumps(rules).encode()).hexdigest()[:16]


def replace(body: list[str], family: str, table: str, comment: str | None) -> str:
    """The nft script that makes `table` hold exactly `body` (its chains and sets), created,
    emptied and rebuilt in one transaction; with no `comment` (nothing to hold), no table."""
    lines = [f"table {family} {table}", f"delete table {family} {table}"]
    if comment is not None:
        lines += [f"table {family} {table} {{", f'  comment "{comment}"', *body, "}"]
    return "\n".join(lines) + "\n"


def ensure(
    netns: str, family: str, table: str, body: list[str], comment: str | None, what: str, fix: str
) -> bool:
    """Make `table` hold `body` under `comment` (None: no table), unless its comment already
    says so; True if it changed."""
    if current(netns, family, table, fix) == comment:
        return False
    nft(netns, ["-f", "-"], what, replace(body, family, table, comment), fix)
    return True


def remove(netns: str, family: str, table: str, fix: str) -> bool:
    """Remove `table` if it is there; True if it was."""
    return ensure(netns, family, table, [], None, f"removing {table}", fix)


def current(netns: str, family: str, table: str, fix: str) -> str | None:
    """The digest in `table`'s comment; "" for a table without one, None if none exists."""
    tables = nft(netns, ["list", "tables", family], "listing nftables tables", None, fix)
    if f"table {family} {table}" not in tables.splitlines():
        return None
    # nft 1.0.6 leaves table comments out of its JSON; the text listing has them.
    listing = nft(netns, ["list", "table", family, table], f"listing {table}", None, fix)
    found = _COMMENT_RE.search(listing)
    return found.group(1) if found else ""


def nft(netns: str, args: list[str], what: str, stdin: str | None, fix: str) -> str:
    try:
        return run(netns, ["nft", *args], what=what, fix=fix, stdin=stdin)
    except FileNotFoundError:
        raise ApplyError(f"{what} in namespace {netns}: nft is not installed; {fix}") from None
