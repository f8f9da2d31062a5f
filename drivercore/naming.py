"""Artifact names and repository paths: the one place the build side and the host side
agree on what a driver file is called and where it lives.

Names follow falcoctl and driverkit: `<driver>_<target>_<kernelrelease>_<kernelversion>.ko`
for the kernel module, the same stem with `.o` for the per-kernel eBPF probe, and one
`<driver>_core.o` CO-RE probe per driver version. Repository paths follow falcoctl's URL
layout, `<driver-version with '+' as %2B>/<x86_64|aarch64>/<file>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from drivercore.errors import UsageError
from drivercore.kernelrelease import non_deb_arch

DRIVER_NAME = "rtcap"
# A driver version names a folder locally and in the repository: semver-like text only.
_DRIVER_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_~-]{0,63}")


class ArtifactKind(StrEnum):
    KMOD = "kmod"  # kernel module, one per kernel
    PROBE = "probe"  # per-kernel eBPF probe
    CORE = "core"  # CO-RE eBPF probe, one per driver version


@dataclass(frozen=True)
class ArtifactKernel:
    """The (target id, kernel release, kernel version) triple that goes into artifact names.

    `drivercore.targets.artifact_kernel` computes it from `uname -r`/`uname -v` with
    falcoctl's per-target fix-ups; the builder and the loader both call it, so they always
    agree on the file name.
    """

    target_id: str
    kernel_release: str
    kernel_version: str


def artifact_stem(driver_name: str, kernel: ArtifactKernel) -> str:
    return f"{driver_name}_{kernel.target_id}_{kernel.kernel_release}_{kernel.kernel_version}"


def kmod_file(driver_name: str, kernel: ArtifactKernel) -> str:
    return artifact_stem(driver_name, kernel) + ".ko"


def probe_file(driver_name: str, kernel: ArtifactKernel) -> str:
    return artifact_stem(driver_name, kernel) + ".o"


def core_probe_file(driver_name: str = DRIVER_NAME) -> str:
    """The CO-RE probe is built once per driver version and loads on any BTF kernel."""
    return f"{driver_name}_core.o"


def repo_arch(arch: str) -> str:
    """falcoctl's architecture directory (x86_64, aarch64) for any spelling (amd64, ...)."""
    return non_deb_arch(arch)


def repo_path(driver_version: str, arch: str, file: str) -> str:
    """An artifact's path below a repository root, exactly as falcoctl builds its URLs."""
    return f"{quote(driver_version, safe='')}/{repo_arch(arch)}/{file}"


def is_valid_driver_version(version: str) -> bool:
    """Whether `version` is safe as a path component and a URL segment."""
    return _DRIVER_VERSION.fullmatch(version) is not None and ".." not in version


def validate_driver_version(version: str) -> str:
    """`version` if it is safe as a path component and a URL segment; else UsageError."""
    if not is_valid_driver_version(version):
        raise UsageError(
            f"driver version {version[:40]!r}: use letters, digits and . + _ ~ - "
            "(at most 64, starting with a letter or digit), e.g. 0.1.0 or 8.0.0+driver"
        )
    return version
