"""Content-addressed download cache against a real loopback HTTP server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from driverkit.cache import DownloadCache
from driverkit.errors import DownloadError
from tests.build_helpers import serve_dir


def _blob_files(cache_root: Path) -> list[Path]:
    return sorted((cache_root / "blobs" / "sha256").iterdir())


def test_fetch_verifies_and_reuses(tmp_path: Path) -> None:
    payload = b"kernel headers " * 1000
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "pkg.deb").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    with serve_dir(tmp_path / "www") as (base, hits):
        cache = DownloadCache(tmp_path / "cache")
        first = cache.fetch(f"{base}/pkg.deb", sha, len(payload))
        second = cache.fetch(f"{base}/pkg.deb", sha, len(payload))
        assert first == second == cache.blob_path(sha)
        assert first.read_bytes() == payload
        assert hits["/pkg.deb"] == 1
        # Same content under another URL: still one blob, found by sha without a GET.
        assert cache.fetch(f"{base}/other-name.deb", sha, len(payload)) == first
        assert hits["/other-name.deb"] == 0


def test_unknown_checksum_is_hashed_on_arrival_and_remembered(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "k.rpm").write_bytes(b"rpm bytes")
    with serve_dir(tmp_path / "www") as (base, hits):
        cache = DownloadCache(tmp_path / "cache")
        path = cache.fetch(f"{base}/k.rpm")
        assert path.name == hashlib.sha256(b"rpm bytes").hexdigest()
        assert cache.is_cached(f"{base}/k.rpm")
        cache.fetch(f"{base}/k.rpm")
        assert hits["/k.rpm"] == 1


def test_a_file_republished_under_its_name_is_taken_as_it_now_is(tmp_path: Path) -> None:
    """Without a published sha256, what a URL served before is only a hint: a repository
    that rebuilt a package under the same name (seen with a HEAD size that differs) gives
    its new bytes, not a checksum error against the old ones."""
    (tmp_path / "www").mkdir()
    served = tmp_path / "www" / "kernel-devel.rpm"
    served.write_bytes(b"first build")
    with serve_dir(tmp_path / "www") as (base, hits):
        cache = DownloadCache(tmp_path / "cache")
        first = cache.fetch(f"{base}/kernel-devel.rpm")
        served.write_bytes(b"second build, longer")
        second = cache.fetch(f"{base}/kernel-devel.rpm", size=len(b"second build, longer"))
        assert second.read_bytes() == b"second build, longer" and first != second
        assert hits["/kernel-devel.rpm"] == 2
        # A published checksum still has to match.
        served.write_bytes(b"third")
        with pytest.raises(DownloadError, match="does not match"):
            cache.fetch(f"{base}/kernel-devel.rpm", hashlib.sha256(b"other").hexdigest())


@pytest.mark.parametrize("bad", ["sha", "size"])
def test_mismatch_raises_and_leaves_nothing(tmp_path: Path, bad: str) -> None:
    payload = b"x" * 4096
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "pkg.deb").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    wrong_sha = "0" * 64 if bad == "sha" else sha
    wrong_size = len(payload) + 1 if bad == "size" else len(payload)
    with serve_dir(tmp_path / "www") as (base, _):
        cache = DownloadCache(tmp_path / "cache")
        with pytest.raises(DownloadError, match=r"pkg\.deb"):
            cache.fetch(f"{base}/pkg.deb", wrong_sha, wrong_size)
        assert _blob_files(tmp_path / "cache") == []


def test_http_error_names_the_url(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    with serve_dir(tmp_path / "www") as (base, _):
        cache = DownloadCache(tmp_path / "cache")
        with pytest.raises(DownloadError, match=r"missing\.deb: HTTP 404"):
            cache.fetch(f"{base}/missing.deb")
        assert not cache.exists(f"{base}/missing.deb")


def test_fresh_index_is_reused_until_it_ages(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "InRelease").write_text("v1")
    with serve_dir(tmp_path / "www") as (base, hits):
        cache = DownloadCache(tmp_path / "cache")
        assert cache.fetch_fresh(f"{base}/InRelease", 3600).read_text() == "v1"
        (tmp_path / "www" / "InRelease").write_text("v2")
        assert cache.fetch_fresh(f"{base}/InRelease", 3600).read_text() == "v1"
        assert cache.fetch_fresh(f"{base}/InRelease", 0).read_text() == "v2"
        assert hits["/InRelease"] == 2
