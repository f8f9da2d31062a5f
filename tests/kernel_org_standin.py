"""A kernel.org source tarball, stood in by Debian's own copy of that kernel's sources.

kernel.org is unreachable here. Debian ships each kernel's full source tree as
`linux-source-X.Y` (`/usr/src/linux-source-X.Y.tar.xz`, the upstream release plus Debian's
patches) from the same upload as its headers; its version's upstream part (6.1.192 of
6.1.192-3) is the release a vanilla host running those sources reports. So:

- real: the source tree bytes (Debian's signed archive, sha256-checked), the kernel's own
  .config (from the same upload's headers package), everything the build does with them;
- stood in: the tarball is served at kernel.org's path for that release
  (`/pub/linux/kernel/v6.x/linux-6.1.192.tar.xz`) with Debian's top directory name
  (`linux-source-6.1/`, kernel.org's is `linux-6.1.192/`) and Debian's patches inside.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from driverkit.debarchive import DebianArchive, DebPackage
from driverkit.headers import extract_deb
from tests.build_helpers_real import real_archive, resolve_real_headers

KERNEL_ORG_HOST = "cdn.kernel.org"


@dataclass(frozen=True)
class SourceStandIn:
    release: str  # the vanilla release: the upstream version, e.g. 6.1.192
    debian_release: str  # the Debian kernel of the same upload, e.g. 6.1.0-57-amd64
    tarball: Path  # Debian's linux-source-X.Y.tar.xz
    config: Path  # that kernel's .config
    url_path: str  # where kernel.org serves the release, below the host

    def place(self, root: Path) -> Path:
        """Lay the tarball out under `root/<host>/<path>` (a hard link when possible)."""
        dest = root / KERNEL_ORG_HOST / self.url_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            try:
                dest.hardlink_to(self.tarball)
            except OSError:
                shutil.copy2(self.tarball, dest)
        return dest


def _source_package(archive: DebianArchive, series: str, version: str) -> DebPackage:
    name = f"linux-source-{series}"
    for suite, _ in archive.suites:
        for package in archive.packages(suite).get(name, []):
            if package.version == version:
                return package
    raise LookupError(f"the mirror has no {name} {version} (the upload of the headers)")


def source_standin(debian_release: str, cache_root: Path) -> SourceStandIn:
    """The stand-in for the vanilla build of `debian_release`'s sources (cached)."""
    archive = real_archive(cache_root)
    headers = archive.find_headers(debian_release)
    version = headers.packages[0].version  # 6.1.192-3: the upload's version
    upstream = version.split("-", 1)[0]
    series = ".".join(upstream.split(".")[:2])
    deb = archive.cache.fetch(*_fetch_args(_source_package(archive, series, version)))
    folder = cache_root / "kernel-org-standin" / f"linux-source-{version}"
    tarball = folder / f"linux-source-{series}.tar.xz"
    if not tarball.is_file():
        staging = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        extract_deb(deb, staging)
        folder.mkdir(parents=True, exist_ok=True)
        (staging / "usr" / "src" / tarball.name).rename(tarball)
        shutil.rmtree(staging, ignore_errors=True)
    config = folder / "config"
    if not config.is_file():
        kernel_dir = resolve_real_headers(debian_release, cache_root).kernel_dir
        shutil.copyfile(kernel_dir / ".config", config)
    major = upstream.split(".")[0]
    return SourceStandIn(upstream, debian_release, tarball, config,
                         f"pub/linux/kernel/v{major}.x/linux-{upstream}.tar.xz")  # fmt: skip


def _fetch_args(package: DebPackage) -> tuple[str, str, int]:
    return package.url, package.sha256, package.size
