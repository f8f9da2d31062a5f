"""Behaviour most targets share, so each distro module states only what differs.

A target is a stateless object: every answer is a function of the parsed release, the kernel
version text and the injected mirrors.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivercore.kernelrelease import (
    KernelRelease,
    non_deb_arch,
    normalize_arch,
    parse_kernel_version,
)
from drivercore.naming import ArtifactKernel
from driverkit.errors import InvalidKernelReleaseError
from driverkit.gcc import DEFAULT_GCC_RULE, debian_image, default_gcc, installable_gcc
from driverkit.targets.base import BuilderSpec, Target

# Release tokens are separated by these; `amzn2`, `el8uek`, `fc39` are whole tokens.
_TOKEN_SPLIT = re.compile(r"[-.+~_]")
_RELEASE_ARCH = re.compile(r"(?:^|[-.])(x86_64|aarch64|amd64|arm64)(?:$|[-.])")


def release_tokens(kr: KernelRelease) -> list[str]:
    return [t for t in _TOKEN_SPLIT.split(kr.full_extra_version) if t]


def release_arch(kr: KernelRelease, default: str) -> str:
    """The architecture a release names (`...el8.x86_64`), else `default`; Debian spelling."""
    match = _RELEASE_ARCH.search(kr.full_extra_version)
    if match:
        return normalize_arch(match.group(1))
    return normalize_arch(default)


def rpm_arch(kr: KernelRelease, default: str) -> str:
    return non_deb_arch(release_arch(kr, default))


def rpm_release_with_arch(kr: KernelRelease, arch: str) -> str:
    """`version-release.arch` as in `kernel-devel-<this>.rpm`: rpm releases from `uname -r`
    already end in the arch; add it when a user passed the bare `4.18.0-425.el8`."""
    text = str(kr)
    rarch = rpm_arch(kr, arch)
    if text.endswith("." + rarch):
        return text
    return f"{text}.{rarch}"


def mismatch(target: str, kr: KernelRelease, needs: str) -> InvalidKernelReleaseError:
    """A release that cannot be a `target` release: one line naming it and what is needed."""
    return InvalidKernelReleaseError(
        f"kernel release {kr.raw!r} is not a {target} release: {needs}; "
        f"pass the release as `uname -r` prints it on that distro, or another --target"
    )


def debian_builder(family: str, wanted_gcc: str) -> BuilderSpec:
    """The builder spec for a GCC: the Debian suite image that ships it (or its nearest)."""
    suite, gcc = installable_gcc(wanted_gcc)
    return BuilderSpec(family=family, base_image=debian_image(suite), distro_release=suite, gcc=gcc)


class DistroTarget(Target):
    """Defaults: driverkit's default gcc, a Debian builder image serving that gcc, and
    falcoctl's generic naming (target name, release as given, build number)."""

    template_family: ClassVar[str]  # which build-script template unpacks the headers
    gcc_override_rule: ClassVar[str] = ""  # describes gcc_override, empty when none

    def matches(self, kr: KernelRelease) -> bool:
        return False

    def gcc_override(self, kr: KernelRelease) -> str | None:
        """A target-specific gcc for this kernel, or None to use driverkit's default."""
        return None

    def gcc_version(self, kr: KernelRelease) -> str:
        return self.gcc_override(kr) or default_gcc(kr)

    def override_rule(self) -> str:
        """Describes gcc_override for `driverkit targets`; empty when there is none."""
        return self.gcc_override_rule

    def gcc_rule(self) -> str:
        rule = self.override_rule()
        if rule:
            return f"{rule}; otherwise {DEFAULT_GCC_RULE}"
        return DEFAULT_GCC_RULE

    def builder(self, kr: KernelRelease) -> BuilderSpec:
        return debian_builder(self.template_family, self.gcc_version(kr))

    def target_id(self, kr: KernelRelease) -> str:
        return self.name

    def artifact_kernel(self, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
        return ArtifactKernel(
            target_id=self.target_id(kr),
            kernel_release=str(kr),
            kernel_version=parse_kernel_version(kernel_version),
        )
