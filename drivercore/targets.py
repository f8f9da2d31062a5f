"""Target ids and how each target names its artifacts: what the build side and the host-side
loader must agree on to find the same file.

`TargetId` lists the built-in targets. The build facts of each (where headers live, which
gcc, which builder) stay in `driverkit.targets`; this module holds only the naming, so the
loader computes an artifact name with the very function the builder used.

Naming follows falcoctl's per-distro fix-ups of `uname -r`/`uname -v`. An id without a
fix-up of its own is named by the generic rule: target id, release as given, build number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType

from drivercore.errors import InvalidKernelReleaseError
from drivercore.kernelrelease import (
    KernelRelease,
    parse_kernel_release,
    parse_kernel_version,
    ubuntu_kernel_version,
    validate_kernel_version,
)
from drivercore.naming import ArtifactKernel


class TargetId(StrEnum):
    """Every built-in target, spelled as driverkit and falcoctl spell it."""

    ALINUX = "alinux"
    ALMALINUX = "almalinux"
    AMAZONLINUX = "amazonlinux"
    AMAZONLINUX2 = "amazonlinux2"
    AMAZONLINUX2022 = "amazonlinux2022"
    AMAZONLINUX2023 = "amazonlinux2023"
    ARCH = "arch"
    BOTTLEROCKET = "bottlerocket"
    CENTOS = "centos"
    DEBIAN = "debian"
    FEDORA = "fedora"
    FLATCAR = "flatcar"
    MINIKUBE = "minikube"
    OL = "ol"
    OPENSUSE = "opensuse"
    PHOTON = "photon"
    REDHAT = "redhat"
    ROCKY = "rocky"
    SLES = "sles"
    TALOS = "talos"
    UBUNTU = "ubuntu"
    VANILLA = "vanilla"


# driverkit accepts `ubuntu-<flavor>` (the artifact id) where it means the ubuntu target.
_UBUNTU_FLAVORED_NAME = "ubuntu-"


def canonical_target_name(name: str) -> str:
    """The registry key a user's target name means: trimmed, lower case, and driverkit's
    `ubuntu-<flavor>` folded to `ubuntu` (the flavor always comes from the release)."""
    key = name.strip().lower()
    if key.startswith(_UBUNTU_FLAVORED_NAME) and len(key) > len(_UBUNTU_FLAVORED_NAME):
        return TargetId.UBUNTU.value
    return key


# --- falcoctl's naming fix-ups ---------------------------------------------------------

# Debian: the flavor part of the ABI release (`-amd64`, `-cloud-amd64`, `-rt-arm64`).
_DEBIAN_ARCH_EXTRA = re.compile(r"-?(rt-|cloud-|)(amd64|arm64)", re.ASCII)
# falcoctl keeps only `x.y.z-n` and so gives bookworm-security's 6.12.107-1~deb12u1 and
# trixie's 6.12.107-1 one name, though they are different builds (gcc-12 vs gcc-14): we
# keep the `~debNNuM` / `~bpoNN+M` suffix so each build has its own artifact.
_DEBIAN_REAL_VERSION = re.compile(r"\d+\.\d+\.\d+-\d+(?:~[A-Za-z0-9.+]+)?", re.ASCII)
# Ubuntu: the target id is the first all-letters word after a dash (`-1004-intel-iotg`).
_UBUNTU_FLAVOR = re.compile(r"-([a-zA-Z]+)(-.*)?$", re.ASCII)
# Upstream-kernel distros: their loaders pass an os-release derived `1_<id>` version.
_PREFIXED_KERNEL_VERSION = re.compile(r"\d+_[0-9A-Za-z._~+-]+", re.ASCII)
_MINIKUBE_VERSION = re.compile(r"(\d+(?:\.\d+){2})", re.ASCII)
_OS_RELEASE_VALUE = re.compile(r"[0-9A-Za-z._-]+", re.ASCII)

NamingRule = Callable[[str, KernelRelease, str], ArtifactKernel]


def generic_artifact_kernel(
    target_id: str, kr: KernelRelease, kernel_version: str
) -> ArtifactKernel:
    """Target id, the release as `uname -r` prints it, the build number of `uname -v`."""
    return ArtifactKernel(target_id, str(kr), parse_kernel_version(kernel_version))


def debian_artifact_kernel(
    target_id: str, kr: KernelRelease, kernel_version: str
) -> ArtifactKernel:
    """Debian's ABI release (`5.10.0-30-amd64`) is replaced by the real kernel version from
    `uname -v` plus the flavor (`5.10.218-1-amd64`), and the kernel version becomes `1`;
    without a version in `uname -v` the generic rule applies."""
    validate_kernel_version(kernel_version)
    flavor = _DEBIAN_ARCH_EXTRA.search(kr.full_extra_version)
    arch_extra = f"-{flavor.group(1)}{flavor.group(2)}" if flavor else ""
    real = _DEBIAN_REAL_VERSION.search(kernel_version)
    if real:
        fixed = parse_kernel_release(real.group(0) + arch_extra)
        return ArtifactKernel(target_id, str(fixed), "1")
    return generic_artifact_kernel(target_id, kr, kernel_version)


def ubuntu_target_id(kr: KernelRelease) -> str:
    """`ubuntu-aws` for `5.15.0-1051-aws`: Ubuntu artifacts are named per flavor."""
    match = _UBUNTU_FLAVOR.search(kr.full_extra_version)
    return "ubuntu-" + (match.group(1) if match else "generic")


def ubuntu_artifact_kernel(
    target_id: str, kr: KernelRelease, kernel_version: str
) -> ArtifactKernel:
    """Per-flavor id, and Ubuntu's whole upload number (`26~22.04.1`) as the version."""
    return ArtifactKernel(ubuntu_target_id(kr), str(kr), ubuntu_kernel_version(kernel_version))


def upstream_artifact_kernel(
    target_id: str, kr: KernelRelease, kernel_version: str
) -> ArtifactKernel:
    """Kernels built from kernel.org sources: a `1_<id>` version from the distro's
    os-release is carried unchanged; anything else is reduced to the build number."""
    text = kernel_version.strip()
    if _PREFIXED_KERNEL_VERSION.fullmatch(text) and ".." not in text:
        return ArtifactKernel(target_id, str(kr), text)
    return generic_artifact_kernel(target_id, kr, kernel_version)


# Flatcar is absent on purpose: falcoctl names its drivers after the Flatcar release, which
# `uname -r` (`6.1.62-flatcar`) does not carry; the kernel release stands in (generic rule)
# and the loader must pass `flatcar_release(...)` as the release to agree.
ARTIFACT_NAMING: Mapping[str, NamingRule] = MappingProxyType(
    {
        TargetId.DEBIAN: debian_artifact_kernel,
        TargetId.UBUNTU: ubuntu_artifact_kernel,
        TargetId.VANILLA: upstream_artifact_kernel,
        TargetId.BOTTLEROCKET: upstream_artifact_kernel,
        TargetId.MINIKUBE: upstream_artifact_kernel,
        TargetId.TALOS: upstream_artifact_kernel,
    }
)


def artifact_kernel(target_id: str, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
    """Target id, release and version as they appear in artifact names, for any target id
    (one without a fix-up of its own gets the generic rule)."""
    # A plain str either way: the id is written into file names and manifests.
    plain_id = str(target_id)
    rule = ARTIFACT_NAMING.get(plain_id, generic_artifact_kernel)
    return rule(plain_id, kr, kernel_version)


# --- os-release derived kernel versions (what each distro's loader passes) -------------


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


def flatcar_release(version_id: str) -> str:
    """falcoctl's Flatcar artifact release: the os-release VERSION_ID (3794.0.0)."""
    return _os_release_value("VERSION_ID", version_id)
