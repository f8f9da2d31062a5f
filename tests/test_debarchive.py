"""Debian archive index: parsing a recorded Packages excerpt, resolution over a real
loopback HTTP mirror, and (network) the real mirror."""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

import pytest

from driverkit.cache import DownloadCache
from driverkit.debarchive import (
    DebianArchive,
    compare_versions,
    depends_names,
    parse_packages,
    parse_release,
    suite_roots,
)
from driverkit.errors import DownloadError, HeadersNotFoundError
from driverkit.targets.base import Mirrors
from tests.build_helpers import ArchiveKey, serve_dir
from tests.conftest import FIXTURES

EXCERPT = FIXTURES / "build" / "Packages-bookworm-excerpt"


def test_parse_packages_keeps_only_linux_packages() -> None:
    index = parse_packages(EXCERPT.read_text(), "http://mirror.invalid/debian", "bookworm")
    assert "bash" not in index
    pkg = index["linux-headers-6.1.0-47-amd64"][0]
    assert pkg.version == "6.1.170-3"
    assert pkg.size == 1655296
    assert pkg.sha256 == "2a40c463e108b1ea3abf2e16e38eb9e27b237693b974b862adde73873c7d85c1"
    assert pkg.url == (
        "http://mirror.invalid/debian/pool/main/l/linux/"
        "linux-headers-6.1.0-47-amd64_6.1.170-3_amd64.deb"
    )
    assert depends_names(pkg.depends) == [
        ("linux-headers-6.1.0-47-common", "6.1.170-3"),
        ("linux-kbuild-6.1", None),
        ("linux-compiler-gcc-12-x86", None),
    ]


def test_parse_release_sha256_section() -> None:
    text = (
        "Origin: Debian\nMD5Sum:\n 00 12 main/binary-amd64/Packages.xz\n"
        "SHA256:\n " + "ab" * 32 + " 345 main/binary-amd64/Packages.xz\n"
        " " + "cd" * 32 + " 999 main/binary-amd64/Packages\n"
    )
    parsed = parse_release(text)
    assert parsed["main/binary-amd64/Packages.xz"] == ("ab" * 32, 345)
    assert parsed["main/binary-amd64/Packages"] == ("cd" * 32, 999)


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("6.1.170-3", "6.1.170-10", -1),
        ("6.1.176-1", "6.1.170-3", 1),
        ("1.0~rc1-1", "1.0-1", -1),
        ("6.12.95-1~bpo12+1", "6.12.95-1", -1),
        ("1:0.3-2", "0.8-1", 1),
        ("5.10.223-1", "5.10.223-1", 0),
    ],
)
def test_compare_versions(a: str, b: str, sign: int) -> None:
    result = compare_versions(a, b)
    assert (result > 0) - (result < 0) == sign


def test_suite_roots_follow_the_mirrors() -> None:
    both = suite_roots(Mirrors(debian="http://m/debian", debian_security="http://m/sec"))
    assert ("bookworm-security", "http://m/sec") in both
    assert ("bookworm-backports", "http://m/debian") in both
    assert not any(s == "sid-security" for s, _ in both)
    only_main = suite_roots(Mirrors(debian="http://m/debian"))
    assert not any(s.endswith("-security") for s, _ in only_main)


def _make_mirror(root: Path, packages_text: str, key: ArchiveKey, suite: str = "bookworm"
                 ) -> Path:
    """A one-suite Debian mirror under root/debian with an InRelease signed by `key`;
    returns the suite's dists folder."""
    dists = root / "debian" / "dists" / suite
    (dists / "main" / "binary-amd64").mkdir(parents=True)
    xz = lzma.compress(packages_text.encode())
    (dists / "main" / "binary-amd64" / "Packages.xz").write_bytes(xz)
    sha = hashlib.sha256(xz).hexdigest()
    key.clearsign(f"Suite: {suite}\nSHA256:\n {sha} {len(xz)} main/binary-amd64/Packages.xz\n",
                  dists / "InRelease")
    return dists


def _archive(base: str, cache: Path, key: ArchiveKey) -> DebianArchive:
    return DebianArchive(Mirrors(debian=f"{base}/debian", debian_keyring=str(key.keyring)),
                         DownloadCache(cache), codenames=("bookworm",))


def test_archive_over_loopback_mirror(tmp_path: Path, archive_key: ArchiveKey) -> None:
    _make_mirror(tmp_path / "www", EXCERPT.read_text(), archive_key)
    with serve_dir(tmp_path / "www") as (base, hits):
        archive = _archive(base, tmp_path / "cache", archive_key)
        found = archive.find_headers("6.1.0-47-amd64")
        names = [p.name for p in found.packages]
        assert names == [
            "linux-headers-6.1.0-47-amd64",
            "linux-headers-6.1.0-47-common",
            "linux-kbuild-6.1",
        ]
        # Depends says kbuild >= 6.1.170-3: the one the suite has (6.1.176-1) satisfies it.
        assert found.packages[2].version == "6.1.176-1"
        assert found.packages[0].url.startswith(f"{base}/debian/pool/main/l/linux/")
        image = archive.find_image("6.1.0-47-amd64")
        assert image is not None and image.name == "linux-image-6.1.0-47-amd64-unsigned"
        assert archive.find_image("6.1.0-50-amd64") is None  # not in the excerpt
        releases = {e.release for e in archive.kernel_releases("bookworm")}
        assert releases == {
            "6.1.0-47-amd64",
            "6.1.0-47-cloud-amd64",
            "6.1.0-47-rt-amd64",
            "6.1.0-50-amd64",
        }
        with pytest.raises(HeadersNotFoundError, match=r"linux-headers-6\.1\.0-99-amd64"):
            archive.find_headers("6.1.0-99-amd64")
        # -updates does not exist on this mirror: recorded, not fatal.
        assert "bookworm-updates" in archive.unreachable
        # A second archive object reuses the verified, parsed index without downloading.
        before = hits["/debian/dists/bookworm/main/binary-amd64/Packages.xz"]
        again = _archive(base, tmp_path / "cache", archive_key)
        assert again.find_headers("6.1.0-47-amd64") == found
        assert hits["/debian/dists/bookworm/main/binary-amd64/Packages.xz"] == before == 1


def _unsigned(inrelease: Path) -> str:
    """The text of a clearsigned file, without the signature armour."""
    body = inrelease.read_text().split("\n\n", 1)[1]
    return body.split("-----BEGIN PGP SIGNATURE-----", 1)[0]


def test_release_with_a_detached_signature_is_used_when_inrelease_is_missing(
        tmp_path: Path, archive_key: ArchiveKey) -> None:
    dists = _make_mirror(tmp_path / "www", EXCERPT.read_text(), archive_key)
    (dists / "Release").write_text(_unsigned(dists / "InRelease"))
    (dists / "InRelease").unlink()
    archive_key.detach_sign(dists / "Release", dists / "Release.gpg")
    with serve_dir(tmp_path / "www") as (base, _):
        archive = _archive(base, tmp_path / "cache", archive_key)
        assert archive.find_headers("6.1.0-50-amd64").version == "6.1.176-1"
    # Without its signature, Release is not trusted.
    (dists / "Release.gpg").unlink()
    with serve_dir(tmp_path / "www") as (base, _):
        archive = _archive(base, tmp_path / "cache2", archive_key)
        assert archive.packages("bookworm") == {}
        assert "Release.gpg" in archive.unreachable["bookworm"]


@pytest.mark.parametrize("damage", ["unsigned", "other key", "edited", "appended"])
def test_only_what_the_archive_key_signed_is_read(tmp_path: Path, archive_key: ArchiveKey,
                                                  damage: str) -> None:
    """A mirror or proxy that serves an unsigned, foreign-signed or edited InRelease gets
    nothing through; text after the signature is never read."""
    dists = _make_mirror(tmp_path / "www", EXCERPT.read_text(), archive_key)
    inrelease = dists / "InRelease"
    evil = lzma.compress(b"Package: linux-headers-6.1.0-50-amd64\nVersion: 666\n")
    (dists / "main/binary-amd64/Packages.xz.evil").write_bytes(evil)
    evil_line = f" {hashlib.sha256(evil).hexdigest()} {len(evil)} main/binary-amd64/Packages.xz"
    if damage == "unsigned":
        inrelease.write_text(_unsigned(inrelease))
    elif damage == "other key":
        stranger = ArchiveKey(tmp_path / "stranger-gpg", "stranger")
        try:
            stranger.clearsign(_unsigned(inrelease), inrelease)
        finally:
            stranger.close()
    elif damage == "edited":
        text = inrelease.read_text()
        inrelease.write_text(text.replace("Suite: bookworm", "Suite: bookwork"))
    else:
        inrelease.write_text(inrelease.read_text() + f"SHA256:\n{evil_line}\n")
    with serve_dir(tmp_path / "www") as (base, _):
        archive = _archive(base, tmp_path / "cache", archive_key)
        if damage == "appended":
            # The signed part still names the real index: it is the one used.
            assert archive.find_headers("6.1.0-50-amd64").version == "6.1.176-1"
            return
        with pytest.raises(HeadersNotFoundError, match="signature not verified"):
            archive.find_headers("6.1.0-50-amd64")


def test_a_missing_keyring_is_named_with_the_fix(tmp_path: Path, archive_key: ArchiveKey
                                                 ) -> None:
    _make_mirror(tmp_path / "www", EXCERPT.read_text(), archive_key)
    with serve_dir(tmp_path / "www") as (base, _):
        archive = DebianArchive(
            Mirrors(debian=f"{base}/debian", debian_keyring=str(tmp_path / "nope.gpg")),
            DownloadCache(tmp_path / "cache"), codenames=("bookworm",))
        with pytest.raises(HeadersNotFoundError, match="DRIVERKIT_DEBIAN_KEYRING"):
            archive.find_headers("6.1.0-50-amd64")


def test_archive_rejects_an_index_that_does_not_match_inrelease(
        tmp_path: Path, archive_key: ArchiveKey) -> None:
    _make_mirror(tmp_path / "www", EXCERPT.read_text(), archive_key)
    packages = tmp_path / "www/debian/dists/bookworm/main/binary-amd64/Packages.xz"
    packages.write_bytes(lzma.compress(b"Package: linux-evil\n"))
    with serve_dir(tmp_path / "www") as (base, _):
        archive = _archive(base, tmp_path / "cache", archive_key)
        assert archive.packages("bookworm") == {}
        assert (
            "does not match" in archive.unreachable["bookworm"]
            or "bytes" in archive.unreachable["bookworm"]
        )
        with pytest.raises(DownloadError):
            archive.cache.fetch(f"{base}/debian/dists/bookworm/main/binary-amd64/Packages.xz",
                                "00" * 32)


@pytest.mark.network
def test_real_mirror_lists_bookworm_kernels_and_their_packages(ci_cache: Path) -> None:
    from driverkit.mirrors import default_mirrors

    mirrors = default_mirrors()
    if not mirrors.debian:
        pytest.skip("no Debian mirror in /etc/apt")
    archive = DebianArchive(mirrors, DownloadCache(ci_cache))
    entries = [
        e for s, _ in archive.suites if s.startswith("bookworm") for e in archive.kernel_releases(s)
    ]
    six_one = sorted(
        {e.release for e in entries if e.release.startswith("6.1.0-") and e.flavor == "amd64"}
    )
    assert six_one, f"no 6.1 amd64 kernel in bookworm suites ({archive.unreachable})"
    found = archive.find_headers(six_one[-1])
    names = [p.name for p in found.packages]
    assert names[0] == f"linux-headers-{six_one[-1]}"
    assert any(n.endswith("-common") for n in names)
    assert any(n.startswith("linux-kbuild-") for n in names)
    assert all(len(p.sha256) == 64 and p.size > 0 for p in found.packages)
