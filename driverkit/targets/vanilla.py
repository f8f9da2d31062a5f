"""Kernels built from kernel.org sources: vanilla, and the distros whose kernels are close
enough to upstream that driverkit builds them from the upstream tarball (Bottlerocket,
Talos, minikube, Flatcar). Their artifact names (falcoctl's `1_<os-release id>` kernel
versions) come from drivercore.targets, which the host-side loader shares."""

from __future__ import annotations

import re

from drivercore.kernelrelease import KernelRelease, normalize_arch
from drivercore.targets import TargetId
from driverkit.targets.base import GccRule, HeaderFormat, HeaderLookup, Mirrors, Target, derive
from driverkit.targets.common import mismatch

KERNEL_ORG_CDN = "https://cdn.kernel.org/pub/linux/kernel"
TORVALDS_SNAPSHOTS = "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/snapshot"

_VANILLA_RELEASE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:-rc\d+)?", re.ASCII)
# Bottlerocket and minikube run upstream releases with no local version: 5.10.184.
_PLAIN_RELEASE = re.compile(r"\d+\.\d+\.\d+", re.ASCII)
# Flatcar's own version numbers (3510.2.3) start far above any kernel major.
FLATCAR_MIN_MAJOR = 1500


def is_plain_upstream(kr: KernelRelease) -> bool:
    """`5.10.184`: an upstream number with no local version (and not a Flatcar release)."""
    return _PLAIN_RELEASE.fullmatch(kr.raw) is not None and kr.version < FLATCAR_MIN_MAJOR


def is_rc(kr: KernelRelease) -> bool:
    return "rc" in kr.extra_version


def tarball_version(kr: KernelRelease) -> str:
    """kernel.org names the first release of a series `linux-6.1`, not `linux-6.1.0`."""
    if kr.sublevel == 0 and kr.full_version.endswith(".0"):
        return kr.full_version[: -len(".0")]
    return kr.full_version


def kernel_org_urls(kr: KernelRelease) -> tuple[str, ...]:
    """The upstream source for a release; release candidates only exist as git snapshots."""
    if is_rc(kr):
        # Snapshots are named after the tag: v6.4-rc1, never v6.4.0-rc1.
        tag = f"{tarball_version(kr)}-{kr.extra_version}"
        return (f"{TORVALDS_SNAPSHOTS}/linux-{tag}.tar.gz",)
    urls = [f"{KERNEL_ORG_CDN}/v{kr.version}.x/linux-{tarball_version(kr)}.tar.xz"]
    literal = f"{KERNEL_ORG_CDN}/v{kr.version}.x/linux-{kr.full_version}.tar.xz"
    if literal not in urls:
        urls.append(literal)
    return tuple(urls)


def upstream_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    return kernel_org_urls(kr)


def is_vanilla_release(kr: KernelRelease) -> bool:
    return _VANILLA_RELEASE.fullmatch(kr.raw) is not None and kr.version < FLATCAR_MIN_MAJOR


def minikube_gcc(kr: KernelRelease) -> str | None:
    if kr.version == 5:
        return "10"
    if kr.version == 4:
        return "8"
    return "12"


def is_flatcar_version(kr: KernelRelease) -> bool:
    """`3510.2.3`: a Flatcar release number rather than a kernel release."""
    return kr.version >= FLATCAR_MIN_MAJOR and kr.full_extra_version == ""


def flatcar_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    if is_flatcar_version(kr):
        board = f"{normalize_arch(arch)}-usr"
        return tuple(
            f"https://{channel}.release.flatcar-linux.net/{board}/{kr.raw}/"
            "flatcar_production_image_packages.txt"
            for channel in ("stable", "beta", "alpha")
        )
    if kr.full_extra_version != "-flatcar":
        raise mismatch(TargetId.FLATCAR, kr, "expected <kernel>-flatcar or a Flatcar release")
    return kernel_org_urls(kr)


VANILLA = Target(
    id=TargetId.VANILLA,
    family="vanilla",
    header_format=HeaderFormat.VANILLA,
    header_source="kernel.org source tarball (git snapshot for -rc)",
    candidate_urls=upstream_header_urls,
    release_pattern=is_vanilla_release,
)
# A plain upstream number fits Bottlerocket, minikube and vanilla alike (their ISOs and
# images run upstream releases), so inference lists all three and --target decides.
BOTTLEROCKET = derive(
    VANILLA,
    id=TargetId.BOTTLEROCKET,
    header_source="kernel.org source tarball; kernel version 1_<VERSION_ID>-<variant> (falcoctl)",
    release_pattern=is_plain_upstream,
)
TALOS = derive(
    VANILLA,
    id=TargetId.TALOS,
    header_source="kernel.org source tarball; kernel version 1_<VERSION_ID> (falcoctl)",
    release_pattern=lambda kr: kr.full_extra_version == "-talos",
)
MINIKUBE = derive(
    VANILLA,
    id=TargetId.MINIKUBE,
    header_source="kernel.org source tarball; kernel version 1_<minikube version> (falcoctl)",
    release_pattern=is_plain_upstream,
    gcc=GccRule(pick=minikube_gcc, described="4.x 8, 5.x 10, other 12"),
)
# Flatcar is addressed either by its kernel (`6.1.62-flatcar`) or, as driverkit does, by the
# Flatcar release (`3510.2.3`), whose package list names kernel and gcc.
FLATCAR = derive(
    VANILLA,
    id=TargetId.FLATCAR,
    header_source=(
        "kernel.org tarball of the Flatcar kernel; for a Flatcar release number, its "
        "flatcar_production_image_packages.txt (stable/beta/alpha) names the kernel"
    ),
    candidate_urls=flatcar_header_urls,
    release_pattern=lambda kr: kr.full_extra_version == "-flatcar" or is_flatcar_version(kr),
    gcc=GccRule(described="the gcc in the Flatcar release's package list (online)"),
    header_lookup=HeaderLookup.FLATCAR_RELEASE,
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (VANILLA, BOTTLEROCKET, TALOS, MINIKUBE, FLATCAR,)
