"""Replay BGP data files through the guard in timestamp order.

Each file is read by its feed, chosen by content: RIS-live JSON lines (`feeds.ris_live`)
if it starts with `{`, else MRT (`feeds.mrt`, plain, gzip or bzip2). The files are merged on update time, so a RIB dump and the update files that follow it, or two
collectors' files for the same window, are seen as one stream. Each file must itself be in
time order, as MRT files from collectors are.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from bgp_guard.errors import InputError
from bgp_guard.feeds.stats import FeedStats
from bgp_guard.update import FeedItem, Prefix

if TYPE_CHECKING:  # each imported for a file of its kind: a replay starts without the other
    from bgp_guard.feeds.mrt import MrtFeed
    from bgp_guard.feeds.ris_live import RisLiveFeed

Feed = Iterable[FeedItem]


def open_feed(path: str, wanted: Callable[[Prefix], bool] | None = None) -> tuple[Feed, FeedStats]:
    """One file's feed; `wanted` (`Guard.wanted`) lets a RIS-live file skip, unread, the
    messages about nothing the guard watches."""
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}; give MRT or RIS-live JSON-lines files") from None
    feed: MrtFeed | RisLiveFeed
    if head.startswith(b"{"):
        from bgp_guard.feeds.ris_live import RisLiveFeed

        feed = RisLiveFeed.from_file(path, wanted)
    else:
        from bgp_guard.feeds.mrt import MrtFeed

        feed = MrtFeed(path)
    return feed, feed.stats


def merged(
    paths: Sequence[str], wanted: Callable[[Prefix], bool] | None = None
) -> tuple[Iterator[FeedItem], list[FeedStats]]:
    """All updates (and PeerDowns) of `paths` in time order, and each file's feed counters."""
    feeds = [open_feed(p, wanted) for p in paths]
    if len(feeds) == 1:
        return iter(feeds[0][0]), [feeds[0][1]]
    stream = heapq.merge(*(f for f, _ in feeds), key=attrgetter("time"))
    return stream, [s for _, s in feeds]
