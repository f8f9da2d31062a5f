"""Arch Linux (stable, hardened, zen, LTS kernels) from the Arch Linux Archive."""

from __future__ import annotations

import re

from drivercore.kernelrelease import KernelRelease, parse_kernel_version
from drivercore.targets import TargetId
from driverkit.targets.base import HeaderFormat, Mirrors, Target
from driverkit.targets.common import mismatch, release_arch

# `6.8.1-arch1-1`, `5.19.3.arch1-1` (driverkit's form), `6.7.4-hardened1-1-hardened`,
# `6.8.9-zen1-2-zen`; the last number is the package release (pkgrel).
_TAGGED = re.compile(
    r"(?P<ver>\d+\.\d+(?:\.\d+)?)[-.](?P<tag>arch|hardened|zen)(?P<n>\d+)"
    r"(?:-(?P<pkgrel>\d+))?(?:-(?:hardened|zen))?",
    re.ASCII,
)
_LTS = re.compile(r"(?P<ver>\d+\.\d+\.\d+)-(?P<pkgrel>\d+)-lts", re.ASCII)

ARCHIVE = "https://archive.archlinux.org/packages/l"
ARM_ARCHIVE = "https://alaa.ad24.cz/packages/l/linux-aarch64-headers"
COMPRESSIONS = ("zst", "xz")


def _trim_zero(version: str) -> str:
    # Arch's pkgver drops a zero sublevel: uname 6.8.0-arch1-1 is package 6.8.arch1-1.
    return version[: -len(".0")] if version.count(".") == 2 and version.endswith(".0") else version


def is_arch_release(kr: KernelRelease) -> bool:
    return _TAGGED.fullmatch(kr.raw) is not None or _LTS.fullmatch(kr.raw) is not None


def arch_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    tagged = _TAGGED.fullmatch(kr.raw)
    lts = _LTS.fullmatch(kr.raw)
    if tagged:
        package = "linux-headers" if tagged.group("tag") == "arch" else (
            f"linux-{tagged.group('tag')}-headers"
        )
        pkgver = f"{_trim_zero(tagged.group('ver'))}.{tagged.group('tag')}{tagged.group('n')}"
        # Without a pkgrel in the release, driverkit takes it from the kernel version.
        pkgrel = tagged.group("pkgrel") or parse_kernel_version(kernel_version)
    elif lts:
        package = "linux-lts-headers"
        pkgver = lts.group("ver")
        pkgrel = lts.group("pkgrel")
    else:
        raise mismatch(
            TargetId.ARCH, kr, "expected e.g. 6.8.1-arch1-1, -hardened1-1, -zen1-1 or -lts"
        )
    if release_arch(kr, arch) == "arm64":
        return tuple(
            f"{ARM_ARCHIVE}/linux-aarch64-headers-{pkgver}-{pkgrel}-aarch64.pkg.tar.{c}"
            for c in COMPRESSIONS
        )
    return tuple(
        f"{ARCHIVE}/{package}/{package}-{pkgver}-{pkgrel}-x86_64.pkg.tar.{c}"
        for c in COMPRESSIONS
    )


ARCH = Target(
    id=TargetId.ARCH,
    family="arch",
    header_format=HeaderFormat.ARCH,
    header_source=(
        "Arch Linux Archive: linux-headers / linux-hardened-headers / linux-zen-headers / "
        "linux-lts-headers .pkg.tar.zst (xz for old packages)"
    ),
    candidate_urls=arch_header_urls,
    release_pattern=is_arch_release,
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (ARCH,)
