from lab.switch import GUARD_TABLE, port_guard


def test_the_guard_drops_at_ingress_of_exactly_the_switch_ports() -> None:
    script = port_guard(["vx100-1", "finance-1"])
    # Created, emptied and rebuilt in one nft transaction: re-running it converges.
    assert script.splitlines()[:3] == [
        f"table netdev {GUARD_TABLE}",
        f"delete table netdev {GUARD_TABLE}",
        f"table netdev {GUARD_TABLE} {{",
    ]
    assert 'hook ingress devices = { "finance-1", "vx100-1" }' in script
    assert "policy drop;" in script


def test_no_ports_leaves_no_guard_table() -> None:
    assert port_guard([]) == f"table netdev {GUARD_TABLE}\ndelete table netdev {GUARD_TABLE}\n"
