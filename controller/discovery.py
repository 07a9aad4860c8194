"""Watch each site's OVSDB for its bridge's datapath id and tagged ports; report changes.

One thread per site with an OVSDB remote (`sites.<site>.switch.ovsdb` or
`controller run --ovsdb SITE=REMOTE`): python-ovs's IDL blocks, so it never runs inside
os-ken's event loop. A port that appears later with `external_ids:overcast-segment` (a VM
that starts) is reported at once, and the controller re-plans that switch; no restart.
A database that is down is retried every few seconds, and said so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from controller.fabric import MAC_TAG, SEGMENT_TAG, Discovered
from controller.ovsdb import Ovsdb, OvsdbError

log = logging.getLogger(__name__)

RETRY_SECONDS = 3.0


class Discovery:
    """Calls `changed(site, Discovered)` from its own threads whenever a site's view changes."""

    def __init__(
        self,
        remotes: Mapping[str, tuple[str, str]],
        changed: Callable[[str, Discovered], None],
    ) -> None:
        """`remotes`: site -> (OVSDB remote, bridge name)."""
        self.remotes, self.changed = dict(remotes), changed
        self._stop = threading.Event()

    def start(self) -> None:
        for site, (remote, bridge) in self.remotes.items():
            threading.Thread(
                target=self._watch, args=(site, remote, bridge), name=f"ovsdb-{site}", daemon=True
            ).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, site: str, remote: str, bridge: str) -> None:
        last: Discovered | None = None
        complained = False
        while not self._stop.is_set():
            try:
                with Ovsdb(remote, timeout=5.0, wait_for_vswitchd=False) as db:
                    complained = False
                    while not self._stop.is_set():
                        now = _read(db, bridge)
                        if now != last:
                            last = now
                            self.changed(site, now)
                        db.wait_for_change(1.0)
            except OvsdbError as exc:
                if not complained:
                    log.warning("site %s: cannot read OVSDB %s: %s; retrying", site, remote, exc)
                    complained = True
            self._stop.wait(RETRY_SECONDS)


def _read(db: Ovsdb, bridge: str) -> Discovered:
    if bridge not in db.bridges():
        return Discovered()
    return Discovered(
        db.datapath_id(bridge), db.tagged(bridge, SEGMENT_TAG), db.tagged(bridge, MAC_TAG)
    )
