"""Amazon Linux 1, 2, 2022 and 2023.

Amazon's rpm paths contain content hashes, so no package URL can be computed from the
release: the candidates are the repositories' `mirror.list` files. The network step follows
each to the repository, reads `repodata/primary.sqlite` and picks the
`kernel-devel` whose version and release match (driverkit's method).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from drivercore.kernelrelease import KernelRelease
from drivercore.targets import TargetId
from driverkit.targets.base import (
    GccRule,
    HeaderFormat,
    HeaderLookup,
    HeaderUrlRule,
    Mirrors,
    ReleasePattern,
    Target,
    derive,
)
from driverkit.targets.common import release_tokens, rpm_arch

_AMZN_TOKEN = re.compile(r"amzn(\d+)", re.ASCII)


def amzn_generation(kr: KernelRelease) -> str | None:
    """`1`, `2`, `2022`, `2023` from the release's `amznN` part."""
    for token in release_tokens(kr):
        match = _AMZN_TOKEN.fullmatch(token)
        if match:
            return match.group(1)
    return None


def generation_is(generation: str) -> ReleasePattern:
    return lambda kr: amzn_generation(kr) == generation


def mirror_lists(repo_root: Callable[[str, str], str], repos: tuple[str, ...]) -> HeaderUrlRule:
    """The `mirror.list` of each repository; `repo_root(repo, rpm arch)` is its URL."""

    def candidates(
        kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
    ) -> tuple[str, ...]:
        a = rpm_arch(kr, arch)
        return tuple(f"{repo_root(repo, a)}/mirror.list" for repo in repos)

    return candidates


def al2_gcc(kr: KernelRelease) -> str | None:
    # Amazon builds its 5.10 kernels with the gcc10 package of AL2.
    return "10" if kr.series == (5, 10) else None


AMAZONLINUX = Target(
    id=TargetId.AMAZONLINUX,
    family="amazonlinux",
    header_format=HeaderFormat.RPM,
    header_source="repository mirror.list -> repodata/primary.sqlite -> kernel-devel rpm",
    # Amazon Linux 1 predates per-arch repositories.
    candidate_urls=mirror_lists(
        lambda repo, arch: f"http://repo.us-east-1.amazonaws.com/{repo}",
        (
            "latest/updates", "latest/main",
            "2017.03/updates", "2017.03/main",
            "2017.09/updates", "2017.09/main",
            "2018.03/updates", "2018.03/main",
        ),
    ),
    release_pattern=generation_is("1"),
    header_lookup=HeaderLookup.MIRROR_LISTS,
)
AMAZONLINUX2 = derive(
    AMAZONLINUX,
    id=TargetId.AMAZONLINUX2,
    candidate_urls=mirror_lists(
        lambda repo, arch: f"http://amazonlinux.us-east-1.amazonaws.com/2/{repo}/{arch}",
        (
            "core/2.0",
            "core/latest",
            "extras/kernel-5.4/latest",
            "extras/kernel-5.10/latest",
            "extras/kernel-5.15/latest",
        ),
    ),
    release_pattern=generation_is("2"),
    gcc=GccRule(
        pick=al2_gcc,
        described="5.10 -> 10",
        reason=lambda kr: "Amazon builds its 5.10 kernels with AL2's gcc10",
    ),
)
AMAZONLINUX2022 = derive(
    AMAZONLINUX,
    id=TargetId.AMAZONLINUX2022,
    candidate_urls=mirror_lists(
        lambda repo, arch: (
            "https://al2022-repos-us-east-1-9761ab97.s3.dualstack.us-east-1.amazonaws.com"
            f"/core/mirrors/{repo}/{arch}"
        ),
        ("2022.0.20220202", "2022.0.20220315"),
    ),
    release_pattern=generation_is("2022"),
)
AMAZONLINUX2023 = derive(
    AMAZONLINUX,
    id=TargetId.AMAZONLINUX2023,
    candidate_urls=mirror_lists(
        lambda repo, arch: f"https://cdn.amazonlinux.com/al2023/core/mirrors/{repo}/{arch}",
        ("latest",),
    ),
    release_pattern=generation_is("2023"),
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (AMAZONLINUX, AMAZONLINUX2, AMAZONLINUX2022, AMAZONLINUX2023,)
