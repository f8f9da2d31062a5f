"""From a host's os-release and uname to a target id and artifact file names.

The distro is recognised with falcoctl's rules (pkg/driver/distro); the names are then
computed only by `drivercore.targets.artifact_kernel` and `drivercore.naming`, the
functions the build side named the artifacts with, so a host asks for exactly the file the
builder wrote. Where an os-release ID and our build side's target id differ (`rhel` is
built as `redhat`), the build side's id wins: it is what the repository holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivercore.errors import InvalidKernelReleaseError
from drivercore.kernelrelease import parse_kernel_release
from drivercore.naming import (
    DRIVER_NAME,
    ArtifactKernel,
    ArtifactKind,
    core_probe_file,
    kmod_file,
    probe_file,
)
from drivercore.targets import (
    TargetId,
    artifact_kernel,
    bottlerocket_kernel_version,
    flatcar_release,
    minikube_kernel_version,
    talos_kernel_version,
)
from runtime.loader.identify import OS_RELEASE_FILE, RELEASE_FILES, HostInfo, OsRelease

# falcoctl's id for a host it cannot place; its artifacts are named with it.
UNDETERMINED = "undetermined"
# os-release IDs whose build-side target id is spelled differently.
_ID_ALIASES = {
    "rhel": TargetId.REDHAT,
    "opensuse-leap": TargetId.OPENSUSE,
    "opensuse-tumbleweed": TargetId.OPENSUSE,
    "sles_sap": TargetId.SLES,
}
_AMAZON_BY_VERSION = {
    "2": TargetId.AMAZONLINUX2,
    "2022": TargetId.AMAZONLINUX2022,
    "2023": TargetId.AMAZONLINUX2023,
}
# Distros with a naming rule of their own, and the os-release keys it needs.
_REQUIRED_KEYS = {
    "amzn": "VERSION_ID",
    "bottlerocket": "VERSION_ID and VARIANT_ID",
    "talos": "VERSION_ID",
    "flatcar": "VERSION_ID",
    "cos": "BUILD_ID",
}
_KNOWN_IDS = sorted({*(t.value for t in TargetId), *_ID_ALIASES, *_REQUIRED_KEYS})
# An unknown os-release ID becomes part of file names (falcoctl's generic rule): only if safe.
_SAFE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,40}", re.ASCII)


@dataclass(frozen=True)
class HostTarget:
    """The target this host's artifacts are named for, and why."""

    target_id: str  # the build side's id (ubuntu, amazonlinux2, ...) or falcoctl's fallback
    kernel: ArtifactKernel  # what goes into names: ubuntu-aws, Debian's real release, ...
    reason: str
    warnings: tuple[str, ...] = ()

    def artifact_file(self, kind: ArtifactKind) -> str:
        if kind is ArtifactKind.CORE:
            return core_probe_file(DRIVER_NAME)
        if kind is ArtifactKind.KMOD:
            return kmod_file(DRIVER_NAME, self.kernel)
        return probe_file(DRIVER_NAME, self.kernel)


def _missing(osr: OsRelease, distro: str) -> bool:
    if distro == "bottlerocket":
        return not (osr.version_id and osr.variant_id)
    if distro == "cos":
        return not osr.build_id
    if distro == "amzn":
        return not osr.has_version_id  # VERSION_ID="" is Amazon Linux 1, not missing
    return not osr.version_id


def _named(target_id: str, host: HostInfo, reason: str, *warnings: str,
           release: str | None = None, kernel_version: str | None = None) -> HostTarget:
    kr = parse_kernel_release(release or host.kernel_release)
    kernel = artifact_kernel(target_id, kr, kernel_version or host.kernel_version)
    return HostTarget(str(target_id), kernel, reason, tuple(warnings))


def host_target(host: HostInfo) -> HostTarget:
    """falcoctl's distro discovery, named with the build side's functions."""
    osr = host.os_release
    where = osr.source or "no release file"
    if osr.minikube_version:
        return _named(
            TargetId.MINIKUBE, host, f"minikube ({osr.minikube_version} in etc/VERSION)",
            kernel_version=minikube_kernel_version(osr.minikube_version),
        )
    distro = osr.id
    if distro in _REQUIRED_KEYS and _missing(osr, distro):
        return _undetermined(
            host, f"{where} says ID={distro} but has no {_REQUIRED_KEYS[distro]}, which its "
            "artifact names need"
        )
    reason = f"ID={distro} in {where}" + (f" VERSION_ID={osr.version_id}" if osr.version_id else "")
    try:
        if distro == "amzn":
            target = _AMAZON_BY_VERSION.get(osr.version_id, TargetId.AMAZONLINUX)
            return _named(target, host, reason)
        if distro == "bottlerocket":
            version = bottlerocket_kernel_version(osr.version_id, osr.variant_id)
            return _named(TargetId.BOTTLEROCKET, host, reason, kernel_version=version)
        if distro == "talos":
            version = talos_kernel_version(osr.version_id)
            return _named(TargetId.TALOS, host, reason, kernel_version=version)
        if distro == "flatcar":
            # Flatcar's artifacts carry its OS release, not the kernel's (falcoctl's rule).
            return _named(TargetId.FLATCAR, host, reason, release=flatcar_release(osr.version_id))
    except InvalidKernelReleaseError as exc:
        return _undetermined(host, f"{where}: {exc}")
    if distro in _ID_ALIASES:
        return _named(_ID_ALIASES[distro], host, reason + f" (built as {_ID_ALIASES[distro]})")
    if distro in {t.value for t in TargetId} or distro == "cos":
        return _named(distro, host, reason)
    if not distro:
        return _undetermined(host, _looked_for(osr))
    if not _SAFE_ID.fullmatch(distro):
        return _undetermined(host, f"{where} has an ID={distro[:40]!r} unfit for file names")
    # falcoctl names an unknown distro's artifacts after its ID with the generic rule.
    return _named(
        distro, host, reason,
        f"unknown distro ID={distro} in {where} (known: {', '.join(_KNOWN_IDS)}); naming "
        "artifacts with the generic rule",
    )


def _looked_for(osr: OsRelease) -> str:
    if osr.source == OS_RELEASE_FILE:
        return f"{OS_RELEASE_FILE} has no ID"
    tried = [OS_RELEASE_FILE, *(name for name, _ in RELEASE_FILES), "etc/VERSION"]
    return f"no distro found: looked for {', '.join(tried)} under the host root"


def _undetermined(host: HostInfo, why: str) -> HostTarget:
    return _named(
        UNDETERMINED, host, "generic fallback", f"{why}; using the generic target "
        f"{UNDETERMINED!r} (only the CO-RE probe, which fits every kernel, is likely to exist)",
    )
