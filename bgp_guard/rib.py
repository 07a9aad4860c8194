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
        # Routes held over a peer's graceful restart, per slot: not announced again yet.
        self._stale: dict[int, set[int]] = {}

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
        if self._stale:
            stale = self._stale.get(slot)
            if stale:
                stale.discard(key)
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
            if peer == peer_ip:
                self._stale.pop(slot, None)
                if self._routes[slot]:
                    dropped.append((slot, self._routes[slot]))
                    self._routes[slot] = {}
        return dropped

    def mark_stale(self, peer_ip: str) -> int:
        """Every route `peer_ip` holds now is stale until announced again (graceful restart,
        RFC 4724 section 4.2); returns how many."""
        marked = 0
        for slot, peer in enumerate(self.peers):
            if peer == peer_ip and self._routes[slot]:
                self._stale.setdefault(slot, set()).update(self._routes[slot])
                marked += len(self._routes[slot])
        return marked

    def sweep_stale(
        self, peer_ip: str, version: int | None = None
    ) -> list[tuple[int, dict[int, Path]]]:
        """Withdraw `peer_ip`'s routes still stale (of IPv`version` only, if given); returns
        them per slot, as drop_peer does."""
        swept = []
        for slot, peer in enumerate(self.peers):
            stale = self._stale.get(slot) if peer == peer_ip else None
            if not stale:
                continue
            keys = [k for k in stale if version is None or (k & 1) == (version == 6)]
            routes = self._routes[slot]
            swept.append((slot, {k: routes.pop(k) for k in keys if k in routes}))
            stale.difference_update(keys)
            if not stale:
                del self._stale[slot]
        return swept

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
