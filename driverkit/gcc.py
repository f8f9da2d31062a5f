"""Which GCC builds a kernel, and which builder image provides that GCC.

`default_gcc` is driverkit's default rule (its builder's defaultGCC): a kernel is built with
the compiler its distros shipped when that kernel series was current. Targets override it
where the distro is known to use another compiler (AL2 5.10 -> gcc 10, Debian follows its
suites).

Builder images are Debian suites because the Debian archive is the one mirror every build
host can reach; each suite ships a set of GCC majors (checked in the suites' Packages
indexes), and a GCC is served by the oldest suite that ships it, as driverkit's "any"
builder images do.
"""

from __future__ import annotations

from dataclasses import dataclass

from driverkit.kernelrelease import KernelRelease

# (minimum (version, patch level), gcc), newest first within a kernel major. Copied as
# facts from driverkit's defaultGCC.
DEFAULT_GCC_TABLE: tuple[tuple[tuple[int, int], str], ...] = (
    ((6, 9), "14"),
    ((6, 5), "13"),
    ((6, 0), "12"),
    ((5, 15), "12"),
    ((5, 0), "11"),
    ((4, 0), "8"),
    ((3, 18), "5"),
    ((3, 0), "4.9"),
    ((2, 0), "4.8"),
)
# Kernels newer than the table's majors (7.x and later) and anything unrecognised.
NEWEST_DEFAULT_GCC = "14"

DEFAULT_GCC_RULE = (
    "driverkit default: 2.x->4.8, 3.0-3.17->4.9, 3.18+->5, 4.x->8, 5.0-5.14->11, "
    "5.15+->12, 6.0-6.4->12, 6.5-6.8->13, 6.9+->14, newer->14"
)


def default_gcc(kr: KernelRelease) -> str:
    """driverkit's default GCC for a kernel series."""
    if kr.version > 6:
        return NEWEST_DEFAULT_GCC
    for (major, minor), gcc in DEFAULT_GCC_TABLE:
        if kr.version == major and kr.patch_level >= minor:
            return gcc
    return NEWEST_DEFAULT_GCC


@dataclass(frozen=True)
class DebianSuite:
    codename: str
    gccs: tuple[str, ...]  # GCC majors the suite ships as gcc-N packages


# Oldest first. buster's extra compilers (4.8, 4.9, 5, 6) are the ones driverkit's oldest
# builder image adds on top of buster; sid ships 16 as the compiler of its 7.x kernels.
DEBIAN_SUITES: tuple[DebianSuite, ...] = (
    DebianSuite("buster", ("4.8", "4.9", "5", "6", "7", "8")),
    DebianSuite("bullseye", ("9", "10")),
    DebianSuite("bookworm", ("11", "12")),
    DebianSuite("trixie", ("13", "14")),
    DebianSuite("sid", ("15", "16")),
)


def gcc_major(gcc: str) -> str:
    """`4.8.5` -> `4.8`, `10.2` -> `10`: the granularity Debian packages GCC at."""
    parts = gcc.split(".")
    if parts[0] == "4" and len(parts) > 1:
        return f"4.{parts[1]}"
    return parts[0]


def debian_suite_for_gcc(gcc: str) -> str:
    """The oldest Debian suite that ships `gcc`; the newest suite for anything newer."""
    wanted = gcc_major(gcc)
    for suite in DEBIAN_SUITES:
        if wanted in suite.gccs:
            return suite.codename
    newest = DEBIAN_SUITES[-1]
    try:
        if float(wanted) > float(newest.gccs[-1]):
            return newest.codename
    except ValueError:
        pass
    return DEBIAN_SUITES[0].codename


def debian_image(suite: str) -> str:
    return f"debian:{suite}"
