"""VMware Photon OS 3, 4 and 5 (`4.19.283-3.ph3`, flavors like `-esx`)."""

from __future__ import annotations

import re
from typing import ClassVar

from drivercore.kernelrelease import KernelRelease
from driverkit.targets.base import Mirrors
from driverkit.targets.common import DistroTarget, release_tokens, rpm_arch

_PHOTON_TOKEN = re.compile(r"ph(\d+)", re.ASCII)
# Flavored kernels append their flavor to `uname -r` and to the package name.
_FLAVOR_SUFFIX = re.compile(r"-(esx|rt|secure|aws)$", re.ASCII)
PHOTON_RELEASES = ("3.0", "4.0", "5.0")


def photon_major(kr: KernelRelease) -> int | None:
    for token in release_tokens(kr):
        match = _PHOTON_TOKEN.fullmatch(token)
        if match:
            return int(match.group(1))
    return None


class PhotonTarget(DistroTarget):
    name: ClassVar[str] = "photon"
    family: ClassVar[str] = "photon"
    package_format: ClassVar[str] = "rpm"
    template_family: ClassVar[str] = "rpm"
    header_source: ClassVar[str] = (
        "linux[-flavor]-devel rpm from packages.vmware.com/photon (base, release, updates)"
    )

    def matches(self, kr: KernelRelease) -> bool:
        return photon_major(kr) is not None

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        a = rpm_arch(kr, arch)
        release = str(kr)
        package = "linux-devel"
        flavor = _FLAVOR_SUFFIX.search(release)
        if flavor:
            package = f"linux-{flavor.group(1)}-devel"
            release = release[: flavor.start()]
        major = photon_major(kr)
        # The release's own Photon version first, then the others driverkit also tries.
        ordered = sorted(PHOTON_RELEASES, key=lambda r: r != f"{major}.0")
        urls = []
        for r in ordered:
            for repo in (f"photon_{r}", f"photon_release_{r}", f"photon_updates_{r}"):
                urls.append(
                    f"https://packages.vmware.com/photon/{r}/{repo}_{a}/{a}/"
                    f"{package}-{release}.{a}.rpm"
                )
        return tuple(urls)
