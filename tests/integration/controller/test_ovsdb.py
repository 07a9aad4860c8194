"""controller.ovsdb against a real ovsdb-server + ovs-vswitchd (userspace) in a namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.ovsdb import Ovsdb, OvsdbError
from tests.integration.controller.netns import Namespaces, OvsSwitch, sh

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture
def db(switch: OvsSwitch) -> Iterator[Ovsdb]:
    with Ovsdb(switch.remote, timeout=10) as conn:
        yield conn


def _bridge_columns(switch: OvsSwitch, bridge: str) -> str:
    return sh(
        "ovs-vsctl",
        f"--db={switch.remote}",
        "--columns=datapath_type,fail_mode,protocols,other_config",
        "list",
        "Bridge",
        bridge,
    )


def _next_cfg(switch: OvsSwitch) -> int:
    return int(sh("ovs-vsctl", f"--db={switch.remote}", "get", "Open_vSwitch", ".", "next_cfg"))


def test_bridge_is_created_with_settings_and_is_idempotent(
    db: Ovsdb, switch: OvsSwitch, prefix: str
) -> None:
    br = f"{prefix}br"
    db.ensure_bridge(br, dpid=0x42, controllers=["tcp:127.0.0.1:6653"])
    before = _next_cfg(switch)
    db.ensure_bridge(br, dpid=0x42, controllers=["tcp:127.0.0.1:6653"])
    assert _next_cfg(switch) == before, "re-applying the same bridge must change nothing"

    assert db.bridges() == [br]
    assert db.datapath_id(br) == 0x42
    columns = _bridge_columns(switch, br)
    assert "netdev" in columns and "secure" in columns and "OpenFlow13" in columns
    controllers = sh("ovs-vsctl", f"--db={switch.remote}", "get-controller", br)
    assert controllers.split() == ["tcp:127.0.0.1:6653"]
    # The bridge's own port is there and numbered OFPP_LOCAL as OVS spells it.
    assert db.ofports(br) == {br: 65534}


def test_bridge_settings_converge_to_the_new_desired_state(
    db: Ovsdb, switch: OvsSwitch, prefix: str
) -> None:
    br = f"{prefix}br"
    db.ensure_bridge(br, dpid=1, controllers=["tcp:127.0.0.1:6653", "tcp:127.0.0.1:6654"])
    db.ensure_bridge(br, dpid=2, controllers=["tcp:127.0.0.1:6655"], fail_mode="standalone")

    assert db.datapath_id(br) == 2
    assert "standalone" in _bridge_columns(switch, br)
    controllers = sh("ovs-vsctl", f"--db={switch.remote}", "get-controller", br)
    assert controllers.split() == ["tcp:127.0.0.1:6655"]


def test_ports_get_numbers_and_are_removed(
    db: Ovsdb, switch: OvsSwitch, namespaces: Namespaces, prefix: str
) -> None:
    br = f"{prefix}br"
    db.ensure_bridge(br, dpid=7)
    # A veth end in the switch namespace, as the lab plugs hosts in.
    host = namespaces.add(f"{prefix}-h")
    namespaces.veth(f"{prefix}a", switch.netns, f"{prefix}b", host)

    veth_no = db.ensure_port(br, f"{prefix}a", ofport_request=5)
    vx_no = db.ensure_port(
        br, f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.2", "key": "100"}
    )
    before = _next_cfg(switch)
    again = db.ensure_port(br, f"{prefix}a", ofport_request=5)
    assert _next_cfg(switch) == before

    assert veth_no == again == 5
    assert vx_no is not None
    assert db.ofports(br) == {br: 65534, f"{prefix}a": 5, f"{prefix}vx": vx_no}
    assert db.ofport(f"{prefix}vx") == vx_no
    # ovs-ofctl agrees: the switch itself reports those numbers.
    desc = switch.ofctl("dump-ports-desc", br)
    assert f" 5({prefix}a)" in desc and f" {vx_no}({prefix}vx)" in desc

    db.remove_port(br, f"{prefix}vx")
    db.remove_port(br, f"{prefix}vx")  # absent: no-op
    assert db.ports(br) == sorted([br, f"{prefix}a"])
    assert db.ofport(f"{prefix}vx") is None


def test_port_options_update_in_place(db: Ovsdb, prefix: str) -> None:
    br = f"{prefix}br"
    db.ensure_bridge(br)
    first = db.ensure_port(br, f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.2"})
    second = db.ensure_port(
        br, f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.3", "key": "7"}
    )
    assert first == second


def test_remove_bridge_leaves_nothing(db: Ovsdb, switch: OvsSwitch, prefix: str) -> None:
    br = f"{prefix}br"
    db.ensure_bridge(br)
    db.ensure_port(br, f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.2"})
    db.remove_bridge(br)
    db.remove_bridge(br)
    assert db.bridges() == []
    assert sh("ovs-vsctl", f"--db={switch.remote}", "list", "Port").strip() == ""
    assert sh("ovs-vsctl", f"--db={switch.remote}", "list", "Interface").strip() == ""


def test_port_vswitchd_cannot_add_is_a_clear_error(db: Ovsdb, prefix: str) -> None:
    br = f"{prefix}br"
    db.ensure_bridge(br)
    with pytest.raises(OvsdbError, match=rf"could not add port {prefix}gone to {br}"):
        db.ensure_port(br, f"{prefix}gone")  # no such Linux device


def test_port_on_missing_bridge_and_port_in_other_bridge(db: Ovsdb, prefix: str) -> None:
    with pytest.raises(OvsdbError, match="call ensure_bridge first"):
        db.ensure_port(f"{prefix}no", f"{prefix}p")
    db.ensure_bridge(f"{prefix}b1")
    db.ensure_bridge(f"{prefix}b2")
    db.ensure_port(f"{prefix}b1", f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.2"})
    with pytest.raises(OvsdbError, match=f"already belongs to bridge {prefix}b1"):
        db.ensure_port(
            f"{prefix}b2", f"{prefix}vx", type="vxlan", options={"remote_ip": "192.0.2.2"}
        )


def test_bad_values_are_errors_not_silently_dropped(db: Ovsdb, prefix: str) -> None:
    with pytest.raises(OvsdbError, match="protocols"):
        db.ensure_bridge(f"{prefix}br", protocols=["OpenFlow99"])
    with pytest.raises(OvsdbError, match="ofport_request 70000"):
        db.ensure_port(f"{prefix}br", "x", ofport_request=70000)


def test_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OvsdbError, match=r"does not exist; start ovsdb-server"):
        Ovsdb(f"unix:{tmp_path}/nope.sock")
    with pytest.raises(OvsdbError, match="bad OVSDB remote"):
        Ovsdb("ssl:nowhere")


def test_dead_socket_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens
    with pytest.raises(OvsdbError, match="cannot connect to ovsdb-server"):
        Ovsdb(f"unix:{path}")


def test_missing_vswitchd_times_out_clearly(namespaces: Namespaces, prefix: str) -> None:
    sw = OvsSwitch(namespaces.add(f"{prefix}-nv"), start_vswitchd=False)
    try:
        with (
            Ovsdb(sw.remote, timeout=1.5) as db,
            pytest.raises(OvsdbError, match="is ovs-vswitchd running"),
        ):
            db.ensure_bridge(f"{prefix}br")
        # Without waiting, the database alone can be edited.
        with Ovsdb(sw.remote, wait_for_vswitchd=False) as db:
            db.ensure_bridge(f"{prefix}br")
            assert db.ensure_port(f"{prefix}br", f"{prefix}p") is None
            assert db.ports(f"{prefix}br") == sorted([f"{prefix}br", f"{prefix}p"])
    finally:
        sw.close()
