"""Debian kernels: headers from the Debian archive, built in the suite that built the kernel.

A Debian kernel must be built with the compiler of the suite it was built in (a 6.12+deb13
kernel records gcc-14 in its headers' dependencies, a 6.1 kernel gcc-12), so the builder
image is that suite rather than a gcc picked from a table. The suite is read from the
release's own markers (`+deb13`, `.deb10.`, `~bpo12`) and otherwise from the kernel series
each stable release shipped.

The exact package version is only in `uname -v` (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.153-1`).
With it the three header packages (arch headers, `-common`, `linux-kbuild`) are exact .deb
URLs; without it the candidates are the pool directories, which the network step searches
through the archive's Packages indexes.

`DEBIAN_SUITES` is the one table of Debian suites: the target's suite rule, the gcc builder
choice (driverkit.gcc), the builder packages (driverkit.render), the debootstrap keyring
check (driverkit.images) and the catalog crawl (driverkit.debarchive) all read it, at call
time. A new suite is one row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivercore.kernelrelease import KernelRelease, debian_package_version, normalize_arch
from drivercore.targets import TargetId
from driverkit.gcc import debian_image, gcc_major
from driverkit.targets.base import (
    BuilderSpec,
    GccRule,
    HeaderFormat,
    HeaderLookup,
    Mirrors,
    Target,
    nearest_suite_builder,
)
from driverkit.targets.common import mismatch

# `-amd64`, `-cloud-amd64`, `-rt-arm64`: the image flavor Debian appends to the ABI name.
_FLAVOR_SUFFIX = re.compile(r"-(?:(rt|cloud)-)?(amd64|arm64)$", re.ASCII)
# ABI names of the stable series scheme (until 6.1): X.Y.0-N and backports X.Y.0-0.debN.M.
_SERIES_ABI = re.compile(r"\d+\.\d+\.0-\d+(?:\.deb\d+\.\d+)?", re.ASCII)

# Markers naming the Debian release a kernel was built for, strongest first.
_BACKPORT_MARKER = re.compile(r"~bpo(\d+)", re.ASCII)
_SUITE_MARKERS = (
    re.compile(r"\+deb(\d+)(?!u)", re.ASCII),  # 6.12.48+deb13-amd64 (ABI names since 6.11)
    re.compile(r"[-.]deb(\d+)\.", re.ASCII),  # 5.10.0-0.deb10.22-amd64 (older backports)
    re.compile(r"~deb(\d+)u", re.ASCII),  # 5.10.136-1~deb10u3-amd64
)


@dataclass(frozen=True)
class DebianSuite:
    """One Debian release and what every consumer needs to know about it."""

    number: int
    codename: str
    kernel_gcc: str  # its kernels' compiler (linux-compiler-gcc-N / gcc-N dependency)
    series: tuple[int, int]  # the kernel series it shipped at release
    # gcc-N majors its main archive installs; empty: not usable as a builder image
    gccs: tuple[str, ...] = ()
    has_updates: bool = True  # serves <codename>-updates
    has_security: bool = True  # the security archive serves <codename>-security
    builder_packages: tuple[str, ...] = ()  # what its builder needs beyond the common set
    keyring_verifies: bool = False  # the host's debian-archive-keyring checks its InRelease
    crawled: bool = False  # the kernel catalog (driverkit.catalog) covers it
    backports_crawled: bool = False  # ... and its <codename>-backports


# Kernel gccs from the suites' linux-headers-* dependencies (linux-compiler-gcc-N-x86,
# gcc-N, gcc-N-for-host); `gccs` from their Packages indexes (buster from its release).
# GCCs older than 7 are in no suite we can reach, unlike in driverkit's own buster image
# which adds 4.8-6 by hand, so jessie and stretch are no builders. sid is "14" and gcc 16:
# whatever unstable currently is (its 7.x kernels depend on gcc-16); it has no -updates
# and no -security. Of the backports, the catalog crawls bookworm's.
# bullseye has no `bpftool` package (it lives in linux-tools there). The host keyring
# (bookworm's) carries the bullseye/bookworm/trixie archive keys. Oldest first.
DEBIAN_SUITES: tuple[DebianSuite, ...] = (
    DebianSuite(8, "jessie", "4.9", (3, 16), has_updates=False),
    DebianSuite(9, "stretch", "6", (4, 9), has_updates=False),
    DebianSuite(10, "buster", "8", (4, 19), gccs=("7", "8")),
    DebianSuite(
        11, "bullseye", "10", (5, 10), gccs=("9", "10"), keyring_verifies=True, crawled=True
    ),
    DebianSuite(
        12, "bookworm", "12", (6, 1), gccs=("11", "12"), builder_packages=("bpftool",),
        keyring_verifies=True, crawled=True, backports_crawled=True,
    ),
    DebianSuite(
        13, "trixie", "14", (6, 12), gccs=("12", "13", "14"), builder_packages=("bpftool",),
        keyring_verifies=True, crawled=True,
    ),
    DebianSuite(
        14, "sid", "16", (99, 0), gccs=("11", "12", "13", "14", "15", "16"), has_updates=False,
        has_security=False, builder_packages=("bpftool",), crawled=True,
    ),
)  # fmt: skip


def suite_named(codename: str) -> DebianSuite | None:
    return next((suite for suite in DEBIAN_SUITES if suite.codename == codename), None)


def builder_suites() -> tuple[DebianSuite, ...]:
    """Suites a builder image can be made of (they install some gcc), oldest first."""
    return tuple(suite for suite in DEBIAN_SUITES if suite.gccs)


def crawled_codenames() -> tuple[str, ...]:
    return tuple(suite.codename for suite in DEBIAN_SUITES if suite.crawled)


def suite_facts(codename: str) -> DebianSuite:
    """The suite's row; for a codename missing from the table, a stable suite's defaults
    (it has -updates and -security)."""
    return suite_named(codename) or DebianSuite(0, codename, "", (0, 0))


def keyring_verifies(codename: str) -> bool:
    suite = suite_named(codename)
    return suite is not None and suite.keyring_verifies


@dataclass(frozen=True)
class DebianKernelName:
    abi: str  # release without the flavor suffix: 5.10.0-30, 6.12.48+deb13
    variant: str  # "", "rt" or "cloud"
    arch: str  # amd64 | arm64


def split_debian_release(kr: KernelRelease) -> DebianKernelName | None:
    match = _FLAVOR_SUFFIX.search(kr.raw)
    if match is None:
        return None
    return DebianKernelName(
        abi=kr.raw[: match.start()], variant=match.group(1) or "", arch=match.group(2)
    )


def debian_release_for(kr: KernelRelease) -> DebianSuite:
    """The Debian release whose toolchain built this kernel."""
    backport = _BACKPORT_MARKER.search(kr.raw)
    if backport:
        return _release_number(int(backport.group(1)))
    for marker in _SUITE_MARKERS:
        found = marker.search(kr.raw)
        if found:
            return _release_number(int(found.group(1)))
    for release in DEBIAN_SUITES:
        if kr.series <= release.series:
            return release
    return DEBIAN_SUITES[-1]  # unstable: newer than any release's series


def _release_number(number: int) -> DebianSuite:
    for release in DEBIAN_SUITES:
        if release.number == number:
            return release
    unstable = DEBIAN_SUITES[-1]
    return unstable if number > unstable.number else DEBIAN_SUITES[0]


def debian_suite_gcc(kr: KernelRelease) -> str | None:
    return debian_release_for(kr).kernel_gcc


def debian_suite_gcc_reason(kr: KernelRelease) -> str:
    release = debian_release_for(kr)
    return f"Debian {release.codename} built it with gcc-{release.kernel_gcc}"


def debian_suite_builder(gcc: str, kr: KernelRelease) -> BuilderSpec:
    """The suite that built the kernel, when it is still a builder that installs its gcc."""
    release = debian_release_for(kr)
    major = gcc_major(gcc)
    if major in release.gccs:
        return BuilderSpec(debian_image(release.codename), release.codename, major)
    # jessie and stretch are gone from the mirrors: the nearest GCC a reachable suite has.
    return nearest_suite_builder(gcc, kr)


def debian_header_urls(
    kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str
) -> tuple[str, ...]:
    name = split_debian_release(kr)
    if name is None:
        raise mismatch(
            TargetId.DEBIAN, kr, "expected it to end in -amd64, -cloud-amd64 or -rt-amd64"
        )
    package_version = debian_package_version(kernel_version)
    pool_dirs = _pool_dirs(kr, name, package_version, mirrors)
    if package_version is None:
        return pool_dirs
    deb_arch = normalize_arch(name.arch or arch)
    flavor = f"{name.variant}-{deb_arch}" if name.variant else deb_arch
    # rt kernels had their own -common-rt up to 6.12; sid's 7.x rt shares -common.
    commons = [f"linux-headers-{name.abi}-common"]
    if name.variant == "rt":
        commons.insert(0, f"linux-headers-{name.abi}-common-rt")
    series_kbuild = f"linux-kbuild-{kr.version}.{kr.patch_level}"
    if _SERIES_ABI.fullmatch(name.abi):
        kbuilds = [series_kbuild]  # 5.10.0-30, 5.10.0-0.deb10.22: one kbuild per series
    elif "+deb" in name.abi:
        kbuilds = [f"linux-kbuild-{name.abi}"]  # 6.12.48+deb13: one kbuild per upload
    else:
        # 6.11.10 (sid before +debN) has its own kbuild; unknown forms try both.
        kbuilds = [f"linux-kbuild-{name.abi}", series_kbuild]
    # Debian file names drop the epoch; versions carry no ':' in these packages anyway.
    files = (
        f"linux-headers-{name.abi}-{flavor}_{package_version}_{deb_arch}.deb",
        *(f"{common}_{package_version}_all.deb" for common in commons),
        *(f"{kbuild}_{package_version}_{deb_arch}.deb" for kbuild in kbuilds),
    )
    urls: list[str] = []
    for pool in pool_dirs:
        for file in files:
            if kr.version == 3 and file.startswith("linux-kbuild-"):
                # Before 4.x linux-kbuild came from the linux-tools source package.
                pool_for_file = pool.replace("/l/linux/", "/l/linux-tools/")
            else:
                pool_for_file = pool
            url = pool_for_file + file
            if url not in urls:
                urls.append(url)
    return tuple(urls)


def _pool_dirs(
    kr: KernelRelease, name: DebianKernelName, package_version: str | None, mirrors: Mirrors
) -> tuple[str, ...]:
    # driverkit.mirrors imports the target contract, so it is loaded on use.
    from driverkit.mirrors import require_debian_mirror

    root = require_debian_mirror(mirrors).rstrip("/")
    security = mirrors.debian_security.rstrip("/")
    series_source = f"linux-{kr.version}.{kr.patch_level}"
    main_dirs = [f"{root}/pool/main/l/linux/", f"{root}/pool/main/l/{series_source}/"]
    security_dirs = (
        [
            f"{security}/pool/updates/main/l/linux/",
            f"{security}/pool/updates/main/l/{series_source}/",
        ]
        if security
        else []
    )
    # A `~debNuM` version is a kernel series carried into an older stable release: its
    # source is linux-X.Y and it is published through the security archive first.
    carried = (
        package_version is not None and re.search(r"~deb\d+u", package_version) is not None
    ) or re.search(r"[-.]deb\d+\.", name.abi) is not None
    if carried:
        ordered = [
            *security_dirs[1:],
            main_dirs[1],
            main_dirs[0],
            *security_dirs[:1],
        ]
    else:
        ordered = [main_dirs[0], *security_dirs[:1], main_dirs[1], *security_dirs[1:]]
    return tuple(dict.fromkeys(ordered))


def _suite_rule_text() -> str:
    """`driverkit targets`' words for the suite rule, written from the table."""
    *stable, unstable = builder_suites()
    markers = [f"deb{suite.number} {suite.kernel_gcc}" for suite in stable]
    markers.append(f"deb{unstable.number}/{unstable.codename} {unstable.kernel_gcc}")
    series = [f"{suite.series[0]}.{suite.series[1]} {suite.kernel_gcc}" for suite in stable]
    series.append(f"newer {unstable.kernel_gcc}")
    return (
        f"the building suite's: +debN/.debN./~bpoN marker ({', '.join(markers)}), "
        f"else the series ({', '.join(series)})"
    )


DEBIAN = Target(
    id=TargetId.DEBIAN,
    family="debian",
    header_format=HeaderFormat.DEBIAN,
    header_source=(
        "Debian archive pool l/linux (and l/linux-X.Y, security updates): linux-headers-<rel>, "
        "linux-headers-<abi>-common, linux-kbuild"
    ),
    candidate_urls=debian_header_urls,
    release_pattern=lambda kr: split_debian_release(kr) is not None,
    # Every Debian release resolves through the suite rule; the default never applies.
    gcc=GccRule(
        pick=debian_suite_gcc,
        described=_suite_rule_text(),
        replaces_default=True,
        reason=debian_suite_gcc_reason,
    ),
    builder_rule=debian_suite_builder,
    header_lookup=HeaderLookup.DEBIAN_ARCHIVE,
)

# The rows driverkit.targets registers.
TARGETS: tuple[Target, ...] = (DEBIAN,)
