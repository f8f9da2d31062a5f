"""VMware Photon OS 3, 4 and 5 (`4.19.283-3.ph3`, flavors like `-esx`)."""

from __future__ import annotations

import re

from drivercore.kernelrelease import KernelRelease
from drivercore.targets import TargetId
from driverkit.targets.base import HeaderFormat, HeaderLookup, Mirrors, Target
from driverkit.targets.common import release_token_number, rpm_arch

_PHOTON_TOKEN = re.compile(r"ph(\d+)", re.ASCII)
# Flavored kernels append their flavor to `uname -r` and to the package name.
_FLAVOR_SUFFIX = re.compile(r"-(esx|rt|secure|aws)$", re.ASCII)
PHOTON_RELEASES = ("3.0", "4.0", "5.0")


def photon_major(kr: KernelRelease) -> int | None:
    return release_token_number(kr, _PHOTON_TOKEN)


def photon_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
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


PHOTON = Target(
    id=TargetId.PHOTON,
    family="photon",
    header_format=HeaderFormat.RPM,
    header_source=(
        "linux[-flavor]-devel rpm from packages.vmware.com/photon (base, release, updates)"
    ),
    candidate_urls=photon_header_urls,
    release_pattern=lambda kr: photon_major(kr) is not None,
    header_lookup=HeaderLookup.FIRST_RPM,
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (PHOTON,)
