from bridge.apply import guard_table
from bridge.portguard import guarded_ports, needs_guard, render_guard, switch_ports

TABLE = guard_table("hq")


def test_the_guard_drops_at_ingress_of_exactly_the_switch_ports() -> None:
    script = render_guard(TABLE, ["vx100-2", "vx100-1", "vx100-2"])
    # Created, emptied and rebuilt in one nft transaction: re-running it converges.
    assert script.splitlines()[:3] == [
        f"table netdev {TABLE}",
        f"delete table netdev {TABLE}",
        f"table netdev {TABLE} {{",
    ]
    assert 'hook ingress devices = { "vx100-1", "vx100-2" }' in script
    assert "policy drop;" in script


def test_no_ports_leaves_no_guard_table() -> None:
    assert render_guard(TABLE, []) == f"table netdev {TABLE}\ndelete table netdev {TABLE}\n"


def test_each_owner_has_its_own_table() -> None:
    assert TABLE == "overcast-bridge-hq"
    assert guard_table("branch") != TABLE


def test_guarded_ports_reads_what_nft_lists() -> None:
    many = (
        f"table netdev {TABLE} {{\n\tchain switch-ports {{\n"
        "\t\ttype filter hook ingress devices = { vx100-1, vx100-2 } priority filter; "
        "policy drop;\n\t}\n}\n"
    )
    one = many.replace("devices = { vx100-1, vx100-2 }", 'device "vx100-1"')
    assert guarded_ports(many) == {"vx100-1", "vx100-2"}
    assert guarded_ports(one) == {"vx100-1"}
    assert guarded_ports(f"table netdev {TABLE} {{\n}}\n") == frozenset()


def test_only_the_userspace_datapath_is_guarded() -> None:
    # The kernel datapath takes frames after the ingress hook: a guard would drop them all.
    assert needs_guard("netdev")
    assert not needs_guard("system")


def test_every_switch_port_is_guarded_but_the_bridges_own() -> None:
    # Tunnels and an operator's access ports alike; the bridge's internal port is the
    # kernel's way into the switch, and a port without a link here has nothing to guard.
    ports = ["br-hq", "vx100-1", "eth1", "gone0", "eth1"]
    links = ["lo", "br-hq", "vx100-1", "eth1", "wg-hq"]
    assert switch_ports("br-hq", ports, links) == ["eth1", "vx100-1"]
    assert switch_ports("br-hq", ["br-hq"], links) == []
