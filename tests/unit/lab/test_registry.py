from pathlib import Path

from lab.registry import Entry, Registry, parse, teardown_order


def test_entries_are_on_disk_in_creation_order(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "oc1234")
    reg.open()
    reg.netns("oc1234-hq")
    reg.process(tmp_path / "x.pid", "ovsdb-server")
    reg.netns("oc1234-hq")  # recorded once
    again = Registry(tmp_path / "oc1234").entries()
    assert again == [
        Entry("path", str(tmp_path / "oc1234")),
        Entry("netns", "oc1234-hq"),
        Entry("process", str(tmp_path / "x.pid"), "ovsdb-server"),
    ]


def test_a_thing_removed_on_purpose_is_forgotten_and_may_be_made_again(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "oc1234")
    reg.open()
    reg.netns("oc1234.sso")
    reg.netns("oc1234-hq")
    reg.forget(Entry("netns", "oc1234.sso"))
    reg.forget(Entry("netns", "oc1234.never"))  # not there: nothing written
    assert Registry(tmp_path / "oc1234").entries() == [
        Entry("path", str(tmp_path / "oc1234")),
        Entry("netns", "oc1234-hq"),
    ]
    reg.netns("oc1234.sso")  # made again: recorded again, before it is made
    assert reg.entries()[-1] == Entry("netns", "oc1234.sso")
    assert len(reg.path.read_text().splitlines()) == 5


def test_a_torn_last_line_is_skipped() -> None:
    lines = ['{"kind": "netns", "name": "oc1234-a", "program": ""}', '{"kind": "netns", "na']
    assert parse(lines) == [Entry("netns", "oc1234-a")]
    assert parse(['{"kind": "bogus", "name": "x"}', "[]", ""]) == []


def test_teardown_stops_processes_then_namespaces_then_paths_newest_first() -> None:
    entries = [
        Entry("path", "/run/overcast/oc1234"),
        Entry("netns", "a"),
        Entry("path", "/run/overcast/oc1234/sites/hq"),
        Entry("process", "/p1", "ovsdb-server"),
        Entry("netns", "b"),
        Entry("process", "/p2", "ovs-vswitchd"),
    ]
    assert teardown_order(entries) == [
        Entry("process", "/p2", "ovs-vswitchd"),
        Entry("process", "/p1", "ovsdb-server"),
        Entry("netns", "b"),
        Entry("netns", "a"),
        Entry("path", "/run/overcast/oc1234/sites/hq"),
        Entry("path", "/run/overcast/oc1234"),
    ]
