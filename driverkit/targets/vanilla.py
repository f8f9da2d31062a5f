"""Kernels built from kernel.org sources: vanilla, and the distros whose kernels are close
enough to upstream that driverkit builds them from the upstream tarball (Bottlerocket,
Talos, minikube, Flatcar)."""

from __future__ import annotations

import re
from typing import ClassVar

from drivercore.kernelrelease import KernelRelease, normalize_arch, parse_kernel_version
from drivercore.naming import ArtifactKernel
from driverkit.errors import InvalidKernelReleaseError
from driverkit.targets.base import Mirrors
from driverkit.targets.common import DistroTarget, mismatch

KERNEL_ORG_CDN = "https://cdn.kernel.org/pub/linux/kernel"
TORVALDS_SNAPSHOTS = "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/snapshot"

_VANILLA_RELEASE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:-rc\d+)?", re.ASCII)
# Bottlerocket and minikube run upstream releases with no local version: 5.10.184.
_PLAIN_RELEASE = re.compile(r"\d+\.\d+\.\d+", re.ASCII)
# falcoctl names these distros' drivers with an os-release derived version: `1_<id>...`.
_PREFIXED_KERNEL_VERSION = re.compile(r"\d+_[0-9A-Za-z._~+-]+", re.ASCII)
_MINIKUBE_VERSION = re.compile(r"(\d+(?:\.\d+){2})", re.ASCII)
_OS_RELEASE_VALUE = re.compile(r"[0-9A-Za-z._-]+", re.ASCII)
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


def _os_release_value(what: str, value: str) -> str:
    if not _OS_RELEASE_VALUE.fullmatch(value) or ".." in value:
        raise InvalidKernelReleaseError(
            f"invalid {what} {value!r}: expected the os-release value, e.g. 1.19.2"
        )
    return value


def bottlerocket_kernel_version(version_id: str, variant_id: str) -> str:
    """falcoctl's Bottlerocket kernel version: `1_<VERSION_ID>-<first word of VARIANT_ID>`."""
    variant = _os_release_value("VARIANT_ID", variant_id).split("-")[0]
    return f"1_{_os_release_value('VERSION_ID', version_id)}-{variant}"


def talos_kernel_version(version_id: str) -> str:
    """falcoctl's Talos kernel version: `1_<VERSION_ID>`."""
    return f"1_{_os_release_value('VERSION_ID', version_id)}"


def minikube_kernel_version(etc_version: str) -> str:
    """falcoctl's minikube kernel version from /etc/VERSION (`v1.26.0-...` -> `1_1.26.0`)."""
    match = _MINIKUBE_VERSION.search(etc_version)
    if match is None:
        raise InvalidKernelReleaseError(
            f"invalid minikube /etc/VERSION {etc_version[:40]!r}: expected e.g. v1.26.0"
        )
    return f"1_{match.group(1)}"


class VanillaTarget(DistroTarget):
    name: ClassVar[str] = "vanilla"
    family: ClassVar[str] = "vanilla"
    package_format: ClassVar[str] = "tar"
    template_family: ClassVar[str] = "vanilla"
    header_source: ClassVar[str] = "kernel.org source tarball (git snapshot for -rc)"

    def matches(self, kr: KernelRelease) -> bool:
        return _VANILLA_RELEASE.fullmatch(kr.raw) is not None and kr.version < FLATCAR_MIN_MAJOR

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        return kernel_org_urls(kr)

    def artifact_kernel(self, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
        # The loaders of these distros pass an os-release derived `1_<id>` version that the
        # artifact name must carry unchanged; anything else is reduced to the build number.
        text = kernel_version.strip()
        if _PREFIXED_KERNEL_VERSION.fullmatch(text) and ".." not in text:
            return ArtifactKernel(self.target_id(kr), str(kr), text)
        return super().artifact_kernel(kr, kernel_version)


class BottlerocketTarget(VanillaTarget):
    name: ClassVar[str] = "bottlerocket"
    family: ClassVar[str] = "vanilla"
    header_source: ClassVar[str] = (
        "kernel.org source tarball; kernel version 1_<VERSION_ID>-<variant> (falcoctl)"
    )

    def matches(self, kr: KernelRelease) -> bool:
        # A plain upstream number fits Bottlerocket, minikube and vanilla alike, so
        # inference lists all three and --target decides.
        return is_plain_upstream(kr)


class TalosTarget(VanillaTarget):
    name: ClassVar[str] = "talos"
    family: ClassVar[str] = "vanilla"
    header_source: ClassVar[str] = (
        "kernel.org source tarball; kernel version 1_<VERSION_ID> (falcoctl)"
    )

    def matches(self, kr: KernelRelease) -> bool:
        return kr.full_extra_version == "-talos"


class MinikubeTarget(VanillaTarget):
    name: ClassVar[str] = "minikube"
    family: ClassVar[str] = "vanilla"
    header_source: ClassVar[str] = (
        "kernel.org source tarball; kernel version 1_<minikube version> (falcoctl)"
    )
    gcc_override_rule: ClassVar[str] = "4.x 8, 5.x 10, other 12"

    def matches(self, kr: KernelRelease) -> bool:
        # minikube ISOs run plain upstream releases, as Bottlerocket does.
        return is_plain_upstream(kr)

    def gcc_override(self, kr: KernelRelease) -> str | None:
        if kr.version == 5:
            return "10"
        if kr.version == 4:
            return "8"
        return "12"


class FlatcarTarget(VanillaTarget):
    """Flatcar is addressed either by its kernel (`6.1.62-flatcar`) or, as driverkit does,
    by the Flatcar release (`3510.2.3`), whose package list names kernel and gcc."""

    name: ClassVar[str] = "flatcar"
    family: ClassVar[str] = "vanilla"
    header_source: ClassVar[str] = (
        "kernel.org tarball of the Flatcar kernel; for a Flatcar release number, its "
        "flatcar_production_image_packages.txt (stable/beta/alpha) names the kernel"
    )
    gcc_override_rule: ClassVar[str] = (
        "the gcc in the Flatcar release's package list (online)"
    )

    def matches(self, kr: KernelRelease) -> bool:
        return kr.full_extra_version == "-flatcar" or self.is_flatcar_version(kr)

    @staticmethod
    def is_flatcar_version(kr: KernelRelease) -> bool:
        return kr.version >= FLATCAR_MIN_MAJOR and kr.full_extra_version == ""

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        if self.is_flatcar_version(kr):
            board = f"{normalize_arch(arch)}-usr"
            return tuple(
                f"https://{channel}.release.flatcar-linux.net/{board}/{kr.raw}/"
                "flatcar_production_image_packages.txt"
                for channel in ("stable", "beta", "alpha")
            )
        if kr.full_extra_version != "-flatcar":
            raise mismatch(self.name, kr, "expected <kernel>-flatcar or a Flatcar release")
        return kernel_org_urls(kr)

    def artifact_kernel(self, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
        # falcoctl names Flatcar drivers after the Flatcar release with no extraversion;
        # from `uname -r` alone (`6.1.62-flatcar`) that release is unknown, so the kernel
        # release stands in and the loader must be given the Flatcar release to agree.
        return ArtifactKernel(self.name, str(kr), parse_kernel_version(kernel_version))


def flatcar_release(version_id: str) -> str:
    """falcoctl's Flatcar artifact release: the os-release VERSION_ID (3794.0.0)."""
    return _os_release_value("VERSION_ID", version_id)
