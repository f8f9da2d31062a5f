"""Kernel catalogs: kernel-crawler JSON round trip, mirror tokens, the Debian crawler
over a real loopback mirror, and the committed kernels/debian.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivercore.kernelrelease import parse_kernel_release
from driverkit.catalog import (
    CatalogEntry,
    crawl_debian,
    load_catalog,
    load_catalog_doc,
    save_catalog,
)
from driverkit.errors import UsageError
from driverkit.targets.base import Mirrors
from tests.build_helpers import ArchiveKey, serve_dir
from tests.conftest import FIXTURES, REPO_ROOT
from tests.test_debarchive import _archive, _make_mirror

MIRRORS = Mirrors(
    debian="http://m.invalid/debian", debian_security="http://m.invalid/debian-security"
)


def test_round_trip_stores_mirror_tokens(tmp_path: Path) -> None:
    entry = CatalogEntry(
        "6.1.0-47-amd64",
        "#1 SMP Debian 6.1.170-3",
        "debian",
        (
            "http://m.invalid/debian/pool/main/l/linux/h.deb",
            "http://m.invalid/debian-security/pool/updates/main/l/linux/k.deb",
            "https://elsewhere.invalid/x.rpm",
        ),
    )
    path = tmp_path / "c.json"
    save_catalog({"Debian": [entry]}, path, MIRRORS)
    raw = json.loads(path.read_text())
    assert raw["Debian"][0]["headers"] == [
        "{debian}/pool/main/l/linux/h.deb",
        "{debian_security}/pool/updates/main/l/linux/k.deb",
        "https://elsewhere.invalid/x.rpm",
    ]
    assert "m.invalid" not in path.read_text()
    assert load_catalog(path, MIRRORS) == [entry]
    other = Mirrors(debian="http://local/debian", debian_security="http://local/sec")
    assert load_catalog(path, other)[0].headers[0] == "http://local/debian/pool/main/l/linux/h.deb"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "not valid JSON"),
        ("[]", r"expected \{distro"),
        ('{"Debian": {}}', "must map to a list"),
        ('{"Debian": [{"kernelversion": "1"}]}', "kernelrelease"),
        (
            '{"Debian": [{"kernelrelease": "6.1.0-1-amd64", "target": "debian", "headers": "x"}]}',
            "headers",
        ),
    ],
)
def test_bad_catalogs_are_one_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=needle) as info:
        load_catalog_doc(path, MIRRORS)
    assert str(path) in str(info.value)


def test_token_without_a_mirror_says_how_to_set_one(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "Debian": [
                    {
                        "kernelrelease": "6.1.0-1-amd64",
                        "target": "debian",
                        "headers": ["{debian_security}/pool/x.deb"],
                    }
                ]
            }
        )
    )
    with pytest.raises(UsageError, match="DRIVERKIT_DEBIAN_SECURITY_MIRROR"):
        load_catalog(path, Mirrors(debian="http://m.invalid/debian"))


def test_crawl_lists_reachable_kernels_once(tmp_path: Path, archive_key: ArchiveKey) -> None:
    www = tmp_path / "www"
    excerpt = (FIXTURES / "build" / "Packages-bookworm-excerpt").read_text()
    _make_mirror(www, excerpt, archive_key)
    # Serve the pool files of 6.1.0-47-amd64 only: the other kernels are "index only".
    for name in (
        "linux-headers-6.1.0-47-amd64_6.1.170-3_amd64.deb",
        "linux-headers-6.1.0-47-common_6.1.170-3_all.deb",
        "linux-kbuild-6.1_6.1.176-1_amd64.deb",
    ):
        pool = www / "debian" / "pool" / "main" / "l" / "linux"
        pool.mkdir(parents=True, exist_ok=True)
        (pool / name).write_bytes(b"deb")
    with serve_dir(www) as (base, _):
        archive = _archive(base, tmp_path / "cache", archive_key)
        everything = crawl_debian(archive, check_reachable=False)["Debian"]
        reachable = crawl_debian(archive, check_reachable=True)["Debian"]
    assert [e.kernelrelease for e in everything] == [
        "6.1.0-47-amd64",
        "6.1.0-47-cloud-amd64",
        "6.1.0-47-rt-amd64",
        "6.1.0-50-amd64",
    ]
    rt = next(e for e in everything if e.kernelrelease == "6.1.0-47-rt-amd64")
    assert any("common-rt" in h for h in rt.headers)
    assert [e.kernelrelease for e in reachable] == ["6.1.0-47-amd64"]
    assert reachable[0].kernelversion == "#1 SMP Debian 6.1.170-3"


def test_committed_debian_catalog_covers_every_suite() -> None:
    entries = load_catalog(REPO_ROOT / "kernels" / "debian.json", MIRRORS)
    assert len(entries) >= 20
    releases = [e.kernelrelease for e in entries]
    assert len(set(releases)) == len(releases)
    for marker in ("5.10.0-", "6.1.0-", "+deb12-", "+deb13-", "+deb14-"):
        assert any(marker in r for r in releases), marker
    for flavor in ("-cloud-amd64", "-rt-amd64"):
        assert any(r.endswith(flavor) for r in releases), flavor
    for e in entries:
        parse_kernel_release(e.kernelrelease)
        assert e.target == "debian"
        assert len(e.headers) == 3 and all(h.endswith(".deb") for h in e.headers)
        assert e.headers[0].split("/")[-1].startswith(f"linux-headers-{e.kernelrelease}_")
