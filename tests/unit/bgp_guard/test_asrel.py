from __future__ import annotations

from pathlib import Path

import pytest

from bgp_guard.asrel import Hop, load_asrel
from bgp_guard.errors import InputError

# 1 and 2 are tier-1 peers; 10 is a customer of 1, 20 of 2; 30 a customer of 10 and 20.
REL = "# comment\n1|2|0\n1|10|-1\n2|20|-1\n10|30|-1\n20|30|-1|bgp\n"


@pytest.fixture
def rels(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "as-rel.txt"
    path.write_text(REL)
    return load_asrel(path)


def test_relationships(rels) -> None:  # type: ignore[no-untyped-def]
    assert len(rels) == 5
    assert rels.hop(10, 1) is Hop.UP
    assert rels.hop(1, 10) is Hop.DOWN
    assert rels.hop(2, 1) is Hop.FLAT
    assert rels.hop(30, 1) is None


@pytest.mark.parametrize(
    "path",
    [(1, 10, 30), (2, 1, 10, 30), (20, 30), (1, 1, 10, 30, 30), (99, 1, 10), (30,), ()],
)
def test_valley_free_paths_pass(rels, path) -> None:  # type: ignore[no-untyped-def]
    assert rels.find_leak(path) is None


def test_customer_leaking_between_providers(rels) -> None:  # type: ignore[no-untyped-def]
    # origin 1 -> customer 10 -> customer 30 -> its other provider 20: 30 leaked
    leak = rels.find_leak((2, 20, 30, 10, 1))
    assert leak is not None
    assert (leak.leaker, leak.learned_from, leak.sent_to) == (30, 10, 20)
    assert "learned the route from its provider AS10" in leak.explain()
    assert "to its provider AS20" in leak.explain()


def test_peer_route_to_peer(rels) -> None:  # type: ignore[no-untyped-def]
    # 10 -> 1 (up), 1 -> 2 (peer), 2 -> 1?? a second flat hop after a flat one is a leak
    leak = rels.find_leak((1, 2, 1, 10))
    assert leak is not None and leak.leaker == 2


def test_as_set_stops_the_walk(rels) -> None:  # type: ignore[no-untyped-def]
    assert rels.find_leak((2, 20, 30, frozenset({10, 1}))) is None


@pytest.mark.parametrize("line", ["1|2", "1|2|5", "a|2|0"])
def test_bad_lines_name_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "as-rel.txt"
    path.write_text(f"1|2|0\n{line}\n")
    with pytest.raises(InputError, match=r"as-rel.txt:2: .*serial-1"):
        load_asrel(path)
