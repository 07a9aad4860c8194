"""The demo's report: one self-contained HTML file (inline CSS and SVG, nothing fetched) with
the topology (sites, providers, segments, every tunnel and which path is active), the
timeline of the story, and every figure measured. Pure: a DemoRun in, a string out."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from lab.demo import DemoRun, StepResult
from lab.pathlog import Snapshot
from lab.scenarios import Check
from overcast.config import OvercastConfig

UNDERLAY_COLOURS = ("#1d4ed8", "#c2410c", "#15803d", "#7e22ce")
SEGMENT_COLOURS = ("#0f766e", "#a21caf", "#b45309", "#4338ca")
MOVE = re.compile(r"^paths: (.+?) -> (.+?): ")  # what lab.pathlog says when traffic moves
STATUS_COLOURS = {"passed": "#15803d", "failed": "#b91c1c", "not run": "#6b7280"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;
  margin:0;color:#111827;background:#f9fafb}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb}
h3{font-size:15px;margin:18px 0 6px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.meta{color:#4b5563}
.badge{display:inline-block;min-width:58px;text-align:center;padding:1px 6px;border-radius:3px;
  color:#fff;font-size:12px;font-weight:600}
.passed{background:#15803d}.failed{background:#b91c1c}.notrun{background:#6b7280}
ol.story{padding-left:22px}ol.story li{margin:4px 0}
.headline{color:#374151}
figure{margin:8px 0;background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px}
figcaption{color:#4b5563;font-size:13px;margin:4px 6px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f4f6}
td.fig{color:#374151;font-family:ui-monospace,"Liberation Mono",monospace;font-size:12px}
pre{background:#111827;color:#e5e7eb;padding:10px;border-radius:6px;overflow:auto;font-size:12px}
.note{color:#92400e}
svg text{font-family:system-ui,"Liberation Sans",sans-serif}
"""


def render(run: DemoRun) -> str:
    """The whole report as one HTML document."""
    ran = [s for s in run.steps if s.status != "not run"]
    passed = sum(s.status == "passed" for s in run.steps)
    verdict = "PASS" if run.ok else "FAIL"
    missing = [s.name for s in run.steps if s.status == "not run"]
    body = [
        "<header>",
        "<h1>Overcast demo</h1>",
        f'<p><span id="verdict" class="verdict {"passed" if run.ok else "failed"}" '
        f'data-ok="{str(run.ok).lower()}">{verdict}</span> '
        f"{passed} of {len(ran)} steps that ran passed"
        + (f"; not run: {escape(', '.join(missing))}" if missing else "")
        + "</p>",
        f'<p class="meta">lab {escape(run.lab_id)} · started '
        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC · total run time "
        f'<span id="run-time">{run.seconds:.1f} s</span> · load average '
        f"{' '.join(f'{x:.2f}' for x in run.load)} (1, 5, 15 min) · lab "
        f"{'kept' if run.kept else 'removed'}</p>",
        "</header>",
        "<h2>The story</h2>",
        _story(run.steps),
        "<h2>Topology</h2>",
        _topology_figures(run),
        "<h2>Timeline</h2>",
        _timeline(run),
        "<h2>Every figure measured</h2>",
        *(_step_table(s) for s in run.steps),
        "<h2>The built-in config</h2>",
        f'<pre id="config">{escape(run.config_text)}</pre>',
    ]
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Overcast demo {escape(run.lab_id)}: {verdict}</title>"
        f"<style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


# -- the story ----------------------------------------------------------------------------


def _badge(status: str) -> str:
    return f'<span class="badge {status.replace(" ", "")}">{escape(status)}</span>'


def _story(steps: Sequence[StepResult]) -> str:
    items = [
        f'<li class="step" data-step="{escape(s.name)}" data-status="{escape(s.status)}">'
        f"{_badge(s.status)} <b>{escape(s.name)}</b>: {escape(s.title)}"
        f'<br><span class="headline">{escape(headline(s))}</span></li>'
        for s in steps
    ]
    return '<ol class="story" id="story">' + "".join(items) + "</ol>"


def headline(step: StepResult) -> str:
    """The step's result in one line, with its most telling figure."""
    took = f" ({step.ended_s - step.started_s:.1f} s)"
    if step.status == "not run":
        return f"not run: {step.note}"
    if step.note:
        return f"failed: {step.note}{took}"
    bad = [c for c in step.checks if not c.ok]
    passed = f"{len(step.checks) - len(bad)}/{len(step.checks)} checks passed"
    if bad:
        return f"{passed}; {bad[0].name}: {bad[0].detail}{took}"
    rates = [
        c.figures["bits_per_second"] / 1e6 for c in step.checks if "bits_per_second" in c.figures
    ]
    gaps = [
        f"{c.name}: "
        + (
            f"{c.figures['gap_ms']:.0f} ms gap"
            if c.figures["gap_ms"] or c.figures.get("lost")
            else "no probe lost"
        )
        for c in step.checks
        if "gap_ms" in c.figures
    ]
    if gaps:  # the failover's (it also runs TCP through the failure)
        return f"{passed}; {'; '.join(gaps)}{took}"
    if rates:
        return f"{passed}; TCP {min(rates):.0f} to {max(rates):.0f} Mbit/s{took}"
    if step.name in ("build", "teardown"):
        return f"{passed}; {step.checks[-1].detail}{took}"
    return f"{passed}: {'; '.join(c.name for c in step.checks)}{took}"


# -- the topology -------------------------------------------------------------------------


def _topology_figures(run: DemoRun) -> str:
    end = _topology(run, run.paths_end, "topology")
    caption = (
        "At the end of the story: each line is a tunnel (WireGuard, VXLAN inside) between two "
        "sites over one carrier; a thick line carries the pair's traffic, a dashed one stands "
        "by, a red dotted one is down."
        if run.paths_end
        else "The tunnels' state was not read (the lab did not come up)."
    )
    out = [f"<figure>{end}<figcaption>{escape(caption)}</figcaption></figure>"]
    detour = run.paths_detour
    if detour:
        carriers = detour.carriers()
        preferred = next(iter(run.config.underlays), None)
        off = sum(1 for c in carriers.values() if c != preferred)
        picture = _topology(run, detour, "topology-detour", services=False)
        out.append(
            f"<figure>{picture}<figcaption>During the failure, {detour.at_s:.1f} s into the "
            f"story: {off} of {len(carriers)} site-to-peer paths off {escape(str(preferred))}, "
            "moved by the switches alone.</figcaption></figure>"
        )
    return "\n".join(out)


def _pair_role(snap: Snapshot | None, a: str, b: str, underlay: str) -> tuple[str, str]:
    """The tunnel's part for the pair a-b on one underlay, and what each end says."""
    if snap is None:
        return "unknown", "state not read"
    ends = [p for p in snap.paths if {p.site, p.peer} == {a, b} and p.underlay == underlay]
    if not ends:
        return "unknown", "no BFD-watched path (single path)"
    said = "; ".join(f"{p.site} to {p.peer}: {p.role}, BFD {p.bfd}" for p in ends)
    roles = {p.role for p in ends}
    for role in ("down", "active", "held", "standby"):
        if role in roles:
            return role, said
    return "unknown", said


def _topology(run: DemoRun, snap: Snapshot | None, svg_id: str, services: bool = True) -> str:
    config = run.config
    sites = list(config.sites)
    left = [s for s in sites if config.sites[s].role == "enterprise"]
    right = [s for s in sites if config.sites[s].role != "enterprise"]
    underlays = list(config.underlays) or ["internet"]
    segments = list(config.segments)
    bw, bh = 176, 84  # site box
    width, top = 820, 40
    rows = max(len(left), len(right), 1)
    below = top + rows * 150 + 10  # the guard and the gateway, below the sites
    height = below + (SERVICE_H + 40 if services else 20)
    pos: dict[str, tuple[float, float]] = {}
    for column, x in ((left, 150), (right, width - 150)):
        for i, name in enumerate(column):
            pos[name] = (x, top + 75 + i * 150)
    out = [
        f'<svg id="{svg_id}" class="topology" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height + 34}" width="100%" role="img" '
        f'aria-label="sites, providers, segments and tunnels">'
    ]
    out.append(
        f'<text x="150" y="22" text-anchor="middle" font-size="13" fill="#4b5563">enterprise</text>'
        f'<text x="{width - 150}" y="22" text-anchor="middle" font-size="13" fill="#4b5563">'
        "cloud providers</text>"
    )
    # Providers: a dashed frame around their sites.
    for provider in config.providers:
        members = [s for s in right if config.sites[s].provider == provider]
        if not members:
            continue
        ys = [pos[s][1] for s in members]
        x0, y0 = pos[members[0]][0] - bw / 2 - 10, min(ys) - bh / 2 - 22
        h = max(ys) - min(ys) + bh + 30
        out.append(
            f'<g class="provider" data-provider="{escape(provider)}">'
            f'<rect x="{x0}" y="{y0}" width="{bw + 20}" height="{h}" rx="10" fill="none" '
            f'stroke="#9ca3af" stroke-dasharray="5 4"/>'
            f'<text x="{x0 + 8}" y="{y0 + 14}" font-size="12" fill="#4b5563">'
            f"{escape(provider)}</text></g>"
        )
    # Tunnels first, so the site boxes cover their ends.
    for i, a in enumerate(sites):
        for b in sites[i + 1 :]:
            shared = [u for u in underlays if _on(config, a, u) and _on(config, b, u)]
            for k, u in enumerate(shared):
                offset = (k - (len(shared) - 1) / 2) * 9
                role, said = _pair_role(snap, a, b, u)
                out.append(_tunnel(pos[a], pos[b], offset, role, u, underlays.index(u), a, b, said))
    for name in sites:
        out.append(_site(run, name, pos[name], bw, bh, segments))
    if services:
        steps = {s.name: s for s in run.steps}
        for (step, label), x0 in zip(SERVICES, (20.0, width / 2 + 10), strict=True):
            out.append(_service(steps.get(step), step, label, x0, below, width / 2 - 30))
    out.append(_legend(underlays, config, segments, height, width))
    out.append("</svg>")
    return "".join(out)


def _on(config: OvercastConfig, site: str, underlay: str) -> bool:
    where = config.sites[site].underlay
    return not config.underlays or (isinstance(where, dict) and underlay in where)


def _tunnel(
    a: tuple[float, float],
    b: tuple[float, float],
    offset: float,
    role: str,
    underlay: str,
    index: int,
    site_a: str,
    site_b: str,
    said: str,
) -> str:
    (x1, y1), (x2, y2) = a, b
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    nx, ny = -(y2 - y1) / length * offset, (x2 - x1) / length * offset
    x1, y1, x2, y2 = x1 + nx, y1 + ny, x2 + nx, y2 + ny
    if abs(x1 - x2) < 1:  # same column: bow outwards, clear of the boxes, one per carrier
        bow = 230 + offset * 5
        cx = x1 - bow if x1 < 410 else x1 + bow
        d = f"M{x1:.1f},{y1:.1f} Q{cx:.1f},{(y1 + y2) / 2:.1f} {x2:.1f},{y2:.1f}"
    else:
        d = f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}"
    colour = UNDERLAY_COLOURS[index % len(UNDERLAY_COLOURS)]
    style = {
        "active": f'stroke="{colour}" stroke-width="4"',
        "standby": f'stroke="{colour}" stroke-width="1.6" stroke-dasharray="7 5"',
        "held": f'stroke="{colour}" stroke-width="1.6" stroke-dasharray="2 4"',
        "down": 'stroke="#dc2626" stroke-width="1.6" stroke-dasharray="1 4"',
    }.get(role, f'stroke="{colour}" stroke-width="1.6" stroke-opacity="0.5"')
    return (
        f'<g class="tunnel" data-pair="{escape(site_a)}~{escape(site_b)}" '
        f'data-underlay="{escape(underlay)}" data-role="{role}">'
        f"<title>{escape(site_a)} - {escape(site_b)} over {escape(underlay)}: {role} "
        f"({escape(said)})</title>"
        f'<path d="{d}" fill="none" {style} stroke-linecap="round"/></g>'
    )


def _site(
    run: DemoRun,
    name: str,
    centre: tuple[float, float],
    bw: int,
    bh: int,
    segments: list[str],
) -> str:
    site = run.config.sites[name]
    x, y = centre[0] - bw / 2, centre[1] - bh / 2
    kind = site.role if not site.provider else f"{site.role} · {site.provider}"
    hosts = [h for h in run.hosts if h.site == name]
    addresses = (
        " · ".join(f"{u} {a}" for u, a in site.underlay.items())
        if isinstance(site.underlay, dict)
        else str(site.underlay)
    )
    out = [
        f'<g class="site" data-site="{escape(name)}" data-role="{escape(site.role)}">',
        f"<title>{escape(name)}: underlay {escape(addresses)}</title>",
        f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="8" fill="#fff" '
        f'stroke="#374151" stroke-width="1.5"/>',
        f'<text x="{x + 10}" y="{y + 20}" font-size="15" font-weight="700">{escape(name)}</text>',
        f'<text x="{x + 10}" y="{y + 36}" font-size="11" fill="#4b5563">{escape(kind)}</text>',
    ]
    cx = x + 10
    for seg in (s for s in segments if name in run.config.segments[s].sites):
        colour = SEGMENT_COLOURS[segments.index(seg) % len(SEGMENT_COLOURS)]
        w = 8 + 7 * len(seg)
        out.append(
            f'<g class="segment" data-segment="{escape(seg)}"><rect x="{cx}" y="{y + 44}" '
            f'width="{w}" height="16" rx="8" fill="{colour}"/><text x="{cx + w / 2}" '
            f'y="{y + 56}" font-size="11" fill="#fff" text-anchor="middle">{escape(seg)}</text></g>'
        )
        cx += w + 4
    if hosts:
        host = hosts[0]
        more = f" +{len(hosts) - 1}" if len(hosts) > 1 else ""
        out.append(
            f'<text x="{x + 10}" y="{y + 76}" font-size="11" fill="#111827">'
            f"{escape(host.label.split('/')[-1])} {host.address.ip}{more}</text>"
        )
    out.append("</g>")
    return "".join(out)


SERVICES = (("hijack", "BGP guard"), ("sso", "SSO gateway"))
SERVICE_H = 112
SERVICE_LINES = 5
MARKS = {True: "\u2713", False: "\u2717"}  # check mark, ballot x
ALERT_MARK = "\u26a0"  # warning sign


def raised_alert(check: Check) -> bool:
    """A check that an alert was raised (the guard's notice names who did it)."""
    return check.ok and check.name.endswith(" alert") and "offending_as" in check.figures


def _alert_line(check: Check) -> str:
    f = check.figures
    return f"{ALERT_MARK} {check.name}: {f.get('prefix')} by AS{f.get('offending_as')}"


def _service(step: StepResult | None, name: str, label: str, x: float, y: float, w: float) -> str:
    """A box for a part beside the bridge (the guard, the gateway): what its step found,
    alerts raised first."""
    status = step.status if step else "not run"
    colour = STATUS_COLOURS[status]
    lines: list[tuple[str, str, str]] = []  # text, colour, class
    if step is None or status == "not run":
        lines.append((f"not run: {step.note if step else 'no such step'}", "#6b7280", "line"))
    elif step.note:
        lines.append((step.note, "#b91c1c", "line"))
    checks = step.checks if step else ()
    lines += [(_alert_line(c), "#b91c1c", "line alert") for c in checks if raised_alert(c)]
    lines += [
        (f"{MARKS[c.ok]} {c.name}", "#111827" if c.ok else "#b91c1c", "line")
        for c in checks
        if not raised_alert(c)
    ]
    shown = lines[:SERVICE_LINES]
    if len(lines) > SERVICE_LINES:
        shown[-1] = (f"... and {len(lines) - SERVICE_LINES + 1} more", "#4b5563", "line")
    text = "".join(
        f'<text class="{cls}" x="{x + 12}" y="{y + 40 + i * 13}" font-size="11" fill="{fill}">'
        f"{escape(_clip(line, int(w / 6.2)))}</text>"
        for i, (line, fill, cls) in enumerate(shown)
    )
    return (
        f'<g class="service" data-step="{escape(name)}" data-status="{status}">'
        f'<rect x="{x}" y="{y}" width="{w}" height="{SERVICE_H}" rx="8" fill="#fff" '
        f'stroke="{colour}" stroke-width="1.5"/>'
        f'<text x="{x + 12}" y="{y + 20}" font-size="14" font-weight="700">{escape(label)}</text>'
        f'<text x="{x + w - 12}" y="{y + 20}" font-size="11" text-anchor="end" fill="{colour}">'
        f"{escape(name)} step: {status}</text>{text}</g>"
    )


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _legend(
    underlays: list[str], config: OvercastConfig, segments: list[str], y: float, width: int
) -> str:
    items: list[str] = []
    x = 10.0
    for i, u in enumerate(underlays):
        colour = UNDERLAY_COLOURS[i % len(UNDERLAY_COLOURS)]
        desc = config.underlays[u].description if u in config.underlays else ""
        label = f"{u}{f' ({desc})' if desc else ''}" + (
            " preferred" if i == 0 and len(underlays) > 1 else ""
        )
        items.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 26}" y2="{y}" stroke="{colour}" stroke-width="4"/>'
            f'<text x="{x + 32}" y="{y + 4}" font-size="12">{escape(label)}</text>'
        )
        x += 46 + 6.5 * len(label)
    for role, dash in (("active", ""), ("standby", "7 5"), ("down", "1 4")):
        colour = "#dc2626" if role == "down" else "#374151"
        width_ = 4 if role == "active" else 1.6
        items.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 26}" y2="{y}" stroke="{colour}" '
            f'stroke-width="{width_}"{f" stroke-dasharray={chr(34)}{dash}{chr(34)}" if dash else ""}/>'
            f'<text x="{x + 32}" y="{y + 4}" font-size="12">{role}</text>'
        )
        x += 40 + 7 * len(role)
    seg_text = "; ".join(_segment_text(config, s) for s in segments)
    items.append(
        f'<text x="10" y="{y + 24}" font-size="12" fill="#374151">segments: {escape(seg_text)}</text>'
    )
    return f'<g class="legend">{"".join(items)}</g>'


def _segment_text(config: OvercastConfig, name: str) -> str:
    seg = config.segments[name]
    if seg.mode == "l2":
        return f"{name} L2, VNI {seg.vni}, VLAN {seg.vlan}, stretched across {', '.join(seg.sites)}"
    return f"{name} L3 {', '.join(map(str, seg.prefixes))} across {', '.join(seg.sites)}"


# -- the timeline -------------------------------------------------------------------------


def _ticks(total: float) -> Iterable[float]:
    step = next((s for s in (5, 10, 20, 30, 60, 120, 300) if total / s <= 12), 600)
    return (i * step for i in range(int(total // step) + 1))


def _timeline(run: DemoRun) -> str:
    total = max(run.seconds, 1.0)
    label_w, width, row = 100, 900, 30
    span = width - label_w - 20
    rows = [s.name for s in run.steps] + ["paths"]
    height = 30 + row * len(rows) + 40  # and a line for the moves' labels

    def x(t: float) -> float:
        return label_w + span * min(max(t, 0.0), total) / total

    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="timeline of the demo">'
    ]
    for t in _ticks(total):
        out.append(
            f'<line x1="{x(t):.1f}" y1="20" x2="{x(t):.1f}" y2="{height - 20}" stroke="#e5e7eb"/>'
            f'<text x="{x(t):.1f}" y="{height - 6}" font-size="11" text-anchor="middle" '
            f'fill="#4b5563">{t:g} s</text>'
        )
    for i, step in enumerate(run.steps):
        y = 24 + i * row
        colour = STATUS_COLOURS[step.status]
        out.append(f'<text x="8" y="{y + 15}" font-size="12">{escape(step.name)}</text>')
        if step.status == "not run":
            out.append(
                f'<g class="bar" data-step="{escape(step.name)}" data-status="not run">'
                f"<title>{escape(step.name)}: not run: {escape(step.note)}</title>"
                f'<text x="{label_w + 4}" y="{y + 15}" font-size="11" '
                f'fill="{colour}">not run: {escape(step.note)}</text></g>'
            )
            continue
        w = max(x(step.ended_s) - x(step.started_s), 2.0)
        out.append(
            f'<g class="bar" data-step="{escape(step.name)}" data-status="{step.status}">'
            f"<title>{escape(step.name)}: {step.status}, {step.started_s:.1f} s to "
            f"{step.ended_s:.1f} s</title>"
            f'<rect x="{x(step.started_s):.1f}" y="{y + 3}" width="{w:.1f}" height="16" rx="3" '
            f'fill="{colour}" fill-opacity="0.85"/></g>'
        )
        for e in run.events:
            if e.step == step.name and not MOVE.match(e.text):
                out.append(
                    f'<line class="tick" x1="{x(e.at_s):.1f}" y1="{y + 1}" x2="{x(e.at_s):.1f}" '
                    f'y2="{y + 21}" stroke="#111827" stroke-opacity="0.35"><title>'
                    f"{e.at_s:.1f} s {escape(e.text)}</title></line>"
                )
    y = 24 + (len(rows) - 1) * row
    out.append(f'<text x="8" y="{y + 15}" font-size="12">paths</text>')
    underlays = list(run.config.underlays)
    labelled = -1e9  # where the last label went: moves come in bursts, label the first
    labels = []  # drawn after every dot, so no dot covers one
    for e in run.events:
        move = MOVE.match(e.text)
        if move:
            to = move.group(2)
            fill = (
                UNDERLAY_COLOURS[underlays.index(to) % len(UNDERLAY_COLOURS)]
                if to in underlays
                else "#dc2626"
            )
            out.append(
                f'<g class="move"><title>{e.at_s:.1f} s {escape(e.text)}</title>'
                f'<circle cx="{x(e.at_s):.1f}" cy="{y + 11}" r="5" fill="{fill}"/></g>'
            )
            if x(e.at_s) - labelled > 70:
                labelled = x(e.at_s)
                labels.append(
                    f'<text x="{x(e.at_s) + 2:.1f}" y="{y + 30}" font-size="11" '
                    f'stroke="#fff" stroke-width="3" paint-order="stroke">to {escape(to)}</text>'
                )
    out += labels
    out.append("</svg>")
    table = "".join(
        f"<tr><td>{e.at_s:.1f} s</td><td>{escape(e.step)}</td><td>{escape(e.text)}</td></tr>"
        for e in run.events
    )
    return (
        "<figure>" + "".join(out) + "<figcaption>Each step's span (green passed, red failed, grey "
        "not run), a tick per thing it said, and every move of traffic between carriers as the "
        "switches made it.</figcaption></figure>"
        f"<details><summary>Everything the demo said ({len(run.events)} lines)</summary>"
        f'<table id="events"><tr><th>time</th><th>step</th><th>what happened</th></tr>{table}'
        "</table></details>"
    )


# -- the figures --------------------------------------------------------------------------


def _figure(key: str, value: Any) -> str:
    if isinstance(value, float) and key.endswith("bits_per_second"):
        return f"{key}={value / 1e6:.1f} Mbit/s"
    if isinstance(value, float):
        return f"{key}={value:g}"
    return f"{key}={value}"


def _check_row(c: Check) -> str:
    figures = ", ".join(_figure(k, v) for k, v in c.figures.items())
    status = "passed" if c.ok else "failed"
    return (
        f'<tr class="check" data-ok="{str(c.ok).lower()}"><td>{_badge(status)}</td>'
        f"<td>{escape(c.name)}</td><td>{escape(c.detail)}</td>"
        f'<td class="fig">{escape(figures)}</td></tr>'
    )


def _step_table(step: StepResult) -> str:
    head = f'<h3 id="step-{escape(step.name)}">{_badge(step.status)} {escape(step.name)}: {escape(step.title)}</h3>'
    if step.status == "not run":
        return head + f'<p class="note">Not run: {escape(step.note)}</p>'
    note = f'<p class="note">{escape(step.note)}</p>' if step.note else ""
    rows = "".join(_check_row(c) for c in step.checks)
    return (
        head
        + note
        + f'<table class="checks" data-step="{escape(step.name)}"><tr><th></th><th>check</th>'
        f"<th>result</th><th>figures</th></tr>{rows}</table>"
    )
