"""Longest-match lookups over a set of prefixes, on the integers `Prefix` already carries.

One dict per (version, length), keyed by the network bits shifted down: finding every
stored prefix that covers an update costs one dict probe per distinct stored length (a
handful for a monitored-prefix list), with no string or ipaddress work on the hot path.
The more-specifics of a prefix are one range of the stored prefixes sorted by address,
found by bisection (off the hot path: a VRP reload asks for them).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Generic, TypeVar

from bgp_guard.update import Prefix

T = TypeVar("T")

BITS = {4: 32, 6: 128}


class PrefixIndex(Generic[T]):
    def __init__(self) -> None:
        # version -> ascending list of (length, {value >> (bits - length): items})
        self._tables: dict[int, list[tuple[int, dict[int, list[T]]]]] = {4: [], 6: []}
        # version -> the stored (address, length) in order, and their items; built by the
        # first more_specifics() after an add().
        self._sorted: dict[int, tuple[list[tuple[int, int]], list[list[T]]]] = {}

    def add(self, prefix: Prefix, item: T) -> None:
        self._sorted.clear()
        tables = self._tables[prefix.version]
        shift = BITS[prefix.version] - prefix.length
        for length, table in tables:
            if length == prefix.length:
                table.setdefault(prefix.value >> shift, []).append(item)
                return
        tables.append((prefix.length, {prefix.value >> shift: [item]}))
        tables.sort(key=lambda t: t[0])

    def __bool__(self) -> bool:
        return bool(self._tables[4] or self._tables[6])

    def covering(self, prefix: Prefix) -> Iterator[tuple[int, list[T]]]:
        """(length, items) of every stored prefix equal to or covering `prefix`,
        least specific first."""
        bits = BITS[prefix.version]
        value, plen = prefix.value, prefix.length
        for length, table in self._tables[prefix.version]:
            if length > plen:
                return
            items = table.get(value >> (bits - length))
            if items is not None:
                yield length, items

    def longest(self, prefix: Prefix) -> tuple[int, list[T]] | None:
        """The most specific stored prefix covering `prefix` (or equal to it). On the hot
        path of every update: a plain loop, no generator, from the longest length down, so
        that the first hit is the answer."""
        bits = BITS[prefix.version]
        value, plen = prefix.value, prefix.length
        for length, table in reversed(self._tables[prefix.version]):
            if length <= plen:
                items = table.get(value >> (bits - length))
                if items is not None:
                    return length, items
        return None

    def more_specifics(self, prefix: Prefix) -> list[T]:
        """Items of every stored prefix strictly inside `prefix`, in address order."""
        ordered = self._sorted.get(prefix.version)
        if ordered is None:
            ordered = self._sorted[prefix.version] = self._ordered(prefix.version)
        addresses, items = ordered
        size = 1 << (BITS[prefix.version] - prefix.length)
        # Inside `prefix` and longer: from (its address, its length + 1) up to the next
        # address block of its size. A shorter prefix cannot start inside that range.
        lo = bisect_left(addresses, (prefix.value, prefix.length + 1))
        hi = bisect_left(addresses, (prefix.value + size, 0), lo)
        return [item for found in items[lo:hi] for item in found]

    def _ordered(self, version: int) -> tuple[list[tuple[int, int]], list[list[T]]]:
        bits = BITS[version]
        entries = [
            ((value << (bits - length), length), items)
            for length, table in self._tables[version]
            for value, items in table.items()
        ]
        entries.sort(key=lambda entry: entry[0])
        return [address for address, _ in entries], [items for _, items in entries]
