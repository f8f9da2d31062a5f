"""Debian kernels: headers from the Debian archive, built in the suite that built the kernel.

A Debian kernel must be built with the compiler of the suite it was built in (a 6.12+deb13
kernel records gcc-14 in its headers' dependencies, a 6.1 kernel gcc-12), so the builder
image is that suite rather than a gcc picked from a table. The suite is read from the
release's own markers (`+deb13`, `.deb10.`, `~bpo12`) and otherwise from the kernel series
each stable release shipped.

The exact package version is only in `uname -v` (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.153-1`).
With it the three header packages (arch headers, `-common`, `linux-kbuild`) are exact .deb
URLs; without it the candidates are the pool directories, which the network step searches
through the archive's Packages indexes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from drivercore.kernelrelease import (
    KernelRelease,
    debian_package_version,
    normalize_arch,
    parse_kernel_release,
    validate_kernel_version,
)
from drivercore.naming import ArtifactKernel
from driverkit.gcc import DEBIAN_SUITES, debian_image, gcc_major
from driverkit.targets.base import BuilderSpec, Mirrors
from driverkit.targets.common import DistroTarget, debian_builder, mismatch

# `-amd64`, `-cloud-amd64`, `-rt-arm64`: the image flavor Debian appends to the ABI name.
_FLAVOR_SUFFIX = re.compile(r"-(?:(rt|cloud)-)?(amd64|arm64)$", re.ASCII)
# falcoctl's patterns for its Debian naming fix-up (copied as behaviour, see artifact_kernel).
# ABI names of the stable series scheme (until 6.1): X.Y.0-N and backports X.Y.0-0.debN.M.
_SERIES_ABI = re.compile(r"\d+\.\d+\.0-\d+(?:\.deb\d+\.\d+)?", re.ASCII)
_FALCOCTL_ARCH_EXTRA = re.compile(r"-?(rt-|cloud-|)(amd64|arm64)", re.ASCII)
# falcoctl keeps only `x.y.z-n` and so gives bookworm-security's 6.12.107-1~deb12u1 and
# trixie's 6.12.107-1 one name, though they are different builds (gcc-12 vs gcc-14): we
# keep the `~debNNuM` / `~bpoNN+M` suffix so each build has its own artifact.
_FALCOCTL_REAL_VERSION = re.compile(r"\d+\.\d+\.\d+-\d+(?:~[A-Za-z0-9.+]+)?", re.ASCII)

# Markers naming the Debian release a kernel was built for, strongest first.
_BACKPORT_MARKER = re.compile(r"~bpo(\d+)", re.ASCII)
_SUITE_MARKERS = (
    re.compile(r"\+deb(\d+)(?!u)", re.ASCII),  # 6.12.48+deb13-amd64 (ABI names since 6.11)
    re.compile(r"[-.]deb(\d+)\.", re.ASCII),  # 5.10.0-0.deb10.22-amd64 (older backports)
    re.compile(r"~deb(\d+)u", re.ASCII),  # 5.10.136-1~deb10u3-amd64
)


@dataclass(frozen=True)
class DebianRelease:
    number: int
    codename: str
    gcc: str  # the compiler its kernels are built with (linux-compiler-gcc-N / gcc-N dep)
    series: tuple[int, int]  # the kernel series it shipped at release


# Facts from the suites' linux-headers-* dependencies (linux-compiler-gcc-N-x86, gcc-N,
# gcc-N-for-host). 14 is whatever unstable currently is: sid's 7.x kernels depend on gcc-16.
DEBIAN_RELEASES: tuple[DebianRelease, ...] = (
    DebianRelease(8, "jessie", "4.9", (3, 16)),
    DebianRelease(9, "stretch", "6", (4, 9)),
    DebianRelease(10, "buster", "8", (4, 19)),
    DebianRelease(11, "bullseye", "10", (5, 10)),
    DebianRelease(12, "bookworm", "12", (6, 1)),
    DebianRelease(13, "trixie", "14", (6, 12)),
    DebianRelease(14, "sid", "16", (99, 0)),
)
_BY_NUMBER = {r.number: r for r in DEBIAN_RELEASES}
_UNSTABLE = DEBIAN_RELEASES[-1]
_BUILDER_SUITES = {s.codename: s.gccs for s in DEBIAN_SUITES}


@dataclass(frozen=True)
class DebianKernelName:
    abi: str  # release without the flavor suffix: 5.10.0-30, 6.12.48+deb13
    variant: str  # "", "rt" or "cloud"
    arch: str  # amd64 | arm64


def split_debian_release(kr: KernelRelease) -> DebianKernelName | None:
    match = _FLAVOR_SUFFIX.search(kr.raw)
    if match is None:
        return None
    return DebianKernelName(
        abi=kr.raw[: match.start()], variant=match.group(1) or "", arch=match.group(2)
    )


def debian_release_for(kr: KernelRelease) -> DebianRelease:
    """The Debian release whose toolchain built this kernel."""
    backport = _BACKPORT_MARKER.search(kr.raw)
    if backport:
        return _release_number(int(backport.group(1)))
    for marker in _SUITE_MARKERS:
        found = marker.search(kr.raw)
        if found:
            return _release_number(int(found.group(1)))
    for release in DEBIAN_RELEASES:
        if kr.series <= release.series:
            return release
    return _UNSTABLE


def _release_number(number: int) -> DebianRelease:
    if number in _BY_NUMBER:
        return _BY_NUMBER[number]
    return _UNSTABLE if number > _UNSTABLE.number else DEBIAN_RELEASES[0]


class DebianTarget(DistroTarget):
    name: ClassVar[str] = "debian"
    family: ClassVar[str] = "debian"
    package_format: ClassVar[str] = "deb"
    template_family: ClassVar[str] = "debian"
    header_source: ClassVar[str] = (
        "Debian archive pool l/linux (and l/linux-X.Y, security updates): linux-headers-<rel>, "
        "linux-headers-<abi>-common, linux-kbuild"
    )
    gcc_override_rule: ClassVar[str] = (
        "the building suite's: +debN/.debN./~bpoN marker (deb10 8, deb11 10, deb12 12, "
        "deb13 14, deb14/sid 16), else the series (4.19 8, 5.10 10, 6.1 12, 6.12 14, newer 16)"
    )

    def gcc_rule(self) -> str:
        # Every Debian release resolves through the suite rule; the default never applies.
        return self.gcc_override_rule

    def matches(self, kr: KernelRelease) -> bool:
        return split_debian_release(kr) is not None

    def gcc_override(self, kr: KernelRelease) -> str | None:
        return debian_release_for(kr).gcc

    def builder(self, kr: KernelRelease) -> BuilderSpec:
        release = debian_release_for(kr)
        if release.codename in _BUILDER_SUITES and gcc_major(release.gcc) in _BUILDER_SUITES[
            release.codename
        ]:
            return BuilderSpec(
                family=self.template_family,
                base_image=debian_image(release.codename),
                distro_release=release.codename,
                gcc=release.gcc,
            )
        # jessie and stretch are gone from the mirrors: the nearest GCC a reachable suite has.
        return debian_builder(self.template_family, release.gcc)

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        name = split_debian_release(kr)
        if name is None:
            raise mismatch(self.name, kr, "expected it to end in -amd64, -cloud-amd64 or -rt-amd64")
        package_version = debian_package_version(kernel_version)
        pool_dirs = self._pool_dirs(kr, name, package_version, mirrors)
        if package_version is None:
            return pool_dirs
        deb_arch = normalize_arch(name.arch or arch)
        flavor = f"{name.variant}-{deb_arch}" if name.variant else deb_arch
        # rt kernels had their own -common-rt up to 6.12; sid's 7.x rt shares -common.
        commons = [f"linux-headers-{name.abi}-common"]
        if name.variant == "rt":
            commons.insert(0, f"linux-headers-{name.abi}-common-rt")
        series_kbuild = f"linux-kbuild-{kr.version}.{kr.patch_level}"
        if _SERIES_ABI.fullmatch(name.abi):
            kbuilds = [series_kbuild]  # 5.10.0-30, 5.10.0-0.deb10.22: one kbuild per series
        elif "+deb" in name.abi:
            kbuilds = [f"linux-kbuild-{name.abi}"]  # 6.12.48+deb13: one kbuild per upload
        else:
            # 6.11.10 (sid before +debN) has its own kbuild; unknown forms try both.
            kbuilds = [f"linux-kbuild-{name.abi}", series_kbuild]
        # Debian file names drop the epoch; versions carry no ':' in these packages anyway.
        files = (
            f"linux-headers-{name.abi}-{flavor}_{package_version}_{deb_arch}.deb",
            *(f"{common}_{package_version}_all.deb" for common in commons),
            *(f"{kbuild}_{package_version}_{deb_arch}.deb" for kbuild in kbuilds),
        )
        urls: list[str] = []
        for pool in pool_dirs:
            for file in files:
                if kr.version == 3 and file.startswith("linux-kbuild-"):
                    # Before 4.x linux-kbuild came from the linux-tools source package.
                    pool_for_file = pool.replace("/l/linux/", "/l/linux-tools/")
                else:
                    pool_for_file = pool
                url = pool_for_file + file
                if url not in urls:
                    urls.append(url)
        return tuple(urls)

    @staticmethod
    def _pool_dirs(
        kr: KernelRelease, name: DebianKernelName, package_version: str | None, mirrors: Mirrors
    ) -> tuple[str, ...]:
        # driverkit.mirrors imports the target contract, so it is loaded on use.
        from driverkit.mirrors import require_debian_mirror

        root = require_debian_mirror(mirrors).rstrip("/")
        security = mirrors.debian_security.rstrip("/")
        series_source = f"linux-{kr.version}.{kr.patch_level}"
        main_dirs = [f"{root}/pool/main/l/linux/", f"{root}/pool/main/l/{series_source}/"]
        security_dirs = (
            [
                f"{security}/pool/updates/main/l/linux/",
                f"{security}/pool/updates/main/l/{series_source}/",
            ]
            if security
            else []
        )
        # A `~debNuM` version is a kernel series carried into an older stable release: its
        # source is linux-X.Y and it is published through the security archive first.
        carried = (
            package_version is not None and re.search(r"~deb\d+u", package_version) is not None
        ) or re.search(r"[-.]deb\d+\.", name.abi) is not None
        if carried:
            ordered = [
                *security_dirs[1:],
                main_dirs[1],
                main_dirs[0],
                *security_dirs[:1],
            ]
        else:
            ordered = [main_dirs[0], *security_dirs[:1], main_dirs[1], *security_dirs[1:]]
        return tuple(dict.fromkeys(ordered))

    def artifact_kernel(self, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
        """falcoctl's Debian fix-up: Debian's ABI release (`5.10.0-30-amd64`) is replaced by
        the real kernel version from `uname -v` plus the flavor (`5.10.218-1-amd64`), and the
        kernel version becomes `1`; without a version in `uname -v` the generic rule applies.
        Unlike falcoctl, a `~deb12u1`/`~bpo12+1` suffix is kept (see _FALCOCTL_REAL_VERSION)."""
        validate_kernel_version(kernel_version)
        arch_extra = ""
        flavor = _FALCOCTL_ARCH_EXTRA.search(kr.full_extra_version)
        if flavor:
            arch_extra = f"-{flavor.group(1)}{flavor.group(2)}"
        real = _FALCOCTL_REAL_VERSION.search(kernel_version)
        if real:
            fixed = parse_kernel_release(real.group(0) + arch_extra)
            return ArtifactKernel(self.name, str(fixed), "1")
        return super().artifact_kernel(kr, kernel_version)
