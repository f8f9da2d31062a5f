"""What each target can build today, for `driverkit targets`: its builders per kernel
series and the end-to-end build test that covers it.

The builders are not described by hand: every target's own gcc rule and builder rule are
asked about one release of each kernel series (`PROBE_SERIES`), and consecutive series
with the same answer are joined into a range. A series whose wanted gcc no builder suite
ships is listed with the gcc that stands in for it (`BuilderSpec.substituted`); the
kernels a target "builds today" are the series whose builder has the very gcc wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivercore.kernelrelease import parse_kernel_release
from drivercore.targets import TargetId
from driverkit.targets.base import Target

# The end-to-end build test (a pytest node id) that builds a real kernel of the target,
# headers to validated module and probe. tests/test_targets.py checks every id names a
# test that exists.
E2E_TESTED: dict[TargetId, str] = {
    TargetId.AMAZONLINUX2: "tests/test_build_distros.py::test_build_e2e[amazonlinux2]",
    TargetId.ARCH: "tests/test_build_distros.py::test_build_e2e[arch]",
    TargetId.CENTOS: "tests/test_build_distros.py::test_build_e2e[centos]",
    TargetId.DEBIAN: (
        "tests/test_build_docker.py::test_real_driver_for_a_bookworm_kernel_then_nothing_to_do"
    ),
    TargetId.FEDORA: "tests/test_build_distros.py::test_build_e2e[fedora]",
    TargetId.ROCKY: "tests/test_build_distros.py::test_build_e2e[rocky]",
    TargetId.UBUNTU: "tests/test_build_distros.py::test_build_e2e[ubuntu]",
    TargetId.VANILLA: "tests/test_build_distros.py::test_build_e2e[vanilla]",
}

# One release per kernel series, 2.6 to 7.0; the last stands for "7.0 and later". A rule
# that changes inside a series (none does) would be seen at the series' first release.
PROBE_SERIES: tuple[tuple[int, int], ...] = (
    (2, 6),
    *((3, minor) for minor in range(20)),
    *((4, minor) for minor in range(21)),
    *((5, minor) for minor in range(20)),
    *((6, minor) for minor in range(20)),
    (7, 0),
)


@dataclass(frozen=True)
class BuilderRange:
    """Consecutive kernel series (PROBE_SERIES[first..last]) that want one gcc and get one
    builder."""

    first: int
    last: int
    wanted_gcc: str
    suite: str
    gcc: str
    substituted: bool

    @property
    def kernels(self) -> str:
        return series_range(self.first, self.last)


def _series(index: int) -> str:
    version, patch_level = PROBE_SERIES[index]
    return f"{version}.{patch_level}"


def series_range(first: int, last: int) -> str:
    """`5.10`, `5.0-5.14`, `6.9+` (through the newest probed), from PROBE_SERIES indices."""
    if last == len(PROBE_SERIES) - 1:
        return f"{_series(first)}+"
    if first == last:
        return _series(first)
    return f"{_series(first)}-{_series(last)}"


def builder_ranges(target: Target) -> tuple[BuilderRange, ...]:
    """The target's builder for every probed series, consecutive equal answers joined."""
    ranges: list[BuilderRange] = []
    for index, (version, patch_level) in enumerate(PROBE_SERIES):
        spec = target.builder(parse_kernel_release(f"{version}.{patch_level}.0"))
        answer = (spec.wanted_gcc, spec.distro_release, spec.gcc, spec.substituted)
        previous = ranges[-1] if ranges else None
        if previous is not None and answer == (
            previous.wanted_gcc, previous.suite, previous.gcc, previous.substituted
        ):
            ranges[-1] = BuilderRange(previous.first, index, *answer)
        else:
            ranges.append(BuilderRange(index, index, *answer))
    return tuple(ranges)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _joined(ranges: list[BuilderRange]) -> str:
    indices = [i for r in ranges for i in range(r.first, r.last + 1)]
    return ", ".join(series_range(first, last) for first, last in _runs(sorted(indices)))


def builds_today(ranges: tuple[BuilderRange, ...]) -> str:
    """The series whose builder has the gcc they want: `4.0+`, `all`, `none`."""
    exact = [r for r in ranges if not r.substituted]
    if not exact:
        return "none"
    if len(exact) == len(ranges):
        return "all"
    return _joined(exact)


def builder_summary(ranges: tuple[BuilderRange, ...]) -> tuple[str, ...]:
    """Lines for `driverkit targets`: per suite its gccs and their series, oldest first
    (`bookworm gcc 11 (5.0-5.14), gcc 12 (5.15-6.4)`), then the wanted gccs no builder
    ships and the one standing in (`wants gcc 4.8.5 (3.10): no builder (nearest gcc 7,
    buster)`)."""
    by_suite: dict[str, dict[str, list[BuilderRange]]] = {}
    missing: dict[tuple[str, str], dict[str, list[BuilderRange]]] = {}
    for r in ranges:
        if r.substituted:
            missing.setdefault((r.suite, r.gcc), {}).setdefault(r.wanted_gcc, []).append(r)
        else:
            by_suite.setdefault(r.suite, {}).setdefault(r.gcc, []).append(r)
    lines = [
        f"{suite} "
        + ", ".join(f"gcc {gcc} ({_joined(found)})" for gcc, found in gccs.items())
        for suite, gccs in sorted(by_suite.items(), key=lambda item: _first(item[1]))
    ]
    for (suite, gcc), wanted in missing.items():
        wants = ", ".join(f"{want} ({_joined(found)})" for want, found in wanted.items())
        lines.append(f"wants gcc {wants}: no builder (nearest gcc {gcc}, {suite})")
    return tuple(lines)


def _first(gccs: dict[str, list[BuilderRange]]) -> int:
    return min(r.first for found in gccs.values() for r in found)


def target_row(target: Target) -> dict[str, Any]:
    """Everything `driverkit targets` shows of a target, as `--json` prints it."""
    ranges = builder_ranges(target)
    return {
        "target": target.name,
        "family": target.family,
        "header_format": str(target.header_format),
        "package_format": target.package_format,
        "header_source": target.header_source,
        "header_lookup": str(target.header_lookup),
        "gcc_rule": target.gcc_rule(),
        "builders": [
            {
                "kernels": r.kernels,
                "first": _series(r.first),
                "last": None if r.last == len(PROBE_SERIES) - 1 else _series(r.last),
                "wanted_gcc": r.wanted_gcc,
                "suite": r.suite,
                "gcc": r.gcc,
                "substituted": r.substituted,
            }
            for r in ranges
        ],
        "builder": list(builder_summary(ranges)),
        "builds_today": builds_today(ranges),
        "e2e_test": e2e_test(target.name),
    }


def e2e_test(name: str) -> str | None:
    """The node id of the end-to-end build test covering target `name`, if any."""
    return next((test for target, test in E2E_TESTED.items() if target == name), None)
