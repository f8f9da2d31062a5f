"""Amazon Linux 1, 2, 2022 and 2023.

Amazon's rpm paths contain content hashes, so no package URL can be computed from the
release: the candidates are the repositories' `mirror.list` files. The network step follows
each to the repository, reads `repodata/primary.sqlite` and picks the
`kernel-devel` whose version and release match (driverkit's method).
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivercore.kernelrelease import KernelRelease
from driverkit.targets.base import Mirrors
from driverkit.targets.common import DistroTarget, release_tokens, rpm_arch

_AMZN_TOKEN = re.compile(r"amzn(\d+)", re.ASCII)


def amzn_generation(kr: KernelRelease) -> str | None:
    """`1`, `2`, `2022`, `2023` from the release's `amznN` part."""
    for token in release_tokens(kr):
        match = _AMZN_TOKEN.fullmatch(token)
        if match:
            return match.group(1)
    return None


class AmazonlinuxTarget(DistroTarget):
    name: ClassVar[str] = "amazonlinux"
    family: ClassVar[str] = "amazonlinux"
    package_format: ClassVar[str] = "rpm"
    template_family: ClassVar[str] = "rpm"
    header_source: ClassVar[str] = (
        "repository mirror.list -> repodata/primary.sqlite -> kernel-devel rpm"
    )
    generation: ClassVar[str] = "1"
    repos: ClassVar[tuple[str, ...]] = (
        "latest/updates", "latest/main",
        "2017.03/updates", "2017.03/main",
        "2017.09/updates", "2017.09/main",
        "2018.03/updates", "2018.03/main",
    )  # fmt: skip

    def matches(self, kr: KernelRelease) -> bool:
        return amzn_generation(kr) == self.generation

    def repo_root(self, repo: str, arch: str) -> str:
        # Amazon Linux 1 predates per-arch repositories.
        return f"http://repo.us-east-1.amazonaws.com/{repo}"

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        a = rpm_arch(kr, arch)
        return tuple(f"{self.repo_root(repo, a)}/mirror.list" for repo in self.repos)


class Amazonlinux2Target(AmazonlinuxTarget):
    name: ClassVar[str] = "amazonlinux2"
    generation: ClassVar[str] = "2"
    gcc_override_rule: ClassVar[str] = "5.10 -> 10"
    repos: ClassVar[tuple[str, ...]] = (
        "core/2.0",
        "core/latest",
        "extras/kernel-5.4/latest",
        "extras/kernel-5.10/latest",
        "extras/kernel-5.15/latest",
    )

    def gcc_override(self, kr: KernelRelease) -> str | None:
        # Amazon builds its 5.10 kernels with the gcc10 package of AL2.
        if kr.series == (5, 10):
            return "10"
        return None

    def repo_root(self, repo: str, arch: str) -> str:
        return f"http://amazonlinux.us-east-1.amazonaws.com/2/{repo}/{arch}"


class Amazonlinux2022Target(AmazonlinuxTarget):
    name: ClassVar[str] = "amazonlinux2022"
    generation: ClassVar[str] = "2022"
    repos: ClassVar[tuple[str, ...]] = ("2022.0.20220202", "2022.0.20220315")

    def repo_root(self, repo: str, arch: str) -> str:
        return (
            "https://al2022-repos-us-east-1-9761ab97.s3.dualstack.us-east-1.amazonaws.com"
            f"/core/mirrors/{repo}/{arch}"
        )


class Amazonlinux2023Target(AmazonlinuxTarget):
    name: ClassVar[str] = "amazonlinux2023"
    generation: ClassVar[str] = "2023"
    repos: ClassVar[tuple[str, ...]] = ("latest",)

    def repo_root(self, repo: str, arch: str) -> str:
        return f"https://cdn.amazonlinux.com/al2023/core/mirrors/{repo}/{arch}"
