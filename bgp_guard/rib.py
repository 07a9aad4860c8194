"""The routes every peer currently has, kept small enough for full tables.

Per peer slot (a peer, or one ADD-PATH path id of a peer, RFC 7911) a dict maps an int
prefix key to the AS path. AS paths are interned: a full table holds about a million
prefixes but only a few hundred thousand distinct paths, so each route costs one dict
entry and one int, not a tuple of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from bgp_guard.update import PathElement, Prefix

Path = tuple[PathElement, ...]


def prefix_key(prefix: Prefix) -> int:
    """One int per prefix, distinct across IPv4 and IPv6."""
    return (prefix.value << 9) | (prefix.length << 1) | (prefix.version == 6)


def key_prefix(key: int) -> Prefix:
    """The prefix of a `prefix_key`."""
    return Prefix(6 if key & 1 else 4, key >> 9, (key >> 1) & 0xFF)


class Rib:
    def __init__(self) -> None:
        self._slots: dict[tuple[str, int | None], int] = {}
        self.peers: list[str] = []  # slot -> peer address
        self._routes: list[dict[int, Path]] = []
        self._paths: dict[Path, Path] = {}

    def slot(self, peer_ip: str, path_id: int | None) -> int:
        slot = self._slots.get((peer_ip, path_id))
        if slot is None:
            slot = self._slots[(peer_ip, path_id)] = len(self.peers)
            self.peers.append(peer_ip)
            self._routes.append({})
        return slot

    def apply(self, slot: int, key: int, as_path: Path | None) -> bool:
        """Install (`as_path`) or withdraw (None) a route; False if nothing changed."""
        routes = self._routes[slot]
        if as_path is None:
            return routes.pop(key, None) is not None
        as_path = self._paths.setdefault(as_path, as_path)
        if routes.get(key) is as_path:
            return False
        routes[key] = as_path
        return True

    def drop_peer(self, peer_ip: str) -> list[tuple[int, dict[int, Path]]]:
        """Withdraw every route of `peer_ip`, in all its ADD-PATH slots; returns the routes
        removed, per slot."""
        dropped = []
        for slot, peer in enumerate(self.peers):
            if peer == peer_ip and self._routes[slot]:
                dropped.append((slot, self._routes[slot]))
                self._routes[slot] = {}
        return dropped

    def compact(self) -> None:
        """Forget interned paths no route uses any more. Interning never frees a path on
        its own, so a long-running watch calls this when the table has grown well past the
        live routes."""
        self._paths = {p: p for routes in self._routes for p in routes.values()}

    def holders(self, key: int) -> list[tuple[int, Path]]:
        """(slot, AS path) of every route to the prefix `key`: one probe per slot."""
        return [(slot, routes[key]) for slot, routes in enumerate(self._routes) if key in routes]

    def items(self) -> Iterator[tuple[int, int, Path]]:
        """(slot, prefix key, AS path) of every route held."""
        for slot, routes in enumerate(self._routes):
            for key, as_path in routes.items():
                yield slot, key, as_path

    def route(self, slot: int, key: int) -> Path | None:
        return self._routes[slot].get(key)

    def __len__(self) -> int:
        return sum(len(r) for r in self._routes)

    @property
    def distinct_paths(self) -> int:
        return len(self._paths)
