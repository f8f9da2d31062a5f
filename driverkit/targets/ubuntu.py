"""Ubuntu kernels: Debian packaging, but one source package per flavor (linux-aws,
linux-azure-5.15, ...) and artifacts named per flavor (`ubuntu-aws`, see
drivercore.targets), as falcoctl does. Unlike Debian, the gcc is driverkit's default and the
builder the nearest suite: Ubuntu shares only the package format with Debian, so it is a
row of its own rather than a variant of Debian's."""

from __future__ import annotations

import re

from drivercore.kernelrelease import KernelRelease, normalize_arch, ubuntu_kernel_version
from drivercore.targets import TargetId
from driverkit.targets.base import HeaderFormat, HeaderLookup, Mirrors, Target
from driverkit.targets.common import mismatch

# Flavor words Ubuntu kernels carry after the ABI number (first word of the flavor).
UBUNTU_FLAVORS = frozenset(
    {
        "generic", "lowlatency", "aws", "azure", "gcp", "gke", "gkeop", "kvm", "oracle",
        "ibm", "intel", "nvidia", "raspi", "realtime", "lts", "hwe", "virtual", "oem",
        "bluefield", "xilinx", "fips", "snapdragon", "server", "euclid", "riscv",
    }
)  # fmt: skip

_UBUNTU_RELEASE = re.compile(
    r"\d+\.\d+\.\d+-\d+-(?P<flavor>[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*)(?:-\d+(?:\.\d+)*)?",
    re.ASCII,
)
# driverkit's flavor grammar: `aws`, `generic-5`, `lowlatency-hwe-5.15`, `intel-iotg-5.15`.
_DRIVERKIT_FLAVOR = re.compile(r"([a-z-]+[a-z])-*\d?.*", re.ASCII)

DEFAULT_UBUNTU_POOLS = {
    "amd64": (
        "https://mirrors.edge.kernel.org/ubuntu/pool/main/l",
        "http://security.ubuntu.com/ubuntu/pool/main/l",
    ),
    # Ubuntu serves every architecture but amd64/i386 from ports.
    "arm64": ("http://ports.ubuntu.com/ubuntu-ports/pool/main/l",),
}


def ubuntu_extra_version(kr: KernelRelease) -> tuple[str, str]:
    """(ABI number, flavor) the way driverkit splits them: `1004-intel-iotg` ->
    (`1004`, `intel-iotg`); no flavor means `generic`."""
    extra = kr.extra_version
    if "-" not in extra:
        return extra, "generic"
    number, _, flavor_text = extra.partition("-")
    match = _DRIVERKIT_FLAVOR.fullmatch(flavor_text)
    if match is None:
        raise mismatch(
            TargetId.UBUNTU, kr, "expected <version>-<abi>-<flavor>, e.g. 5.15.0-1004-aws"
        )
    return number, match.group(1)


def is_ubuntu_release(kr: KernelRelease) -> bool:
    match = _UBUNTU_RELEASE.fullmatch(kr.raw)
    if match is None:
        return False
    words = match.group("flavor").split("-")
    # Ubuntu's LTS enablement kernels name their series (-lts-utopic); a bare `-lts`
    # is Arch's LTS kernel (6.6.30-2-lts).
    if words == ["lts"]:
        return False
    return words[0] in UBUNTU_FLAVORS


def ubuntu_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    deb_arch = normalize_arch(arch)
    upload = ubuntu_kernel_version(kernel_version)
    number, flavor = ubuntu_extra_version(kr)
    if mirrors.ubuntu:
        pools: tuple[str, ...] = tuple(f"{m.rstrip('/')}/pool/main/l" for m in mirrors.ubuntu)
    else:
        pools = DEFAULT_UBUNTU_POOLS[deb_arch]
    fv, fev = kr.full_version, kr.full_extra_version
    package_version = f"{fv}-{number}.{upload}"
    # Same candidate names, in the same order, as driverkit's ubuntu builder.
    names = [
        f"linux-headers-{fv}{fev}_{package_version}_{deb_arch}_all.deb",
        f"linux-headers-{fv}-{number}-{flavor}_{package_version}_{deb_arch}.deb",
        f"linux-{flavor}-headers-{fv}-{number}_{package_version}_all.deb",
        f"linux-headers-{fv}{fev}_{package_version}_{deb_arch}.deb",
    ]
    if flavor == "generic":
        names.append(f"linux-headers-{fv}-{number}_{package_version}_all.deb")
    subdirs = ("linux", f"linux-{flavor}", f"linux-{flavor}-{kr.version}.{kr.patch_level}")
    urls = [f"{pool}/{sub}/{n}" for pool in pools for sub in subdirs for n in names]
    return tuple(dict.fromkeys(urls))


UBUNTU = Target(
    id=TargetId.UBUNTU,
    family="debian",
    header_format=HeaderFormat.UBUNTU,
    header_source=(
        "Ubuntu pool l/linux, l/linux-<flavor>, l/linux-<flavor>-X.Y: "
        "linux-headers-<rel> + linux-<flavor>-headers-<abi> (_all)"
    ),
    candidate_urls=ubuntu_header_urls,
    release_pattern=is_ubuntu_release,
    header_lookup=HeaderLookup.UBUNTU_PAIR,
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (UBUNTU,)
