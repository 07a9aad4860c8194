"""Key generation and the on-disk key store."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from bridge.keys import (
    KeyStore,
    KeyStoreError,
    check_public_key,
    generate_private_key,
    public_key_of,
)


def test_generated_keys_are_clamped_curve25519() -> None:
    raw = base64.b64decode(generate_private_key())
    assert len(raw) == 32
    assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64 == 64


def test_public_key_matches_rfc7748_test_vector() -> None:
    # RFC 7748 section 6.1: Alice's private and public key.
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert public_key_of(base64.b64encode(alice).decode()) == base64.b64encode(public).decode()


def test_store_creates_private_files_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    first = store.ensure_all(["hq", "cloud-a"])
    assert store.ensure("hq") == first["hq"]
    assert first["hq"] != first["cloud-a"]
    key_file = store.private_key_file("hq")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert (tmp_path / "keys" / "hq.pub").read_text().strip() == first["hq"]
    assert check_public_key(first["hq"]) == first["hq"]


def test_private_key_never_in_repr_or_errors(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.ensure("hq")
    private = store.private_key("hq")
    assert private not in repr(store)
    with pytest.raises(KeyStoreError) as info:
        public_key_of(private[:-4])
    assert private[:-4] not in str(info.value)


def test_store_refuses_keys_readable_by_others(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.ensure("hq")
    os.chmod(store.private_key_file("hq"), 0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        store.private_key("hq")


def test_missing_and_malformed_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(
        KeyStoreError, match=r"no key for site 'hq'.*overcast bridge keys generate CONFIG --keys"
    ):
        store.public_key("hq")
    fd = os.open(store.private_key_file("hq"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"garbage\n")
    os.close(fd)
    with pytest.raises(KeyStoreError, match="is not a WireGuard key"):
        store.public_key("hq")


def test_a_provider_site_needs_only_its_key_and_the_peers_public_keys(tmp_path: Path) -> None:
    enterprise = KeyStore(tmp_path / "enterprise")
    public = enterprise.ensure_all(["hq", "cloud"])
    provider = KeyStore(tmp_path / "cloud-host")
    provider.directory.mkdir()
    for name in ("cloud.key", "hq.pub"):
        source = enterprise.directory / name
        (provider.directory / name).write_bytes(source.read_bytes())
    os.chmod(provider.private_key_file("cloud"), 0o600)
    assert provider.public_key("hq") == public["hq"]
    assert provider.public_key("cloud") == public["cloud"]  # derived from its own key
    with pytest.raises(KeyStoreError, match="no key for site 'branch'"):
        provider.public_key("branch")
    (provider.directory / "bad.pub").write_text("not-a-key\n")
    with pytest.raises(KeyStoreError, match=r"public key in .*bad.pub is not a WireGuard key"):
        provider.public_key("bad")


def test_rotate_revoke_and_provision(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    first = store.ensure_all(["hq", "cloud", "branch"])
    old, new = store.rotate("hq")
    assert old == first["hq"] != new == store.public_key("hq")
    assert public_key_of(store.private_key("hq")) == new
    assert stat.S_IMODE(store.private_key_file("hq").stat().st_mode) == 0o600

    assert store.revoke("cloud") == first["cloud"]
    assert store.revoked() == {"cloud"}
    assert not store.private_key_file("cloud").exists()
    assert store.ensure_all(["hq", "cloud"]) == {"hq": new}  # not regenerated
    with pytest.raises(KeyStoreError, match=r"site 'cloud' is revoked.*keys rotate CONFIG cloud"):
        store.ensure("cloud")
    assert store.revoke("cloud") == first["cloud"]  # twice is fine

    # A site's own directory: its private key and its peers' public keys, nothing else.
    site = tmp_path / "sites" / "branch"
    site.mkdir(parents=True)
    (site / "stale.pub").write_text(first["cloud"] + "\n")
    (site / "hq.key").write_text(store.private_key("hq") + "\n")
    store.provision("branch", ["hq"], site)
    assert sorted(p.name for p in site.iterdir()) == ["branch.key", "hq.pub"]
    assert KeyStore(site).private_key("branch") == store.private_key("branch")
    assert KeyStore(site).public_key("hq") == new

    # Rotating a revoked site re-admits it with a new key.
    old, again = store.rotate("cloud")
    assert (old, store.revoked()) == (None, frozenset())
    assert again not in (first["cloud"], None)


def test_live_key_change_through_wg_set_names_the_failure() -> None:
    """Without a wireguard-go socket the change goes through `wg set` (the kernel module's
    way); one that fails is an ApplyError naming the interface, not a crash."""
    from bridge import wireguard
    from bridge.netns import ApplyError

    change = wireguard.set_private_key("ocnone0", "ocnone0wg0", generate_private_key())
    with pytest.raises(ApplyError, match="wg set ocnone0wg0 in namespace ocnone0 failed"):
        wireguard.apply_live([change])
