"""Release-string helpers the distro modules share.

Every answer a target gives is a function of the parsed release, the kernel version text
and the injected mirrors; these are the pieces several of those functions need.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from drivercore.kernelrelease import KernelRelease, non_deb_arch, normalize_arch
from driverkit.errors import InvalidKernelReleaseError

if TYPE_CHECKING:
    from driverkit.targets.base import HeaderUrlRule, Mirrors

# Release tokens are separated by these; `amzn2`, `el8uek`, `fc39` are whole tokens.
_TOKEN_SPLIT = re.compile(r"[-.+~_]")
_RELEASE_ARCH = re.compile(r"(?:^|[-.])(x86_64|aarch64|amd64|arm64)(?:$|[-.])")


def release_tokens(kr: KernelRelease) -> list[str]:
    return [t for t in _TOKEN_SPLIT.split(kr.full_extra_version) if t]


def release_token_number(kr: KernelRelease, pattern: re.Pattern[str]) -> int | None:
    """The number `pattern`'s group captures from the first whole token it matches
    (`el(\\d+)` on `3.10.0-1160.el7.x86_64` is 7), or None."""
    for token in release_tokens(kr):
        match = pattern.fullmatch(token)
        if match:
            return int(match.group(1))
    return None


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


# Where a release's kernel-devel rpm may be: (release, rpm arch, rpm file name) -> URLs,
# likeliest first.
RpmLayout = Callable[[KernelRelease, str, str], Iterable[str]]


def kernel_devel_rpm(layout: RpmLayout) -> HeaderUrlRule:
    """The header rule of a distro whose headers are the one `kernel-devel-<release>.rpm`
    named like `uname -r`; `layout` says where that rpm lives."""

    def candidate_urls(
        kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
    ) -> tuple[str, ...]:
        rpm = f"kernel-devel-{rpm_release_with_arch(kr, arch)}.rpm"
        return tuple(dict.fromkeys(layout(kr, rpm_arch(kr, arch), rpm)))

    return candidate_urls
