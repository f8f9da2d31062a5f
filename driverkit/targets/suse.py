"""openSUSE (Leap, Tumbleweed) and SUSE Linux Enterprise.

SUSE splits headers in two rpms: `kernel-<flavor>-devel-<ver>.<arch>.rpm` and the shared
`kernel-devel-<ver>.noarch.rpm`; both are needed. `uname -r` (`5.14.21-150400.24.46-default`)
lacks the rpm rebuild counter (`.1`), so candidates cover both spellings.
"""

from __future__ import annotations

import re

from drivercore.kernelrelease import KernelRelease
from drivercore.targets import TargetId
from driverkit.targets.base import HeaderFormat, HeaderLookup, Mirrors, Target, derive
from driverkit.targets.common import mismatch, rpm_arch

_SUSE_RELEASE = re.compile(
    r"(?P<ver>\d+\.\d+\.\d+)-(?P<rel>\d+(?:\.\d+)*)"
    r"(?:-(?P<flavor>default|azure|rt|preempt|kvmsmall|64kb))?(?:\.(?P<arch>x86_64|aarch64))?",
    re.ASCII,
)
# SLE 15 numbers its kernels 15SSxx (150400 = SP4); Leap 15 shares these kernels.
_SLE15_RELEASE = re.compile(r"15(\d\d)\d\d", re.ASCII)

OPENSUSE_BASES = (
    "https://mirrors.edge.kernel.org/opensuse/distribution",
    "http://download.opensuse.org/distribution",
    "https://download.opensuse.org/repositories/Kernel:",
    "http://download.opensuse.org",
)
OPENSUSE_RELEASES = (
    "43.2", "15.0", "15.1", "15.2", "15.3", "15.4", "15.5", "15.6", "HEAD", "stable", "tumbleweed",
)  # fmt: skip


def suse_packages(kr: KernelRelease, arch: str) -> tuple[list[str], list[str]]:
    """(flavor devel rpm names, noarch kernel-devel rpm names), most likely first."""
    match = _SUSE_RELEASE.fullmatch(kr.raw)
    if match is None:
        raise mismatch("SUSE", kr, "expected e.g. 5.14.21-150400.24.46-default")
    a = rpm_arch(kr, arch)
    flavor = match.group("flavor") or "default"
    base = f"{match.group('ver')}-{match.group('rel')}"
    versions = [f"{base}.1", base] if match.group("arch") is None else [base]
    flavored = [f"kernel-{flavor}-devel-{v}.{a}.rpm" for v in versions]
    noarch = [f"kernel-devel-{v}.noarch.rpm" for v in versions]
    return flavored, noarch


def _likely_releases_first(kr: KernelRelease) -> list[str]:
    """Leap 15.N for an SLE 15 SP N kernel, Tumbleweed for an undotted release, then the rest."""
    match = _SUSE_RELEASE.fullmatch(kr.raw)
    likely = ""
    if match:
        sle = _SLE15_RELEASE.match(match.group("rel"))
        if sle:
            likely = f"15.{int(sle.group(1))}"
        elif "." not in match.group("rel"):
            likely = "tumbleweed"
    return sorted(OPENSUSE_RELEASES, key=lambda release: release != likely)


def is_opensuse_release(kr: KernelRelease) -> bool:
    match = _SUSE_RELEASE.fullmatch(kr.raw)
    if match is None or match.group("flavor") is None:
        return False
    # `-azure` alone is also Ubuntu's (6.5.0-1015-azure); SUSE's have dotted releases.
    return match.group("flavor") == "default" or "." in match.group("rel")


def opensuse_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    a = rpm_arch(kr, arch)
    flavored, noarch = suse_packages(kr, arch)
    urls: list[str] = []
    for release in _likely_releases_first(kr):
        for base in OPENSUSE_BASES:
            for devel, common in zip(flavored, noarch, strict=True):
                urls += [
                    f"{base}/leap/{release}/repo/oss/{a}/{devel}",
                    f"{base}/leap/{release}/repo/oss/noarch/{common}",
                    f"{base}/{release}/repo/oss/{a}/{devel}",
                    f"{base}/{release}/repo/oss/noarch/{common}",
                ]
                # The build-service project layouts driverkit also tries.
                for layout in ("openSUSE-{r}/Submit", "openSUSE-{r}", "openSUSE-{r}:/Submit",
                               "openSUSE-{r}:", "{r}/Submit", "{r}"):  # fmt: skip
                    prefix = f"{base}/{layout.format(r=release)}"
                    urls += [
                        f"{prefix}/standard/{a}/{devel}",
                        f"{prefix}/standard/noarch/{common}",
                    ]
    return tuple(dict.fromkeys(urls))


def is_sles_release(kr: KernelRelease) -> bool:
    match = _SUSE_RELEASE.fullmatch(kr.raw)
    # Tumbleweed's `6.8.5-1-default` has no dotted SLE release number.
    return (
        match is not None
        and match.group("flavor") is not None
        and "." in match.group("rel")
    )


def sles_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    a = rpm_arch(kr, arch)
    flavored, noarch = suse_packages(kr, arch)
    match = _SUSE_RELEASE.fullmatch(kr.raw)
    service_pack = _SLE15_RELEASE.match(match.group("rel")) if match else None
    packs = [int(service_pack.group(1))] if service_pack else [1, 2, 3, 4, 5, 6]
    base = "https://updates.suse.com/SUSE/Updates/SLE-Module-Basesystem"
    urls: list[str] = []
    for sp in packs:
        channel = f"{base}/15-SP{sp}/{a}/update"
        for devel, common in zip(flavored, noarch, strict=True):
            urls += [f"{channel}/{a}/{devel}", f"{channel}/noarch/{common}"]
    return tuple(urls)


OPENSUSE = Target(
    id=TargetId.OPENSUSE,
    family="suse",
    header_format=HeaderFormat.RPM,
    header_source=(
        "kernel-<flavor>-devel + kernel-devel noarch rpms from download.opensuse.org and its "
        "kernel.org mirror (Leap 15.x, Tumbleweed, Kernel: repositories)"
    ),
    candidate_urls=opensuse_header_urls,
    release_pattern=is_opensuse_release,
    header_lookup=HeaderLookup.SUSE_PAIR,
)
# SLES headers need a registered system (driverkit installs them with zypper in a builder
# on the host network); the candidates are the SUSE update-channel paths.
SLES = derive(
    OPENSUSE,
    id=TargetId.SLES,
    header_source=(
        "kernel-<flavor>-devel + kernel-devel noarch rpms from updates.suse.com "
        "(SLE-Module-Basesystem, needs a registration token)"
    ),
    candidate_urls=sles_header_urls,
    release_pattern=is_sles_release,
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (OPENSUSE, SLES,)
