"""Attested join in the lab: a swtpm and an attestation agent per attested site, the
enterprise's verifier on the management network, and no tunnels before admission.

Each attested site gets, in its own directory:
  tpm/     its software TPM (swtpm, Unix socket), started in the site's namespace
  agent/   its agent's event log
  root/    copies of the binaries `attest.measure` names: the lab's sites share one
           filesystem, so each measures (and a test may replace) its own copy
  site.json  its rendered config as Overcast wrote it (attest.measure.render_site_config)
  keys/    its key directory: the private key arrives here from its TPM, nowhere else

The verifier (`overcast attest verify`) runs in the controller's namespace, the enterprise
side of the management network, with the policy measured from this machine when the lab
was built (the lab's "known-good install"). It admits each site after a verified quote and
converges every site's data plane through its namespace (`bridge.admission`), as
`bridge keys revoke --at` does for the lab.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attest import tpm
from attest.config import PACKAGE, AttestConfig
from attest.measure import measure, render_site_config
from attest.verifier import Enrolments, load_status
from lab import netns, switch
from lab.plan import LabPlan, SitePlan
from lab.registry import Registry
from overcast.config import OvercastConfig

AGENT_PORT = 8890  # on each site's management address
VERIFIER_METRICS_PORT = 9330  # on the controller's management address
AGENT_PID = "agent.pid"
AGENT_LOG = "agent.log"
VERIFIER_PID = "verifier.pid"
VERIFIER_LOG = "verifier.log"
VERIFIER_DIR = "attest"  # the verifier's state, beside the enterprise key store
POLICY_FILE = "attest-policy.json"
ADMISSION_TIMEOUT_S = 90.0

Progress = Callable[[str], None]
Starter = Callable[..., object]  # lab.build.start_overcast


def site_root(site: SitePlan) -> Path:
    return site.dir / "root"


def tpm_dir(site: SitePlan) -> Path:
    return site.dir / "tpm"


def site_config_file(site: SitePlan) -> Path:
    return site.dir / "site.json"


def agent_url(site: SitePlan) -> str:
    return f"http://{site.mgmt.ip}:{AGENT_PORT}"


def verifier_dir(plan: LabPlan) -> Path:
    return plan.state_dir / VERIFIER_DIR


def prepare_site(
    config: OvercastConfig, section: AttestConfig, site: SitePlan, registry: Registry
) -> None:
    """The site's rendered config and its own copies of the measured binaries."""
    site_config_file(site).write_bytes(render_site_config(config, site.name))
    for where in section.measure.values():
        if where == PACKAGE:
            continue
        copy = site_root(site) / where.lstrip("/")
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(where, copy)  # follows symlinks (Debian's alternatives)


def start_tpm(site: SitePlan, registry: Registry) -> None:
    """The site's swtpm, in its namespace; a running one is kept (its PCRs too)."""
    if tpm.swtpm_pid(tpm_dir(site)) is None:
        registry.process(tpm_dir(site) / tpm.SWTPM_PID, "swtpm")
        tpm.start_swtpm(tpm_dir(site), netns=site.netns)


def start_agent(
    plan: LabPlan, site: SitePlan, registry: Registry, start: Starter, config_file: Path
) -> None:
    from lab.build import SITE_KEYS_DIR

    start(
        registry,
        site.netns,
        site.dir / AGENT_PID,
        site.dir / AGENT_LOG,
        [
            *("attest", "agent", str(config_file), "--site", site.name),
            *("--tpm", tpm.swtpm_tcti(tpm_dir(site))),
            *("--listen", f"{site.mgmt.ip}:{AGENT_PORT}"),
            *("--keys", str(site.dir / SITE_KEYS_DIR)),
            *("--site-config", str(site_config_file(site))),
            *("--state", str(site.dir / "agent")),
            *("--root", str(site_root(site))),
        ],
        AGENT_PORT,
        f"the attestation agent of site {site.name}",
    )


def write_policy(section: AttestConfig, plan: LabPlan, attested: list[str]) -> Path:
    """The accepted digests: what the lab's first attested site holds at build time."""
    path = plan.state_dir / POLICY_FILE
    if not path.exists():
        digests = measure(dict(section.measure), site_root(plan.site(attested[0])))
        path.write_text(json.dumps({n: [d] for n, d in digests.items()}, indent=1))
    return path


def enrol(plan: LabPlan, sites: list[SitePlan], config_file: Path) -> None:
    """`overcast attest enrol` from the enterprise side (the controller's namespace) for
    the sites not enrolled yet."""
    enrolled = Enrolments(verifier_dir(plan))
    todo = [s for s in sites if enrolled.get(s.name) is None]
    if not todo:
        return
    run = subprocess.run(
        [
            *("ip", "netns", "exec", plan.controller_netns, sys.executable, "-m", "overcast"),
            *("attest", "enrol", str(config_file), "--state", str(verifier_dir(plan))),
            *(f"--agent={s.name}={agent_url(s)}" for s in todo),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        raise netns.LabCommandError(f"enrolment failed: {(run.stdout + run.stderr).strip()[-600:]}")


def start_verifier(
    plan: LabPlan,
    attested: list[str],
    registry: Registry,
    start: Starter,
    config_file: Path,
    policy: Path,
) -> None:
    from bridge.cli import RUN_ROOT
    from lab.build import KEYS_DIR, SITE_KEYS_DIR

    for site in plan.sites:  # where the verifier's wireguard-go keeps its PID and log files
        registry.file(RUN_ROOT / site.netns)
    start(
        registry,
        plan.controller_netns,
        plan.state_dir / VERIFIER_PID,
        plan.state_dir / VERIFIER_LOG,
        [
            *("attest", "verify", str(config_file)),
            *(f"--agent={s}={agent_url(plan.site(s))}" for s in attested),
            *("--state", str(verifier_dir(plan)), "--keys", str(plan.state_dir / KEYS_DIR)),
            *("--policy", str(policy), "--prefix", plan.lab_id),
            *(f"--at={s.name}={s.netns}:{s.dir / SITE_KEYS_DIR}" for s in plan.sites),
            *(f"--ovsdb={s.name}=unix:{switch.db_socket(s)}" for s in plan.sites),
            *("--metrics", f"{plan.controller.ip}:{VERIFIER_METRICS_PORT}"),
        ],
        VERIFIER_METRICS_PORT,
        "the attestation verifier",
    )


def wait_admitted(plan: LabPlan, attested: list[str], timeout: float = ADMISSION_TIMEOUT_S) -> None:
    """Until the verifier has admitted every attested site (and the gate has built them)."""

    def waiting() -> list[str]:
        status = load_status(verifier_dir(plan))
        return [
            f"{s}: {status[s].state} ({status[s].reason})" if s in status else f"{s}: not checked"
            for s in attested
            if s not in status or status[s].state != "admitted"
        ]

    if not netns.wait_until(lambda: not waiting(), timeout, interval=0.2):
        raise netns.LabCommandError(
            f"sites not admitted after {timeout:.0f} s: {'; '.join(waiting())} "
            f"(see {plan.state_dir / VERIFIER_LOG})"
        )


def up(
    config: OvercastConfig,
    plan: LabPlan,
    attested: list[str],
    registry: Registry,
    start: Starter,
    config_file: Path,
    progress: Progress,
) -> None:
    """Everything above, in order; returns once every attested site is admitted."""
    section = config.attest
    assert section is not None
    sites = [plan.site(name) for name in attested]
    progress(f"lab {plan.lab_id}: swtpm and attestation agent at {', '.join(attested)}")

    def site_up(site: SitePlan) -> None:
        prepare_site(config, section, site, registry)
        start_tpm(site, registry)
        start_agent(plan, site, registry, start, config_file)

    # Side by side: each is mostly waiting (a TPM making keys, an interpreter starting).
    with ThreadPoolExecutor(max_workers=len(sites)) as pool:
        for done in [pool.submit(site_up, site) for site in sites]:
            done.result()
    progress(f"lab {plan.lab_id}: enrolling {', '.join(attested)} (credential activation)")
    enrol(plan, sites, config_file)
    policy = write_policy(section, plan, attested)
    progress(f"lab {plan.lab_id}: verifier; sites join after a verified quote")
    start_verifier(plan, attested, registry, start, config_file, policy)
    wait_admitted(plan, attested)
