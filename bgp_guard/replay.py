"""Replay BGP data files through the guard in timestamp order.

Each file is read by its feed (MRT: `feeds.mrt`, gzip/bzip2 detected by magic); the
files are merged on update time, so a RIB dump and the update files that follow it, or two
collectors' files for the same window, are seen as one stream. Each file must itself be in
time order, as MRT files from collectors are.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path

from bgp_guard.errors import InputError
from bgp_guard.feeds.mrt import MrtFeed
from bgp_guard.feeds.stats import FeedStats
from bgp_guard.update import Update

Feed = Iterable[Update]


def open_feed(path: str) -> tuple[Feed, FeedStats]:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file; give MRT update or RIB files")
    feed = MrtFeed(path)
    return feed, feed.stats


def merged(paths: Sequence[str]) -> tuple[Iterator[Update], list[FeedStats]]:
    """All updates of `paths` in time order, and each file's feed counters."""
    feeds = [open_feed(p) for p in paths]
    if len(feeds) == 1:
        return iter(feeds[0][0]), [feeds[0][1]]
    stream = heapq.merge(*(f for f, _ in feeds), key=attrgetter("time"))
    return stream, [s for _, s in feeds]
