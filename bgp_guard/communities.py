"""BGP communities as a network engineer writes them: "64500:100" (RFC 1997), "64500:1:2"
(large, RFC 8092), or the name of a well-known one ("BLACKHOLE").

    >>> parse("BLACKHOLE"), parse("4200000001:8092:1")
    ((65535, 666), (4200000001, 8092, 1))
    >>> text((65535, 666))
    '65535:666 (BLACKHOLE)'
"""

from __future__ import annotations

Community = tuple[int, int]
LargeCommunity = tuple[int, int, int]

# Well-known communities (IANA "BGP Well-known Communities").
WELL_KNOWN: dict[Community, str] = {
    (65535, 0): "GRACEFUL_SHUTDOWN",  # RFC 8326
    (65535, 1): "ACCEPT_OWN",  # RFC 7611
    (65535, 6): "LLGR_STALE",  # RFC 9494
    (65535, 7): "NO_LLGR",  # RFC 9494
    (65535, 666): "BLACKHOLE",  # RFC 7999
    (65535, 65281): "NO_EXPORT",  # RFC 1997
    (65535, 65282): "NO_ADVERTISE",  # RFC 1997
    (65535, 65283): "NO_EXPORT_SUBCONFED",  # RFC 1997
    (65535, 65284): "NOPEER",  # RFC 3765
}
_BY_NAME = {name: value for value, name in WELL_KNOWN.items()}


def parse(value: str) -> Community | LargeCommunity:
    """A community or large community from its usual text; ValueError names the fix."""
    name = value.strip().upper().replace("-", "_")
    if name in _BY_NAME:
        return _BY_NAME[name]
    parts = value.strip().split(":")
    if len(parts) in (2, 3) and all(p.isdigit() for p in parts):
        numbers = tuple(int(p) for p in parts)
        limit = 0xFFFF if len(numbers) == 2 else 0xFFFFFFFF
        if all(n <= limit for n in numbers):
            return numbers  # type: ignore[return-value]
    raise ValueError(
        f"{value!r} is not a community; write 64500:100 (each part up to 65535), "
        f"64500:1:2 for a large community (RFC 8092), or one of {', '.join(sorted(_BY_NAME))}"
    )


def text(community: Community | LargeCommunity) -> str:
    """ "a:b" or "a:b:c", with the well-known name when there is one."""
    plain = ":".join(map(str, community))
    name = WELL_KNOWN.get(community) if len(community) == 2 else None
    return f"{plain} ({name})" if name else plain
