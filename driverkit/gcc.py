"""Which GCC builds a kernel, and which builder image provides that GCC.

`default_gcc` is driverkit's default rule (its builder's defaultGCC): a kernel is built with
the compiler its distros shipped when that kernel series was current. Targets override it
where the distro is known to use another compiler (AL2 5.10 -> gcc 10, Debian follows its
suites).

Builder images are Debian suites because the Debian archive is the one mirror every build
host can reach; each suite ships a set of GCC majors (the `gccs` of the suite table,
driverkit.targets.debian.DEBIAN_SUITES), and a GCC is served by the oldest suite that ships
it, as driverkit's "any" builder images do. A builder's gcc is always one its suite can
install: when the wanted GCC exists nowhere, the nearest older one stands in, as driverkit
does with its images, and the plan says so (`BuilderSpec.substituted`). One image serves
every target that needs its (suite, gcc): headers are unpacked on the host, never in it.
"""

from __future__ import annotations

from drivercore.kernelrelease import KernelRelease

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

DEFAULT_GCC_RULE = "default: 2.x 4.8, 3.x 4.9, 3.18+ 5, 4.x 8, 5.x 11, 5.15+ 12, 6.5+ 13, 6.9+ 14"


def default_gcc(kr: KernelRelease) -> str:
    """driverkit's default GCC for a kernel series."""
    if kr.version > 6:
        return NEWEST_DEFAULT_GCC
    for (major, minor), gcc in DEFAULT_GCC_TABLE:
        if kr.version == major and kr.patch_level >= minor:
            return gcc
    return NEWEST_DEFAULT_GCC


def gcc_major(gcc: str) -> str:
    """`4.8.5` -> `4.8`, `10.2` -> `10` (`012` -> `12`): the granularity Debian packages
    GCC at."""
    parts = [part.lstrip("0") or "0" if part.isdigit() else part for part in gcc.split(".")]
    if parts[0] == "4" and len(parts) > 1:
        return f"4.{parts[1]}"
    return parts[0]


def _version_key(gcc: str) -> tuple[int, ...]:
    return tuple(int(part) for part in gcc.split(".") if part.isdigit())


def installable_gcc(wanted: str) -> tuple[str, str]:
    """(Debian suite, gcc-N package) a builder uses for a kernel that wants `wanted`.

    The oldest suite that ships it exactly; otherwise driverkit's fallback: the newest
    shipped GCC not newer than the wanted one, or the oldest shipped when all are newer.
    """
    # The suite table lives with the Debian target, which imports this module: read it on
    # use (and so see the table as it is at call time).
    from driverkit.targets.debian import builder_suites

    suites = builder_suites()
    major = gcc_major(wanted)
    for suite in suites:
        if major in suite.gccs:
            return suite.codename, major
    shipped = sorted({g for suite in suites for g in suite.gccs}, key=_version_key)
    not_newer = [g for g in shipped if _version_key(g) <= _version_key(major)]
    pick = not_newer[-1] if not_newer else shipped[0]
    codename = next(candidate.codename for candidate in suites if pick in candidate.gccs)
    return codename, pick


def shipped_gccs() -> tuple[tuple[str, str], ...]:
    """(gcc major, the suite whose builder installs it) for every gcc some builder suite
    ships, oldest gcc first: the answers `installable_gcc` can give."""
    from driverkit.targets.debian import builder_suites

    majors = sorted({g for suite in builder_suites() for g in suite.gccs}, key=_version_key)
    return tuple((major, installable_gcc(major)[0]) for major in majors)


def shipped_gccs_text() -> str:
    """`7, 8 (buster), 9, 10 (bullseye), ...`: each gcc by the suite that builds with it."""
    by_suite: dict[str, list[str]] = {}
    for major, suite in shipped_gccs():
        by_suite.setdefault(suite, []).append(major)
    return ", ".join(f"{', '.join(majors)} ({suite})" for suite, majors in by_suite.items())


def debian_suite_for_gcc(gcc: str) -> str:
    return installable_gcc(gcc)[0]


def debian_image(suite: str) -> str:
    return f"debian:{suite}"
