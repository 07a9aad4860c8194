import pytest

from lab import names


def test_new_lab_ids_are_valid_and_differ() -> None:
    ids = {names.new_lab_id() for _ in range(50)}
    assert len(ids) > 45
    assert all(names.check_lab_id(i) == i for i in ids)


@pytest.mark.parametrize("bad", ["", "oc", "oc12345", "OC1234", "xx1234", "oc12-4", "oc12_4"])
def test_bad_lab_ids_name_the_format(bad: str) -> None:
    with pytest.raises(ValueError, match="'oc' plus 4 lower-case letters or digits"):
        names.check_lab_id(bad)


def test_same_config_path_gives_same_lab_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "a.yaml"
    assert names.lab_id_for(str(a)) == names.lab_id_for(str(tmp_path / "." / "a.yaml"))
    assert names.lab_id_for(str(a)) != names.lab_id_for(str(tmp_path / "b.yaml"))
    assert names.check_lab_id(names.lab_id_for(str(a)))


def test_interface_names_fit_ifnamsiz() -> None:
    # The longest config names (10 characters) still give legal interface names.
    assert len(names.access_port("a" * 10, 8)) <= 15
    assert len(names.uplink_port("b" * 10)) <= 15
    with pytest.raises(ValueError, match="longer than 15"):
        names.check_ifname("x" * 16)


def test_role_namespaces_cannot_clash_with_sites() -> None:
    # Site names never contain '.', so these can never equal a site's namespace.
    assert "." in names.underlay_netns("oc0000")
    assert "." in names.controller_netns("oc0000")
    assert "." in names.host_netns("oc0000", "hq", "fin", 1)


def test_a_labs_namespaces_are_found_by_name() -> None:
    found = names.lab_netns(
        "oc1234",
        ["oc1234-hq", "oc1234.wan", "oc1234-hq.fin.1", "oc12345-hq", "oc1234", "xoc1234-hq"],
    )
    assert found == ["oc1234-hq", "oc1234.wan", "oc1234-hq.fin.1"]


def test_lab_ids_are_read_from_namespace_names_for_down_all() -> None:
    found = names.lab_ids_of(
        ["ocab12-hq", "ocab12.wan", "oczz99.ctl", "ocab12-hq.finance.1", "other", "ocab1-x", "oc"]
    )
    assert found == ["ocab12", "oczz99"]
