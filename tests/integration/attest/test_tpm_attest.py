"""Enrolment, quotes and key delivery against real software TPMs (swtpm + tpm2-tools), the
site's agent answering over HTTP on loopback, and Keylime's quote check in the verifier."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import HTTPServer
from pathlib import Path

import pytest

from attest import verifier
from attest.agent import Agent, serve
from attest.config import CONFIG_EVENT
from attest.eventlog import Event
from attest.measure import file_digest
from attest.policy import Policy
from attest.tpm import Quote, start_swtpm, stop_swtpm
from attest.verify import Refused, check_quote
from bridge.keys import KeyStore, public_key_of
from tests.conftest import require_binaries

SITE = "cloud-a"


@dataclass
class Site:
    agent: Agent
    url: str
    server: HTTPServer
    root: Path
    tpm_dir: Path


def _site(tmp: Path, name: str, site: str = SITE) -> Site:
    root = tmp / name / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/wireguard-go").write_bytes(b"wireguard-go build 1\n" * 100)
    site_config = tmp / name / "site.json"
    site_config.write_text('{"site": "cloud-a"}\n')
    tpm = start_swtpm(tmp / name / "tpm")
    agent = Agent(
        site=site,
        tpm=tpm,
        state_dir=tmp / name / "state",
        keys_dir=tmp / name / "keys",
        items={"wireguard-go": "/usr/bin/wireguard-go"},
        site_config=site_config,
        pcr=15,
        root=root,
    )
    agent.start()
    ready = threading.Event()
    servers: list[HTTPServer] = []

    def up(server: HTTPServer) -> None:
        servers.append(server)
        ready.set()

    threading.Thread(target=serve, args=(agent, "127.0.0.1", 0, up), daemon=True).start()
    assert ready.wait(10)
    url = f"http://127.0.0.1:{servers[0].server_address[1]}"
    return Site(agent, url, servers[0], root, tmp / name / "tpm")


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    require_binaries("swtpm", "swtpm_setup", "tpm2_quote", "tpm2_activatecredential")
    tmp = tmp_path_factory.mktemp("attest")
    made = []
    try:
        made.append(_site(tmp, "site"))
        made.append(_site(tmp, "impostor"))  # another TPM claiming to be the same site
        yield made[0], made[1]
    finally:
        for s in made:
            s.server.shutdown()
            stop_swtpm(s.tpm_dir)


def _policy(site: Site) -> Policy:
    good = file_digest(site.root / "usr/bin/wireguard-go")
    return Policy(15, {"wireguard-go": frozenset({good})}, file_digest(site.agent.site_config))


def test_enrolled_site_is_admitted_and_its_key_opens_only_at_the_site(
    sites: tuple[Site, Site], tmp_path: Path
) -> None:
    site, _ = sites
    state = tmp_path / "verifier"
    keys = KeyStore(tmp_path / "enterprise-keys")
    verifier.enrol(SITE, site.url, state)
    v = verifier.Verifier({SITE: site.url}, {SITE: _policy(site)}, state, keys)
    status = v.run_once()[SITE]
    assert (status.state, status.check) == ("admitted", ""), status.reason
    # The site holds its private key (0600); the enterprise only the public one.
    key_file = site.agent.keys_dir / f"{SITE}.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    private = key_file.read_text().strip()
    assert public_key_of(private) == keys.public_key(SITE)
    assert not keys.private_key_file(SITE).exists()
    raw = base64.b64decode(private)
    for path in (p for d in (state, keys.directory) for p in d.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert raw not in data and private.encode() not in data and raw.hex().encode() not in data


def _answer(site: Site, nonce: bytes) -> tuple[Quote, list[dict[str, object]]]:
    answer = verifier.call(site.url, "/quote", {"nonce": nonce.hex()})
    quote = Quote(*(base64.b64decode(answer[k]) for k in ("message", "signature", "pcrs")))
    return quote, answer["events"]


def test_replayed_quote_with_an_old_nonce_is_refused(
    sites: tuple[Site, Site], tmp_path: Path
) -> None:
    site, _ = sites
    identity = verifier.enrol(SITE, site.url, tmp_path)
    old = os.urandom(20)
    quote, events = _answer(site, old)
    check_quote(SITE, identity, old, quote, events, _policy(site))  # fine for its own nonce
    with pytest.raises(Refused) as exc:
        check_quote(SITE, identity, os.urandom(20), quote, events, _policy(site))
    assert exc.value.check == "nonce"
    assert "replayed old quote" in exc.value.reason


def test_quote_from_an_unenrolled_tpm_is_refused(sites: tuple[Site, Site], tmp_path: Path) -> None:
    site, impostor = sites
    identity = verifier.enrol(SITE, site.url, tmp_path)
    nonce = os.urandom(20)
    quote, events = _answer(impostor, nonce)  # same software, same config, other TPM
    with pytest.raises(Refused) as exc:
        check_quote(SITE, identity, nonce, quote, events, _policy(site))
    assert exc.value.check == "signature"
    assert "not signed by the attestation key enrolled for cloud-a" in exc.value.reason
    # And a site never enrolled at all is refused before any quote is asked for.
    with pytest.raises(Refused, match="is not enrolled; run 'overcast attest enrol"):
        verifier.attest(SITE, impostor.url, None, _policy(site))


def test_tampered_event_log_is_refused(sites: tuple[Site, Site], tmp_path: Path) -> None:
    site, _ = sites
    identity = verifier.enrol(SITE, site.url, tmp_path)
    nonce = os.urandom(20)
    quote, events = _answer(site, nonce)
    # Claim another digest for the binary: the log no longer replays to the quoted PCR.
    tampered = [dict(e) for e in events]
    tampered[0]["digest"] = "ab" * 32
    with pytest.raises(Refused) as exc:
        check_quote(SITE, identity, nonce, quote, tampered, _policy(site))
    assert exc.value.check == "event_log"
    assert "the log was altered or is incomplete" in exc.value.reason
    # Dropping an event is caught the same way.
    with pytest.raises(Refused, match="altered or is incomplete"):
        check_quote(SITE, identity, nonce, quote, events[1:], _policy(site))


def test_quote_over_another_pcr_is_refused(sites: tuple[Site, Site], tmp_path: Path) -> None:
    # PCR 16 (debug) can be reset and extended by any local user to mimic PCR 15's value;
    # Keylime's checkquote does not compare the selection, we do.
    site, _ = sites
    identity = verifier.enrol(SITE, site.url, tmp_path)
    nonce = os.urandom(20)
    _, events = _answer(site, nonce)
    quote = site.agent.tpm.quote(nonce, [16])
    with pytest.raises(Refused) as exc:
        check_quote(SITE, identity, nonce, quote, events, _policy(site))
    assert exc.value.check == "selection"
    assert "covers PCRs [16]" in exc.value.reason


def test_replaced_binary_fails_the_policy_and_cuts_the_site_off(
    sites: tuple[Site, Site], tmp_path: Path
) -> None:
    # Last in this module: the site's PCR keeps the bad measurement until its TPM resets.
    site, _ = sites
    state = tmp_path / "verifier"
    keys = KeyStore(tmp_path / "keys")
    policy = _policy(site)
    verifier.enrol(SITE, site.url, state)
    cut: list[frozenset[str]] = []
    v = verifier.Verifier({SITE: site.url}, {SITE: policy}, state, keys, gate=cut.append)
    assert v.run_once()[SITE].state == "admitted"
    assert cut == [frozenset({SITE})]
    binary = site.root / "usr/bin/wireguard-go"
    replacement = binary.with_name("wireguard-go.new")
    replacement.write_bytes(b"something else\n")
    replacement.replace(binary)
    status = v.run_once()[SITE]
    assert (status.state, status.check) == ("cut_off", "policy")
    assert status.reason.startswith("wireguard-go: digest ")
    assert cut[-1] == frozenset()
    assert keys.revoked() == {SITE}
    assert '"event": "cut_off"' in (state / verifier.ALERTS_FILE).read_text()
    # Putting the file back is not enough: the TPM still holds the trace.
    binary.write_bytes(b"wireguard-go build 1\n" * 100)
    assert v.run_once()[SITE].state == "cut_off"
    assert Event(15, CONFIG_EVENT, policy.config_digest) in site.agent.events


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/quote", {"nonce": "zz"}, "nonce must be 8-32 bytes in hex"),
        ("/quote", {}, "nonce must be 8-32 bytes in hex"),
        ("/key", {"credential": "not base64!"}, "credential is not base64"),
        (
            "/enrol",
            {"credential": base64.b64encode(b"junk").decode()},
            "activating the credential failed",
        ),
        ("/nowhere", {}, "no POST /nowhere"),
    ],
)
def test_agent_refuses_bad_requests_with_a_reason(
    sites: tuple[Site, Site], path: str, body: dict[str, str], error: str
) -> None:
    site, _ = sites
    with pytest.raises(Refused) as exc:
        verifier.call(site.url, path, body)
    assert exc.value.check == "unreachable" and error in exc.value.reason
