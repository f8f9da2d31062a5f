"""Helpers for tests that use the real Debian mirror (marker `network`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverkit.cache import DownloadCache
from driverkit.debarchive import DebianArchive
from driverkit.headers import HeaderResolver, ResolvedHeaders


def real_archive(cache_root: Path) -> DebianArchive:
    from driverkit.mirrors import host_mirrors

    mirrors = host_mirrors()
    if not mirrors.debian:
        pytest.skip("no Debian mirror in /etc/apt")
    return DebianArchive(mirrors, DownloadCache(cache_root))


def bookworm_release(cache_root: Path) -> str:
    """The newest 6.1.0-N-amd64 kernel whose packages the mirror serves."""
    archive = real_archive(cache_root)
    releases: set[str] = set()
    for suite, _ in archive.suites:
        if suite.startswith("bookworm"):
            releases |= {
                e.release
                for e in archive.kernel_releases(suite)
                if e.release.startswith("6.1.0-") and e.flavor == "amd64"
            }
    for release in sorted(releases, key=lambda r: int(r.split("-")[1]), reverse=True):
        found = archive.find_headers(release)
        if all(archive.cache.exists(p.url) for p in found.packages):
            return release
    pytest.fail(f"no reachable bookworm 6.1 kernel ({archive.unreachable})")


def host_buildable_release(cache_root: Path) -> str:
    """A kernel this host's compiler (bookworm gcc-12) builds: bookworm's 6.1."""
    return bookworm_release(cache_root)


def resolve_real_headers(release: str, cache_root: Path) -> ResolvedHeaders:
    from driverkit.config import load_config, resolve_plan

    archive = real_archive(cache_root)
    cfg = load_config({})
    plan = resolve_plan(release, cfg, archive.mirrors, target="debian")
    return HeaderResolver(archive.cache, archive).resolve(plan)
