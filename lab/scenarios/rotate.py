"""`rotate`: a site's WireGuard key is rotated under traffic. A probe stream (a UDP probe
every millisecond, `lab.probe`) runs across the stretched segment from hq's host to
branch's while hq gets a new key pair, the way `overcast bridge keys rotate --at ...` does
it (`bridge.keylife.rotate`: every peer learns the new public key, then hq switches to its
new private key while the peers move hq's AllowedIPs to it, all at once).

The scenario reports the probes lost and the longest gap, then checks that hq runs on its
new key, that every peer completed a handshake with the new public key and holds the old
one no more, and that nothing crossed hq's underlay in clear meanwhile: a capture on hq's
uplink sees only WireGuard messages between the sites' WireGuard ports, and never the
probes' marker bytes.

A rotation costs a fresh handshake (one round trip); a gap near WireGuard's REKEY_TIMEOUT
(5 s, the WireGuard paper, section 6.4) would mean a handshake went unanswered and had to
be retried, so the check allows at most MAX_GAP_MS."""

from __future__ import annotations

import time
from pathlib import Path

from bridge import keylife, wireguard
from bridge.keys import KeyStore, public_key_of
from lab import build, names, netns, probe, traffic
from lab.plan import HostPlan, LabPlan, SitePlan
from lab.scenarios import Check, Progress, Scenario
from lab.tap import Tap, TapResult
from overcast.config import OvercastConfig

ROTATED = "hq"
TARGET = "branch"
MARKER = b"overcast-rotate-probe"  # padding of every probe: never to be seen in clear
BEFORE_S = 1.0  # the probe stream runs this long before the rotation, and after it
MAX_GAP_MS = 1000.0
PINGS = 3


def deployed(plan: LabPlan) -> dict[str, keylife.Deployed]:
    """Where each site of the lab runs its data plane, for `keylife`."""
    return {
        s.name: keylife.Deployed(
            netns=s.netns,
            keys=s.dir / build.SITE_KEYS_DIR,
            run_dir=s.dir / build.WIREGUARD_RUN_DIR,
        )
        for s in plan.sites
    }


def _host(plan: LabPlan, site: str) -> HostPlan:
    return plan.hosts_at(site)[0]


def act(config: OvercastConfig, plan: LabPlan, progress: Progress) -> list[Check]:
    site, source, target = plan.site(ROTATED), _host(plan, ROTATED), _host(plan, TARGET)
    enterprise = KeyStore(plan.state_dir / build.KEYS_DIR)
    where = deployed(plan)
    old = enterprise.public_key(ROTATED)
    progress(f"rotate: waiting for {source.label} -> {target.label} to answer")
    if not netns.wait_until(
        lambda: traffic.ping(source.netns, target.address.ip, source.label, target.label, 1).ok,
        20.0,
    ):
        raise RuntimeError(f"{source.label} never reached {target.label}; nothing to rotate under")
    progress(
        f"rotate: probes every 1 ms {source.label} -> {target.label}, a tap on "
        f"{site.name}'s uplink; rotating {site.name}'s key after {BEFORE_S:g} s"
    )
    with _tap(plan, site) as tap:
        with probe.ProbeStream(
            source.netns, target.netns, target.address.ip, marker=MARKER
        ) as stream:
            time.sleep(BEFORE_S)
            began, wall = time.monotonic(), time.time()
            change = keylife.rotate(config, ROTATED, enterprise, where, prefix=plan.lab_id)
            took_ms = (time.monotonic() - began) * 1000
            time.sleep(BEFORE_S)
        # Every peer handshakes with the new key: those the probes do not reach, on a ping.
        for host in plan.hosts:
            if host.site not in (ROTATED, TARGET) and host.segment == source.segment:
                progress(f"rotate: ping {source.label} -> {host.label} with the new key")
                traffic.ping(source.netns, host.address.ip, source.label, host.label, PINGS)
    progress(f"rotate: {site.name}'s key rotated in {took_ms:.0f} ms; checking every peer")
    checks = [_probes(stream, began, source, target, took_ms)]
    checks.append(_own_key(site, where[ROTATED].keys, old, change.new_public_key))
    new = change.new_public_key or ""
    for peer in plan.sites:
        if peer.name != ROTATED:
            checks.append(_peer(peer, old, new, wall))
    checks.append(_in_clear(tap.result))
    return checks


def _probes(
    stream: probe.ProbeStream, began: float, source: HostPlan, target: HostPlan, took_ms: float
) -> Check:
    sent = len(stream.sent)
    deadline = 0.5  # lab.probe: a reply later than this is as lost to an application
    timely = sum(
        1 for seq, at in enumerate(stream.sent) if stream.answered.get(seq, at + 1) - at <= deadline
    )
    before = sum(1 for seq, at in enumerate(stream.sent) if at < began and seq in stream.answered)
    after = sum(1 for seq, at in enumerate(stream.sent) if at > began and seq in stream.answered)
    worst = stream.worst()
    gap_ms = worst.gap_ms if worst else 0.0
    return Check(
        f"probes {source.label} -> {target.label} across the rotation",
        before > 0 and after > 0 and gap_ms <= MAX_GAP_MS,
        f"{sent - timely} of {sent} probes lost, longest gap {gap_ms:.0f} ms "
        f"(at most {MAX_GAP_MS:.0f} ms; the rotation, every site re-converged, took "
        f"{took_ms:.0f} ms)",
        {
            "sent": sent,
            "lost": sent - timely,
            "gap_ms": round(gap_ms, 1),
            "answered_before": before,
            "answered_after": after,
            "rotation_ms": round(took_ms, 1),
            "max_gap_ms": MAX_GAP_MS,
        },
    )


def _own_key(site: SitePlan, keys: Path, old: str, new: str | None) -> Check:
    names_ = [wg.name for wg in site.dataplane.wireguard_interfaces]
    running = {public_key_of(wireguard.show(site.netns, n).private_key) for n in names_}
    wanted = public_key_of(KeyStore(keys).private_key(site.name))
    return Check(
        f"{site.name} runs on its new key",
        new is not None and new != old and running == {wanted} and wanted == new,
        f"public key {old[:8]}... -> {(new or '')[:8]}... on {', '.join(names_)}",
        {"old_public_key": old, "new_public_key": new, "interfaces": names_},
    )


def _peer(peer: SitePlan, old: str, new: str, since: float) -> Check:
    handshakes = []
    for wg in peer.dataplane.wireguard_interfaces:
        status = wireguard.show(peer.netns, wg.name)
        handshakes.append(
            (
                wg.name,
                status.peers[new].latest_handshake if new in status.peers else None,
                old in status.peers,
            )
        )
    # A peer entry for the new key exists only since the rotation, so any handshake it
    # records was made with the new key.
    shaken = [h for _, h, _ in handshakes if h]
    kept_old = [n for n, _, has_old in handshakes if has_old]
    age = round(time.time() - max(shaken), 1) if shaken else None
    return Check(
        f"{peer.name} handshakes with {ROTATED}'s new key, old key gone",
        bool(shaken) and not kept_old and max(shaken) >= int(since),
        (f"handshake with the new key {age:g} s ago" if shaken else "no handshake with the new key")
        + (f"; old key still on {', '.join(kept_old)}" if kept_old else "; old key removed"),
        {
            "handshake_age_s": age,
            "old_key_present": bool(kept_old),
            "interfaces": [n for n, _, _ in handshakes],
        },
    )


def _tap(plan: LabPlan, site: SitePlan) -> Tap:
    """A tap on the port facing `site` of its (most preferred) underlay network."""
    underlay = next(u for u in plan.underlays if u.name in site.underlays)
    return Tap(
        underlay.netns,
        names.uplink_port(site.name),
        {str(a) for s in plan.sites for a in s.underlays.values()},
        {wg.listen_port for s in plan.sites for wg in s.dataplane.wireguard_interfaces},
        marker=MARKER,
    )


def _in_clear(seen: TapResult) -> Check:
    transport = seen.wireguard.get("transport", 0)
    return Check(
        f"nothing crossed {ROTATED}'s underlay in clear",
        seen.in_clear == 0 and transport > 0,
        f"{seen.frames} frames on the tap: {transport} WireGuard transport, "
        f"{seen.wireguard.get('initiation', 0)} handshake initiations, {seen.in_clear} in clear"
        + (f" ({'; '.join(seen.examples)})" if seen.examples else ""),
        seen.as_dict(),
    )


SCENARIO = Scenario(
    name="rotate",
    promise=(
        "a site's WireGuard key rotates under a 1 ms probe stream: the loss is reported, "
        "every peer handshakes with the new key, the old one is gone, nothing crosses in clear"
    ),
    config_file="rotate.yaml",
    act=act,
)
