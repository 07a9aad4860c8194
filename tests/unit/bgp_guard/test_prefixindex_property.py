"""The prefix index agrees with a brute-force longest match and more-specifics search on
random prefixes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bgp_guard.prefixindex import PrefixIndex
from bgp_guard.update import Prefix

BITS = {4: 32, 6: 128}


@st.composite
def prefixes(draw: st.DrawFn, version: int) -> Prefix:
    bits = BITS[version]
    length = draw(st.integers(0, bits))
    value = draw(st.integers(0, 2**bits - 1)) >> (bits - length) << (bits - length)
    return Prefix(version, value, length)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([4, 6]).flatmap(
        lambda v: st.tuples(st.lists(prefixes(v), max_size=30), st.lists(prefixes(v), max_size=30))
    )
)
def test_longest_matches_brute_force(case: tuple[list[Prefix], list[Prefix]]) -> None:
    stored, queries = case
    index: PrefixIndex[Prefix] = PrefixIndex()
    for p in stored:
        index.add(p, p)
    for q in queries:
        covering = [p for p in stored if p.covers(q)]
        found = index.longest(q)
        if not covering:
            assert found is None
        else:
            best = max(p.length for p in covering)
            assert found is not None and found[0] == best
            assert set(found[1]) == {p for p in covering if p.length == best}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([4, 6]).flatmap(
        lambda v: st.tuples(st.lists(prefixes(v), max_size=30), st.lists(prefixes(v), max_size=30))
    )
)
def test_more_specifics_match_brute_force(case: tuple[list[Prefix], list[Prefix]]) -> None:
    stored, queries = case
    index: PrefixIndex[Prefix] = PrefixIndex()
    for p in stored:
        index.add(p, p)
    # Queries also take stored prefixes and their covering /0, so hits are common.
    for q in [*queries, *stored[:5], Prefix(stored[0].version, 0, 0)] if stored else queries:
        want = [p for p in stored if q.covers(p) and p != q]
        assert sorted(index.more_specifics(q)) == sorted(want)
    host = Prefix(4, 0, 32)
    index.more_specifics(Prefix(4, 0, 0))
    index.add(host, host)  # an add after a search is seen by the next search
    assert host in index.more_specifics(Prefix(4, 0, 0))
