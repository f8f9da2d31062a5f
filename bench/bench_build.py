"""Build-service figures: per-kernel cold/warm build time, matrix wall time at -j1/-j2,
and the unchanged rerun. Prints one line per figure and the targets next to them.

    python bench/bench_build.py [--catalog kernels/debian.json] [--limit N]
                                [--driver driver] [--base-from debootstrap]

Cold = empty download cache (index, headers) and empty output, builder images present
(their one-off build time is printed when they had to be built). Warm = headers and
images cached, empty output. Needs dockerd and the Debian mirror.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

from driverkit import DRIVER_DIR, KERNELS_DIR
from driverkit.artifacts import RTCAP_PROBE, ProbeSpec
from driverkit.build import BuildSummary, run_builds
from driverkit.catalog import load_catalog
from driverkit.config import load_config, resolve_plan
from driverkit.containers import docker_engine
from driverkit.images import ensure_plan_image
from driverkit.options import BuildConfig
from driverkit.plan import BuildPlan

FIXTURE_DRIVER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "build" / "driver"


def _line(name: str, seconds: float, target: str = "", extra: str = "") -> None:
    mark = ""
    if target:
        limit = float(target.rstrip("s"))
        mark = f"  target < {target}: {'OK' if seconds < limit else 'MISSED'}"
    print(f"{name:<46} {seconds:8.1f} s{mark}{('  ' + extra) if extra else ''}", flush=True)


def _run(plans: list[BuildPlan], opts: BuildConfig) -> tuple[float, BuildSummary]:
    started = time.monotonic()
    summary = run_builds(plans, opts)
    wall = time.monotonic() - started
    if summary.failed:
        for outcome in summary.failed:
            print(f"  FAILED {outcome.name}: {outcome.error.splitlines()[0]}", file=sys.stderr)
    return wall, summary


def _counts(summary: BuildSummary) -> str:
    return f"built {len(summary.built)} skipped {len(summary.skipped)} failed {len(summary.failed)}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog", type=Path, default=KERNELS_DIR / "debian.json")
    parser.add_argument("--limit", type=int, default=0, help="use the first N kernels only")
    parser.add_argument("--driver", type=Path, default=DRIVER_DIR)
    parser.add_argument("--fixture", action="store_true", help="build the small test fixture")
    parser.add_argument("--base-from", default="debootstrap", choices=("registry", "debootstrap"))
    parser.add_argument("--skip-j1", action="store_true", help="skip the -j1 matrix run")
    args = parser.parse_args()

    snapshot = Path(tempfile.mkdtemp(prefix="dk-bench-driver-"))
    driver, probe = (
        (FIXTURE_DRIVER, ProbeSpec(("dk_sys_enter",), ("dk_counts",)))
        if args.fixture
        else (args.driver, RTCAP_PROBE)
    )
    # A frozen copy: edits to driver/ during the bench would otherwise (rightly) make
    # every run rebuild everything, and the rerun figure would mean nothing.
    shutil.copytree(
        driver, snapshot / "driver", ignore=shutil.ignore_patterns("build", "*.o", "*.ko")
    )
    driver = snapshot / "driver"
    # The shared cache is the config's default one (DK_CACHE or ~/.cache/driverkit).
    cfg = load_config({"base_from": args.base_from, "processor": "docker", "timeout": 900})
    base = dataclasses.replace(cfg, driver_dir=driver, probe_spec=probe, show_progress=False)
    entries = load_catalog(args.catalog, cfg.mirrors)
    if args.limit:
        entries = entries[: args.limit]
    plans = [
        resolve_plan(
            e.kernelrelease,
            cfg,
            target=e.target,
            kernel_version=e.kernelversion,
            kernel_urls=e.headers,
        )
        for e in entries
    ]
    from driverkit.build import split_collisions

    _kept, collisions = split_collisions(plans)
    if collisions:
        print(
            f"{len(collisions)} kernels share an artifact name with another kernel and fail "
            "up front in every run (target naming), e.g.:\n  " + collisions[0].error
        )
    print(f"{len(plans)} kernels from {args.catalog}, driver {driver}, base {args.base_from}")

    started = time.monotonic()
    built_any = False
    by_image = {p.builder_image: p for p in plans}
    with docker_engine() as engine:
        for tag, plan in sorted(by_image.items(), key=lambda item: item[1].builder.distro_release):
            t0 = time.monotonic()
            existed = engine.image_exists(tag)
            ensure_plan_image(engine, plan, cfg.mirrors, cfg.cache_dir)
            if not existed:
                built_any = True
                _line(f"builder image {tag.split(':')[0]} (one-off)", time.monotonic() - t0)
    if not built_any:
        _line("builder images (all cached)", time.monotonic() - started)

    one = plans[:1]
    with tempfile.TemporaryDirectory(prefix="dk-bench-") as tmp_root:
        tmp = Path(tmp_root)
        # Cold: fresh download cache, so the index and the headers are fetched again.
        cold = dataclasses.replace(
            base, output=tmp / "cold", cache_dir=tmp / "cache", build_core=False
        )
        wall, summary = _run(one, cold)
        _line(f"cold build {one[0].artifact_stem()}", wall, extra=_counts(summary))
        warm = dataclasses.replace(base, output=tmp / "warm", build_core=False)
        _run(one, dataclasses.replace(warm, output=tmp / "prime"))  # headers into shared cache
        wall, summary = _run(one, warm)
        _line("warm build, one kernel (module + probe)", wall, "15s", _counts(summary))

        # Matrix: headers prefetched by the -j1 run (or here, when -j1 is skipped).
        if not args.skip_j1:
            wall, summary = _run(plans, dataclasses.replace(base, output=tmp / "j1", jobs=1))
            _line(f"matrix -j1 ({len(plans)} kernels + CO-RE)", wall, extra=_counts(summary))
        wall, summary = _run(plans, dataclasses.replace(base, output=tmp / "j2", jobs=2))
        _line(f"matrix -j2 ({len(plans)} kernels + CO-RE)", wall, "360s", _counts(summary))
        built = sorted(o.duration_s for o in summary.built)
        if built:
            _line("  per-kernel build at -j2, median", built[len(built) // 2])
        wall, summary = _run(plans, dataclasses.replace(base, output=tmp / "j2", jobs=2))
        _line("matrix unchanged rerun -j2", wall, "10s", _counts(summary))
    shutil.rmtree(snapshot, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
