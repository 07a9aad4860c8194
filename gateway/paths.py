"""One canonical form of a request path, used both to decide and to forward.

Gateways get bypassed when the policy sees one path and the upstream another: `/admin%2Fx`,
`/public/..%2Fadmin`, `/admin;x/`, `/ADMIN` on a case-folding upstream. `normalise` decodes
once, refuses what has no single meaning (encoded `/`, `\\`, NUL, control characters, double
encoding, `..;`), removes dot segments (RFC 3986 section 5.2.4) and collapses repeated
slashes. The result is re-encoded with only the characters a path segment may carry raw
(RFC 3986 section 3.3), so the upstream parses exactly what the policy matched.

>>> normalise("/a/./b/../%63//d/")
'/a/c/d/'
"""

from __future__ import annotations

import re
import urllib.parse

MAX_PATH = 8192

# RFC 3986 section 3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@".
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadPath(ValueError):
    """The request path cannot be given one unambiguous meaning; answer 400."""


def _refuse(raw: str, why: str) -> BadPath:
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    return BadPath(f"request path {shown!r}: {why}")


def _check_raw(raw: str) -> None:
    if not raw.startswith("/"):
        raise _refuse(raw, "must start with '/' (origin-form, RFC 9112 section 3.2.1)")
    if len(raw) > MAX_PATH:
        raise _refuse(raw, f"longer than {MAX_PATH} characters")
    for ch in raw:
        if ord(ch) < 0x21 or ord(ch) > 0x7E:
            raise _refuse(raw, f"contains raw character {ch!r}; percent-encode it")
    if "\\" in raw:
        raise _refuse(raw, "contains '\\', which some servers read as '/'; use '/'")
    if _BAD_PCT.search(raw):
        raise _refuse(raw, "has a '%' not followed by two hex digits")
    for match in _PCT.finditer(raw):
        byte = int(match.group(1), 16)
        if byte < 0x20 or byte == 0x7F:
            raise _refuse(raw, f"encodes control character {match.group(0)}")
        if byte in (0x2F, 0x5C):
            raise _refuse(
                raw, f"{match.group(0)} encodes a path separator; send '/' unencoded instead"
            )


def _decode_segment(raw: str, segment: str) -> str:
    try:
        decoded = urllib.parse.unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise _refuse(raw, "percent-encoding is not valid UTF-8") from None
    if _PCT.search(decoded):
        raise _refuse(raw, "is percent-encoded twice (e.g. %252F); encode it once")
    for ch in decoded:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            raise _refuse(raw, f"decodes to control character {ch!r}")
    return decoded


def _remove_dot_segments(segments: list[str], raw: str) -> list[str]:
    """RFC 3986 section 5.2.4 over decoded segments; `..` above the root stays at the root."""
    out: list[str] = []
    for seg in segments:
        # Servlet containers drop ';params' before resolving, so '..;' climbs there.
        if seg.split(";", 1)[0] in (".", "..") and ";" in seg:
            raise _refuse(raw, f"segment {seg!r} is a dot segment with parameters")
        if seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return out


def normalise(raw_path: str) -> str:
    """The canonical, encoded form of `raw_path` (no query), or raise `BadPath`."""
    _check_raw(raw_path)
    parts = raw_path.split("/")[1:]
    decoded = [_decode_segment(raw_path, p) for p in parts]
    # A trailing '/', '.' or '..' leaves the path ending in '/' (RFC 3986 section 5.2.4).
    trailing = decoded[-1] in ("", ".", "..")
    kept = _remove_dot_segments([s for s in decoded if s != ""], raw_path)
    path = "/" + "/".join(urllib.parse.quote(s, safe=_SEGMENT_SAFE) for s in kept)
    if trailing and kept:
        path += "/"
    return path
