"""Attestation costs with real software TPMs: enrolment, a round over N sites, key delivery.

Starts N swtpms (Unix sockets in a temporary directory, no root needed) with an agent each
on loopback, enrols them, then times attestation rounds (every site at once, as the
verifier runs them: fresh nonce, quote, Keylime's check, replay, policy), the first round
(which also seals and delivers each site's WireGuard key), and a single quote check. The
agents measure one 3 MB file each (the default `package` measurement adds the Overcast
packages' manifest, ~0.5 s per quote on a busy machine). Figures vary with load (printed).

    .venv/bin/python bench/attest_rounds.py --sites 1 4 8 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import HTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest import verifier
from attest.agent import Agent, serve
from attest.measure import file_digest
from attest.policy import Policy
from attest.tpm import start_swtpm, stop_swtpm
from bridge.keys import KeyStore


def site(tmp: Path, name: str) -> tuple[str, HTTPServer, Path, Policy]:
    root = tmp / name / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/wireguard-go").write_bytes(os.urandom(1024) * 3000)
    cfg = tmp / name / "site.json"
    cfg.write_text(json.dumps({"site": name}))
    agent = Agent(
        site=name,
        tpm=start_swtpm(tmp / name / "tpm"),
        state_dir=tmp / name / "state",
        keys_dir=tmp / name / "keys",
        items={"wireguard-go": "/usr/bin/wireguard-go"},
        site_config=cfg,
        pcr=15,
        root=root,
    )
    agent.start()
    ready: list[HTTPServer] = []
    event = threading.Event()

    def up(server: HTTPServer) -> None:
        ready.append(server)
        event.set()

    threading.Thread(target=serve, args=(agent, "127.0.0.1", 0, up), daemon=True).start()
    event.wait(10)
    policy = Policy(
        15, {"wireguard-go": frozenset({file_digest(root / "usr/bin/wireguard-go")})},
        file_digest(cfg),
    )  # fmt: skip
    return f"http://127.0.0.1:{ready[0].server_address[1]}", ready[0], tmp / name / "tpm", policy


def run(n: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="overcast-bench-attest-") as tmpdir:
        tmp = Path(tmpdir)
        made = [site(tmp, f"s{i}") for i in range(n)]
        try:
            agents = {f"s{i}": m[0] for i, m in enumerate(made)}
            policies = {f"s{i}": m[3] for i, m in enumerate(made)}
            t = time.monotonic()
            for name, url in agents.items():
                verifier.enrol(name, url, tmp / "verifier")
            enrol = (time.monotonic() - t) / n
            v = verifier.Verifier(agents, policies, tmp / "verifier", KeyStore(tmp / "keys"))
            t = time.monotonic()
            first = v.run_once()
            first_round = time.monotonic() - t
            assert all(s.state == "admitted" for s in first.values()), first
            times = []
            for _ in range(rounds):
                t = time.monotonic()
                v.run_once()
                times.append(time.monotonic() - t)
            return {
                "sites": n,
                "enrol_s_per_site": round(enrol, 3),
                "first_round_s (quotes + key delivery)": round(first_round, 3),
                "round_s_median": round(statistics.median(times), 3),
                "round_s_max": round(max(times), 3),
            }
        finally:
            for _, server, tpm_dir, _ in made:
                server.shutdown()
                stop_swtpm(tpm_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the agents log every measurement and key
    results = [run(n, args.rounds) for n in args.sites]
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load_average": load, "results": results}, indent=2))
        return
    print(f"load average {load:.1f}, {os.cpu_count()} CPUs")
    for r in results:
        print("  " + ", ".join(f"{k} {v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
