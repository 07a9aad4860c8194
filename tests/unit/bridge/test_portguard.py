from bridge.apply import guard_table
from bridge.portguard import (
    Role,
    SwitchPort,
    audit,
    classify,
    guarded_ports,
    interface_type,
    needs_guard,
    render_guard,
    switch_ports,
)

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


LINKS = ["lo", "br-hq", "mgmt", "vx100-1", "eth1", "vm1-tap", "wg-hq"]


def roles(interfaces: dict[str, str], links: list[str] = LINKS) -> dict[str, tuple[str, Role]]:
    return {p.name: (p.type, p.role) for p in classify("br-hq", interfaces, links)}


def test_linux_devices_the_switch_reads_are_switch_ports() -> None:
    # Tunnels, an operator's access ports, a VM's tap plugged in as a plain device: the
    # switch reads them from the wire side, so their frames are the switch's alone.
    got = roles({"vx100-1": "", "eth1": "system", "vm1-tap": "", "br-hq": "internal"})
    assert got["vx100-1"] == ("system", Role.SWITCH)
    assert got["eth1"] == ("system", Role.SWITCH)
    assert got["vm1-tap"] == ("system", Role.SWITCH)
    assert switch_ports(classify("br-hq", {"eth1": "", "vx100-1": ""}, LINKS)) == [
        "eth1",
        "vx100-1",
    ]


def test_internal_and_tap_ports_are_the_kernels_own() -> None:
    # OVS holds these devices itself and the site's kernel is their other end: guarding
    # one drops everything the switch hands the kernel there.
    got = roles({"br-hq": "internal", "mgmt": "internal", "routed": "tap"}, [*LINKS, "routed"])
    assert got == {
        "br-hq": ("internal", Role.KERNEL),
        "mgmt": ("internal", Role.KERNEL),
        "routed": ("tap", Role.KERNEL),
    }
    assert switch_ports(classify("br-hq", {"br-hq": "", "mgmt": "internal"}, LINKS)) == []


def test_types_resolve_as_ovs_vswitchd_reads_them() -> None:
    # vswitchd/bridge.c iface_get_type: the bridge's own interface is its local port,
    # internal whatever the row says; an empty type is a system device.
    assert interface_type("br-hq", "br-hq", "") == "internal"
    assert interface_type("br-hq", "br-hq", "system") == "internal"
    assert interface_type("br-hq", "eth1", "") == "system"
    assert interface_type("br-hq", "mgmt", "internal") == "internal"
    assert interface_type("br-hq", "vx1", "vxlan") == "vxlan"


def test_without_a_linux_device_there_is_nothing_to_guard() -> None:
    # OVS's own tunnels and patch ports have no device here; neither has a system port
    # whose device is gone (it is guarded again by the next apply once it is back).
    got = roles({"ovx1": "vxlan", "patch-a": "patch", "gone0": ""})
    assert {name: role for name, (_, role) in got.items()} == dict.fromkeys(
        ("gone0", "ovx1", "patch-a"), Role.NO_DEVICE
    )


def test_an_unknown_type_with_a_device_is_guarded() -> None:
    # Fail closed: a kernel cut off from a port shows at once, a kernel listening on a
    # switch port does not.
    got = roles({"eth1": "afxdp", "vm1-tap": "somethingnew"})
    assert got == {"eth1": ("afxdp", Role.SWITCH), "vm1-tap": ("somethingnew", Role.SWITCH)}


def test_audit_finds_unguarded_switch_ports_and_guarded_kernel_ports() -> None:
    ports = classify("br-hq", {"br-hq": "", "mgmt": "internal", "eth1": "", "vx100-1": ""}, LINKS)
    ok = audit(ports, "netdev", {"eth1", "vx100-1"})
    assert all(g.wanted == g.guarded for g in ok)
    assert [g.port.name for g in ok if g.wanted] == ["eth1", "vx100-1"]

    # eth1 plugged in since the last apply; mgmt guarded as the rule before types did.
    bad = {g.port.name: g for g in audit(ports, "netdev", {"mgmt", "vx100-1"})}
    assert bad["eth1"].unguarded and not bad["eth1"].cut_off
    assert bad["mgmt"].cut_off and not bad["mgmt"].unguarded
    assert not (bad["vx100-1"].unguarded or bad["vx100-1"].cut_off)
    assert not bad["br-hq"].guarded


def test_on_the_kernel_datapath_no_port_should_be_guarded() -> None:
    ports = (SwitchPort("eth1", "system", Role.SWITCH),)
    (clean,) = audit(ports, "system", ())
    assert not clean.wanted and not clean.unguarded
    # A guard left on a kernel-datapath switch starves it: the hook runs first.
    (stale,) = audit(ports, "system", {"eth1"})
    assert stale.cut_off
