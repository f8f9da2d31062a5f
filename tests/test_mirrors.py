"""Mirror discovery reads apt's sources in both formats; nothing is hard-coded."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverkit import mirrors
from driverkit.config import load_config
from driverkit.errors import UsageError
from driverkit.mirrors import (
    apt_uris,
    debian_mirror_from_apt,
    default_mirrors,
    host_mirrors,
    require_debian_mirror,
)
from driverkit.targets.base import Mirrors


def _apt_tree(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.invalid/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://two.invalid/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://two.invalid/debian-security\nSuites: bookworm-security\n"
    )
    return tmp_path


def test_both_formats_are_read_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIVERKIT_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("DRIVERKIT_DEBIAN_SECURITY_MIRROR", raising=False)
    root = _apt_tree(tmp_path)
    assert apt_uris(root) == [
        "http://one.invalid/debian",
        "http://two.invalid/debian",
        "http://two.invalid/debian-security",
    ]
    monkeypatch.setenv("DRIVERKIT_DEBIAN_KEYRING", "/keys/a.gpg:/keys/b.gpg")
    assert default_mirrors(root) == Mirrors(
        debian="http://one.invalid/debian", debian_security="http://two.invalid/debian-security",
        debian_keyring="/keys/a.gpg:/keys/b.gpg",
    )


def test_the_keyring_defaults_to_the_hosts_debian_archive_keyring(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRIVERKIT_DEBIAN_KEYRING", raising=False)
    ring = tmp_path / "debian-archive-keyring.gpg"
    monkeypatch.setattr(mirrors, "DEBIAN_ARCHIVE_KEYRING", ring)
    assert mirrors.debian_keyring_default() == ""  # none on this host: verification fails
    ring.write_bytes(b"keys")
    assert mirrors.debian_keyring_default() == str(ring)


def test_env_overrides_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVERKIT_DEBIAN_MIRROR", "http://local.invalid/debian/")
    assert debian_mirror_from_apt(_apt_tree(tmp_path)) == "http://local.invalid/debian"


def test_missing_mirror_says_how_to_set_one() -> None:
    with pytest.raises(UsageError, match="DRIVERKIT_DEBIAN_MIRROR"):
        require_debian_mirror(Mirrors())


def test_host_mirrors_are_discovered_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []

    def counting(apt_root: Path = mirrors.APT_ROOT) -> Mirrors:
        reads.append(apt_root)
        return Mirrors(debian="http://apt.invalid/debian")

    monkeypatch.setattr(mirrors, "default_mirrors", counting)
    host_mirrors.cache_clear()
    try:
        first = load_config({}, environ={})
        second = load_config({"kernels": ("6.1.0-56-amd64",)}, environ={})
        assert first.mirrors == second.mirrors == host_mirrors()
        assert first.mirrors.debian == "http://apt.invalid/debian"
        assert len(reads) == 1
    finally:
        host_mirrors.cache_clear()


def test_mirror_options_override_the_injected_discovery() -> None:
    found = Mirrors(
        debian="http://apt.invalid/debian",
        debian_security="http://apt.invalid/debian-security",
        debian_keyring="/keys/host.gpg",
    )
    cfg = load_config(
        {"debian_mirror": "http://flag.invalid/debian/"},
        environ={"DRIVERKIT_DEBIAN_KEYRING": "/keys/env.gpg"},
        discovered_mirrors=found,
    )
    assert cfg.mirrors == Mirrors(
        debian="http://flag.invalid/debian",
        debian_security="http://apt.invalid/debian-security",
        debian_keyring="/keys/env.gpg",
    )
