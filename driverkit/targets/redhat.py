"""The Red Hat family: CentOS and its rebuilds (Rocky, AlmaLinux), RHEL, Oracle Linux,
Alibaba Cloud Linux and Fedora. All ship headers as one `kernel-devel-<release>.rpm`
named exactly like `uname -r`; they differ in where the rpm lives and in gcc."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from drivercore.kernelrelease import KernelRelease
from drivercore.targets import TargetId
from driverkit.targets.base import (
    DEFAULT_GCC,
    GccRule,
    HeaderFormat,
    HeaderLookup,
    Mirrors,
    ReleasePattern,
    Target,
    derive,
    never_inferred,
)
from driverkit.targets.common import (
    kernel_devel_rpm,
    mismatch,
    release_token_number,
    rpm_arch,
    rpm_release_with_arch,
)

_EL_TOKEN = re.compile(r"el(\d+)", re.ASCII)
_UEK_TOKEN = re.compile(r"el(\d+)uek", re.ASCII)
_FEDORA_TOKEN = re.compile(r"fc(\d+)", re.ASCII)
_ALINUX_TOKEN = re.compile(r"al(\d+)", re.ASCII)


def el_major(kr: KernelRelease) -> int | None:
    """7 for `3.10.0-1160.el7.x86_64`; None when the release has no plain elN token."""
    return release_token_number(kr, _EL_TOKEN)


@dataclass(frozen=True)
class GccPin:
    """Kernels of series `first`..`last` (inclusive) build only with `gcc`."""

    first: tuple[int, int]
    last: tuple[int, int]
    gcc: str
    rule: str
    why: str  # shown when no builder ships `gcc`


# CentOS's own kernels. Its derivatives built theirs with newer toolchains, so their rows
# are CentOS's with these pins cleared (`centos_derivative`).
CENTOS_GCC_PINS = (
    # driverkit issue 236: 3.10 kernels only build with the gcc they shipped with.
    GccPin((3, 10), (3, 10), "4.8.5", "3.10 -> 4.8.5", "CentOS 7 built 3.10 with it"),
    GccPin((4, 18), (4, 999), "9", "4.18+ (EL8) -> 9", "driverkit builds EL8's 4.18+ with it"),
)


def _centos_pin(kr: KernelRelease) -> GccPin | None:
    return next((pin for pin in CENTOS_GCC_PINS if pin.first <= kr.series <= pin.last), None)


def centos_pinned_gcc(kr: KernelRelease) -> str | None:
    pin = _centos_pin(kr)
    return pin.gcc if pin else None


def centos_pin_reason(kr: KernelRelease) -> str | None:
    pin = _centos_pin(kr)
    return pin.why if pin else None


def el_major_in(*majors: int) -> ReleasePattern:
    """Releases carrying a plain elN token with N among `majors`."""
    wanted = frozenset(majors)
    return lambda kr: el_major(kr) in wanted


def has_token(pattern: re.Pattern[str]) -> ReleasePattern:
    return lambda kr: release_token_number(kr, pattern) is not None


@kernel_devel_rpm
def centos_header_urls(kr: KernelRelease, a: str, rpm: str) -> Iterator[str]:
    edge = "https://mirrors.edge.kernel.org/centos"
    vault = "http://vault.centos.org"
    for repo in ("6/os", "6/updates", "7/os", "7/updates"):
        yield f"{edge}/{repo}/{a}/Packages/{rpm}"
    for repo in ("8/BaseOS", "8-stream/BaseOS"):
        yield f"{edge}/{repo}/{a}/os/Packages/{rpm}"
    for release in (*_CENTOS6_VAULT, *_CENTOS7_VAULT, "8.0.1905", "8.1.1911"):
        for repo in ("os", "updates"):
            yield f"{vault}/{release}/{repo}/{a}/Packages/{rpm}"
    for release in _CENTOS8_VAULT:
        yield f"{vault}/{release}/BaseOS/{a}/os/Packages/{rpm}"
    for repo in ("AppStream", "BaseOS"):
        yield f"http://mirror.stream.centos.org/9-stream/{repo}/{a}/os/Packages/{rpm}"


_CENTOS6_VAULT = tuple(f"6.{n}" for n in range(11))
_CENTOS7_VAULT = (
    "7.0.1406", "7.1.1503", "7.2.1511", "7.3.1611", "7.4.1708",
    "7.5.1804", "7.6.1810", "7.7.1908", "7.8.2003", "7.9.2009",
)  # fmt: skip
_CENTOS8_VAULT = ("8.0.1905", "8.1.1911", "8.2.2004", "8.3.2011", "8.4.2105", "8.5.2111")


def _el_repo(release: str) -> str:
    # EL9 moved kernel-devel from BaseOS to AppStream.
    return "AppStream" if release >= "9" else "BaseOS"


@kernel_devel_rpm
def rocky_header_urls(kr: KernelRelease, a: str, rpm: str) -> Iterator[str]:
    base = "https://download.rockylinux.org"
    for tree, releases in (("pub", ("8", "8.7", "9", "9.1")),
                           ("vault", ("8.3", "8.4", "8.5", "8.6", "9.1"))):  # fmt: skip
        for release in releases:
            yield f"{base}/{tree}/rocky/{release}/{_el_repo(release)}/{a}/os/Packages/k/{rpm}"


@kernel_devel_rpm
def almalinux_header_urls(kr: KernelRelease, a: str, rpm: str) -> Iterator[str]:
    for release in ("8", "8.6", "9", "9.0"):
        yield (
            f"https://repo.almalinux.org/almalinux/{release}/{_el_repo(release)}/{a}/os/"
            f"Packages/{rpm}"
        )


@kernel_devel_rpm
def redhat_header_urls(kr: KernelRelease, a: str, rpm: str) -> Iterator[str]:
    cdn = "https://cdn.redhat.com/content/dist"
    for major in [el_major(kr)] if el_major(kr) else [7, 8, 9]:
        if major == 7:
            yield f"{cdn}/rhel/server/7/7Server/{a}/os/Packages/k/{rpm}"
        else:
            yield f"{cdn}/rhel{major}/{major}/{a}/baseos/os/Packages/k/{rpm}"


def oracle_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    major = release_token_number(kr, _UEK_TOKEN) or el_major(kr)
    if major is None:
        raise mismatch(TargetId.OL, kr, "expected an elN or elNuek part, e.g. .el8uek.")
    a = rpm_arch(kr, arch)
    full = rpm_release_with_arch(kr, arch)
    base = f"http://yum.oracle.com/repo/OracleLinux/OL{major}"
    urls = [
        f"{base}/latest/{a}/getPackage/kernel-devel-{full}.rpm",
        f"{base}/baseos/latest/{a}/getPackage/kernel-devel-{full}.rpm",
        f"{base}/appstream/{a}/getPackage/kernel-devel-{full}.rpm",
        f"{base}/MODRHCK/{a}/getPackage/kernel-devel-{full}.rpm",
    ]
    for uek in ("R3", "R4", "R5", "R6", "R7"):
        urls.append(f"{base}/UEK{uek}/{a}/getPackage/kernel-uek-devel-{full}.rpm")
    if "uek" in kr.full_extra_version:
        # A UEK kernel's headers are only ever in a UEK channel: try those first.
        urls = urls[4:] + urls[:4]
    return tuple(urls)


@kernel_devel_rpm
def alinux_header_urls(kr: KernelRelease, a: str, rpm: str) -> Iterator[str]:
    for release in ("2", "2.1903", "3"):
        yield f"http://mirrors.aliyun.com/alinux/{release}/os/{a}/Packages/{rpm}"


@kernel_devel_rpm
def fedora_header_urls(kr: KernelRelease, a: str, rpm: str) -> Iterator[str]:
    release = release_token_number(kr, _FEDORA_TOKEN)
    if release is None:
        raise mismatch(TargetId.FEDORA, kr, "expected an .fcNN. part, e.g. 6.5.6-300.fc39.x86_64")
    mirror = "https://mirrors.kernel.org/fedora"
    yield f"{mirror}/updates/{release}/Everything/{a}/Packages/k/{rpm}"
    yield f"{mirror}/releases/{release}/Everything/{a}/os/Packages/k/{rpm}"
    yield f"{mirror}/development/{release}/Everything/{a}/os/Packages/k/{rpm}"
    yield f"https://fedoraproject-updates-archive.fedoraproject.org/fedora/{release}/{a}/{rpm}"


CENTOS = Target(
    id=TargetId.CENTOS,
    family="redhat",
    header_format=HeaderFormat.RPM,
    header_source=(
        "kernel-devel rpm from the kernel.org CentOS mirror, vault.centos.org and the "
        "Stream 9 mirror"
    ),
    candidate_urls=centos_header_urls,
    release_pattern=el_major_in(6, 7, 8, 9, 10),
    gcc=GccRule(
        pick=centos_pinned_gcc,
        described=", ".join(pin.rule for pin in CENTOS_GCC_PINS),
        reason=centos_pin_reason,
    ),
    header_lookup=HeaderLookup.FIRST_RPM,
)


def centos_derivative(**differences: Any) -> Target:
    """A distro packaged like CentOS but built with newer toolchains: CentOS's row with
    `differences` and without its gcc pins."""
    return derive(CENTOS, gcc=DEFAULT_GCC, **differences)


# The rebuilds start at EL8, so their releases are also CentOS 8+ releases.
ROCKY = centos_derivative(
    id=TargetId.ROCKY,
    header_source="kernel-devel rpm from download.rockylinux.org (pub and vault)",
    candidate_urls=rocky_header_urls,
    release_pattern=el_major_in(8, 9, 10),
)
ALMALINUX = centos_derivative(
    id=TargetId.ALMALINUX,
    header_source="kernel-devel rpm from repo.almalinux.org",
    candidate_urls=almalinux_header_urls,
    release_pattern=el_major_in(8, 9, 10),
)
# RHEL's kernel-devel sits behind a subscription: driverkit installs it with yum in a
# subscribed builder. The candidates are the entitlement-protected CDN paths. RHEL is never
# inferred: its releases are indistinguishable from CentOS's and the rebuilds'.
REDHAT = centos_derivative(
    id=TargetId.REDHAT,
    header_source="kernel-devel rpm from the Red Hat CDN (needs a subscription entitlement)",
    candidate_urls=redhat_header_urls,
    release_pattern=never_inferred,
)
# Oracle Linux is inferred only for its own UEK kernels (`el8uek`), since its RHCK kernels
# carry the same release as CentOS/RHEL.
OL = centos_derivative(
    id=TargetId.OL,
    header_source=(
        "kernel-devel / kernel-uek-devel rpm from yum.oracle.com (latest, baseos, appstream, "
        "MODRHCK, UEKR3..R7)"
    ),
    candidate_urls=oracle_header_urls,
    release_pattern=has_token(_UEK_TOKEN),
)
ALINUX = centos_derivative(
    id=TargetId.ALINUX,
    header_source="kernel-devel rpm from mirrors.aliyun.com/alinux (2, 2.1903, 3)",
    candidate_urls=alinux_header_urls,
    release_pattern=has_token(_ALINUX_TOKEN),
)
FEDORA = centos_derivative(
    id=TargetId.FEDORA,
    header_source=(
        "kernel-devel rpm from the kernel.org Fedora mirror (updates, releases, development) "
        "and the updates archive"
    ),
    candidate_urls=fedora_header_urls,
    release_pattern=has_token(_FEDORA_TOKEN),
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (CENTOS, ROCKY, ALMALINUX, REDHAT, OL, ALINUX, FEDORA,)
