"""Release-string helpers the distro modules share.

Every answer a target gives is a function of the parsed release, the kernel version text
and the injected mirrors; these are the pieces several of those functions need.
"""

from __future__ import annotations

import re

from drivercore.kernelrelease import KernelRelease, non_deb_arch, normalize_arch
from driverkit.errors import InvalidKernelReleaseError

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
