"""AS relationships (CAIDA serial-1/serial-2 `as-rel` files) and the valley-free check.

A route is valley-free (Gao, "On inferring autonomous system relationships", 2001; RFC 7908
section 2 calls the violations route leaks) when, walked from its origin, it climbs zero or
more customer->provider links, crosses at most one peer link, then only descends
provider->customer links. An AS that learned a route from a peer or provider and passed it
to another peer or provider leaked it.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import NamedTuple

from bgp_guard.errors import InputError
from bgp_guard.update import PathElement


class Hop(enum.Enum):
    UP = "customer to provider"
    FLAT = "peer to peer"
    DOWN = "provider to customer"


class Leak(NamedTuple):
    leaker: int
    learned_from: int
    learned_over: Hop
    sent_to: int
    sent_over: Hop

    def explain(self) -> str:
        # The leaker received over `learned_over` and sent over `sent_over`; name the other
        # end of each link as the leaker sees it.
        sender = {Hop.UP: "customer", Hop.FLAT: "peer", Hop.DOWN: "provider"}
        receiver = {Hop.UP: "provider", Hop.FLAT: "peer", Hop.DOWN: "customer"}
        return (
            f"AS{self.leaker} learned the route from its {sender[self.learned_over]} "
            f"AS{self.learned_from} and passed it to its {receiver[self.sent_over]} "
            f"AS{self.sent_to}"
        )


_WHOM = {-1: Hop.DOWN, 0: Hop.FLAT, 1: Hop.UP}


class AsRelationships:
    def __init__(self) -> None:
        # (a << 32 | b) -> what sending from a to b is: 1 up (b is a's provider), 0 peer,
        # -1 down (b is a's customer). One int key per direction keeps a 500k-link file small.
        self._rel: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._rel) // 2

    def add_provider(self, provider: int, customer: int) -> None:
        self._rel[provider << 32 | customer] = -1
        self._rel[customer << 32 | provider] = 1

    def add_peers(self, a: int, b: int) -> None:
        self._rel[a << 32 | b] = 0
        self._rel[b << 32 | a] = 0

    def hop(self, sender: int, receiver: int) -> Hop | None:
        rel = self._rel.get(sender << 32 | receiver)
        return None if rel is None else _WHOM[rel]

    def find_leak(self, as_path: tuple[PathElement, ...]) -> Leak | None:
        """The first valley in `as_path` (collector side first, origin last), walking from
        the origin. Hops with an unknown relationship or an AS_SET are not judged."""
        path: list[int] = []
        for element in as_path:
            if isinstance(element, frozenset):
                path.clear()  # nothing before an AS_SET is comparable with after it
            elif not path or path[-1] != element:  # prepending
                path.append(element)
        previous: Hop | None = None
        for i in range(len(path) - 1, 0, -1):
            sender, receiver = path[i], path[i - 1]
            hop = self.hop(sender, receiver)
            if previous in (Hop.FLAT, Hop.DOWN) and hop in (Hop.UP, Hop.FLAT):
                assert previous is not None and hop is not None
                return Leak(sender, path[i + 1], previous, receiver, hop)
            previous = hop
        return None


def load_asrel(path: str | Path) -> AsRelationships:
    """Read `provider|customer|-1` and `peer|peer|0` lines (a 4th `|source` field, as in
    serial-2, is ignored); `#` lines are comments."""
    path = Path(path)
    rels = AsRelationships()
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.strip().split("|")
                try:
                    a, b, rel = int(fields[0]), int(fields[1]), int(fields[2])
                except (IndexError, ValueError):
                    rel = None
                if rel == -1:
                    rels.add_provider(a, b)
                elif rel == 0:
                    rels.add_peers(a, b)
                else:
                    raise InputError(
                        f"{path}:{number}: {line.strip()!r} is not 'a|b|-1' (a provider of b) "
                        "or 'a|b|0' (peers); give a CAIDA serial-1 as-rel file"
                    )
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read AS relationship file {path}: {exc}") from None
    return rels
