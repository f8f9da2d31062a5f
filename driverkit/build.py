"""Build orchestration: many kernels, one driver, validated artifacts.

API (used by driverkit.cli):
    run_builds(plans, cfg: BuildConfig) -> BuildSummary  parallel with cfg.jobs threads;
        the config (driverkit.options) carries output, processor, timeout, cache_dir, the
        resolved mirrors, driver_dir, probe_spec, build_core, make_jobs, show_progress;
        each plan carries its own builder image and base_from
    BuildSummary.built / .skipped / .failed             lists of KernelOutcome
    BuildSummary.artifact_paths() -> {file name: Path}  every artifact of this run
    KernelOutcome(plan, status "built"|"skipped"|"failed", error, duration_s, artifacts)
Elsewhere:
    render.render_dockerfile(spec, base_from) / render.render_build_script(plan)   dry run
    images.builder_image_tag(spec, base_from) (pure, called by resolve_plan only),
        ensure_plan_image(engine, plan, mirrors, cache_dir), list_images(engine) -> [line],
        prune_images(engine)
    containers.docker_engine() -> context manager yielding a pinged DockerEngine
    headers.check_headers(plan, mirrors, cache_dir) -> [URL]     `resolve --check`
    catalog.load_catalog(path) -> [CatalogEntry(kernelrelease, kernelversion, target,
        headers)]; `python -m driverkit.catalog crawl-debian` rewrites kernels/debian.json

Per kernel: input hash (plan + driver tree + script + builder) -> skip when the
manifest on disk has the same hash and its files are intact; else resolve headers
(cache), run the processor, validate each file with pyelftools, publish atomically,
write the manifest last. The CO-RE probe (`rtcap_core.o`) is built once per driver
version the same way. Output layout: `<output>/<driver-version>/<arch>/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driverkit.artifacts import (
    MANIFEST_FORMAT,
    hash_tree,
    input_hash,
    output_dir,
    publish,
    up_to_date,
    validate_kmod,
    validate_probe,
    write_manifest,
)
from driverkit.cache import DownloadCache
from driverkit.debarchive import DebianArchive
from driverkit.errors import ArtifactValidationError, ToolError
from driverkit.headers import HeaderResolver, ResolvedHeaders
from driverkit.netroutes import repository_session
from driverkit.options import BuildConfig
from driverkit.plan import BuildPlan, core_probe_name
from driverkit.processors.base import BuildJob, Processor, warning_lines
from driverkit.render import render_build_script
from driverkit.targets.base import BuilderSpec
from driverkit.verifier import verify_on_host

log = logging.getLogger(__name__)

# The CO-RE probe does not depend on a kernel; one fixed builder keeps its input hash
# independent of which kernels a run happens to include.
CORE_BUILDER = BuilderSpec("debian:bookworm", "bookworm", "12")


@dataclass
class KernelOutcome:
    plan: BuildPlan
    status: str  # "built" | "skipped" | "failed"
    error: str = ""
    duration_s: float = 0.0
    artifacts: dict[str, Path] = field(default_factory=dict)
    label: str = ""
    cause: ToolError | None = None  # the typed error of a failed build (its exit code)

    @property
    def name(self) -> str:
        return self.label or self.plan.artifact_stem()


@dataclass
class BuildSummary:
    outcomes: list[KernelOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    def _with(self, status: str) -> list[KernelOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def built(self) -> list[KernelOutcome]:
        return self._with("built")

    @property
    def skipped(self) -> list[KernelOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[KernelOutcome]:
        return self._with("failed")

    def artifact_paths(self) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for outcome in self.outcomes:
            paths.update(outcome.artifacts)
        return paths


class _Context:
    """Shared per-run state: processor, header resolver, and the driver tree hash."""

    def __init__(self, cfg: BuildConfig, processor: Processor):
        self.cfg = cfg
        self.processor = processor
        session = repository_session(cfg.mirrors)
        cache = DownloadCache(cfg.cache_dir, session)
        archive = DebianArchive(cfg.mirrors, cache) if cfg.mirrors.debian else None
        self.headers = HeaderResolver(cache, archive, session)
        self.driver_hash = hash_tree(cfg.driver_dir)
        self.cancelled = threading.Event()


def _inputs(plan: BuildPlan, script: str, ctx: _Context, kind: str) -> dict[str, Any]:
    # The CO-RE probe depends on no kernel: leaving the kernel of the plan it came from
    # out of its inputs keeps one build serving every kernel build into the same output.
    kernel = kind == "kernel"
    return {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "kernel_release": str(plan.kernel) if kernel else "",
        "kernel_version": plan.kernel_version if kernel else "",
        "arch": plan.arch,
        "target": plan.target if kernel else "",
        "artifact": dataclasses.asdict(plan.artifact) if kernel else {},
        "gcc": plan.gcc,
        "builder": dataclasses.asdict(plan.builder),
        "environment": ctx.processor.environment_ref(plan),
        "header_candidates": list(plan.headers) if kind == "kernel" else [],
        "driver_name": plan.driver_name,
        "driver_version": plan.driver_version,
        "driver_tree_sha256": ctx.driver_hash,
        "script_sha256": hashlib.sha256(script.encode()).hexdigest(),
        "probe_spec": dataclasses.asdict(ctx.cfg.probe_spec),
    }


def _validate(name: str, path: Path, plan: BuildPlan, ctx: _Context) -> dict[str, Any]:
    if name.endswith(".ko"):
        info = validate_kmod(path, str(plan.kernel), plan.arch)
        return {"vermagic": info.get("vermagic", ""), "modinfo_name": info.get("name", "")}
    contents = validate_probe(path, ctx.cfg.probe_spec)
    return {
        "license": contents.license,
        "programs": list(contents.programs),
        "maps": list(contents.maps),
        "host_verifier": verify_on_host(path, plan.arch),
    }


def _build(plan: BuildPlan, ctx: _Context, *, kind: str) -> KernelOutcome:
    """Build one kernel (kind="kernel") or the CO-RE probe (kind="core")."""
    started = time.monotonic()
    out_dir = output_dir(ctx.cfg.output, plan)
    names: tuple[str, ...]
    if kind == "core":
        names = (core_probe_name(plan.driver_name),)
        manifest = core_probe_name(plan.driver_name).removesuffix(".o") + ".json"
        script = render_build_script(plan, build_core=True)
    else:
        names = plan.artifact_names()
        manifest = plan.artifact_stem() + ".json"
        script = render_build_script(plan)
    inputs = _inputs(plan, script, ctx, kind)
    wanted = input_hash(inputs)
    label = names[0] if kind == "core" else plan.artifact_stem()

    def outcome(status: str) -> KernelOutcome:
        return KernelOutcome(
            plan,
            status,
            duration_s=time.monotonic() - started,
            artifacts={n: out_dir / n for n in names},
            label=label,
        )

    if up_to_date(out_dir, manifest, wanted):
        log.debug("%s: inputs and artifacts unchanged in %s", label, out_dir)
        return outcome("skipped")
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    headers: ResolvedHeaders | None = None
    if kind == "kernel":
        plan.require_kernel_config()  # before any download
        headers = ctx.headers.resolve(plan)
        log.debug("%s: headers in %s", label, headers.kernel_dir)
    timings["headers_s"] = round(time.monotonic() - t0, 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as tmp:
        result = ctx.processor.run(BuildJob(plan, script, headers, Path(tmp), ctx.cfg.timeout))
        timings["build_s"] = round(result.duration_s, 3)
        files: dict[str, Path] = {}
        checks: dict[str, Any] = {}
        for name in names:
            produced = result.out_dir / name
            if not produced.is_file():
                raise ArtifactValidationError(f"the build script did not produce {name}")
            checks[name] = _validate(name, produced, plan, ctx)
            files[name] = produced
        toolchain_file = result.out_dir / ".toolchain"
        toolchain = toolchain_file.read_text().splitlines() if toolchain_file.is_file() else []
        published = publish(files, out_dir)
    for name, meta in published.items():
        meta.update(checks[name])
    timings["total_s"] = round(time.monotonic() - started, 3)
    write_manifest(
        out_dir / manifest,
        {
            "input_hash": wanted,
            "inputs": inputs,
            "processor": ctx.processor.name,
            "gcc": plan.gcc,
            "toolchain": toolchain,
            "warnings": warning_lines(result.logs),
            "image": result.image,
            "image_id": result.image_id,
            "headers": [dataclasses.asdict(p) for p in headers.packages] if headers else [],
            "artifacts": published,
            "timings": timings,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return outcome("built")


def _safe_build(plan: BuildPlan, ctx: _Context, kind: str) -> KernelOutcome:
    if ctx.cancelled.is_set():
        return KernelOutcome(plan, "failed", error="cancelled", label=plan.artifact_stem())
    started = time.monotonic()
    try:
        return _build(plan, ctx, kind=kind)
    except ToolError as exc:
        label = core_probe_name(plan.driver_name) if kind == "core" else plan.artifact_stem()
        return KernelOutcome(
            plan, "failed", error=str(exc), duration_s=time.monotonic() - started,
            label=label, cause=exc,
        )  # fmt: skip


def core_plan(plan: BuildPlan) -> BuildPlan:
    """The plan the CO-RE probe is built from: only driver name/version/arch matter.

    It is a plan of its own (fixed builder, no kernel), so its image tag is resolved
    here, once, for the base_from of the kernel plan it derives from.
    """
    from driverkit.images import builder_image_tag

    return dataclasses.replace(
        plan,
        build_kmod=False,
        build_probe=False,
        builder=CORE_BUILDER,
        gcc=CORE_BUILDER.gcc,
        builder_image=builder_image_tag(CORE_BUILDER, plan.base_from),
        builder_image_forced=False,
        headers=(),
    )


@contextlib.contextmanager
def _processor(cfg: BuildConfig) -> Iterator[Processor]:
    if cfg.processor == "local":
        from driverkit.processors.local import LocalProcessor

        yield LocalProcessor(cfg.driver_dir, cfg.make_jobs)
        return
    from driverkit.containers import docker_engine
    from driverkit.processors.docker import DockerProcessor

    with docker_engine() as engine:
        yield DockerProcessor(
            engine,
            cfg.driver_dir,
            mirrors=cfg.mirrors,
            cache_dir=cfg.cache_dir,
            make_jobs=cfg.make_jobs,
        )


def split_collisions(plans: Sequence[BuildPlan]) -> tuple[list[BuildPlan], list[KernelOutcome]]:
    """Keep one plan per artifact name; the others fail up front.

    Two different kernels that a target's naming maps to one file name (Debian's
    fix-up turns both 6.12.107-1~deb12u1 and 6.12.107-1 into `6.12.107-1-amd64`) would
    overwrite each other's artifacts and rebuild each other forever; a loader could
    then fetch a module built for the other kernel. Identical plans are deduplicated.
    """
    first: dict[str, BuildPlan] = {}
    kept: list[BuildPlan] = []
    failed: list[KernelOutcome] = []
    for plan in plans:
        stem = plan.artifact_stem()
        seen = first.get(stem)
        if seen is None:
            first[stem] = plan
            kept.append(plan)
        elif seen != plan:
            failed.append(
                KernelOutcome(
                    plan,
                    "failed",
                    label=f"{stem} ({plan.kernel})",
                    error=(
                        f"artifact name {stem} is also the name for kernel {seen.kernel} "
                        f"({seen.kernel_version!r}); kernel {plan.kernel} "
                        f"({plan.kernel_version!r}) would overwrite it: the target's artifact "
                        "naming must tell them apart"
                    ),
                )
            )
    return kept, failed


def _log_outcome(outcome: KernelOutcome) -> None:
    # `status` lets a terminal handler (the CLI's) colour the line's first word.
    log.log(
        logging.WARNING if outcome.status == "failed" else logging.INFO,
        "%s %s (%.1f s)",
        outcome.status,
        outcome.name,
        outcome.duration_s,
        extra={"status": outcome.status},
    )


def run_builds(
    plans: Sequence[BuildPlan], cfg: BuildConfig, *, kernels: bool = True
) -> BuildSummary:
    """Build every plan (and the CO-RE probe once), in parallel; never raises for one
    kernel's failure: failures are in the summary. Ctrl-C removes live containers.
    `kernels=False` builds only the CO-RE probe of the plans' driver version and arch.

    Each finished kernel is logged (logger `driverkit.build`); `cfg.show_progress` adds a
    progress bar (at log level info or lower) and the summary table on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.monotonic()
    summary = BuildSummary()
    console = Console(stderr=True)
    plans, collisions = split_collisions(plans)
    summary.outcomes.extend(collisions)
    jobs: list[tuple[BuildPlan, str]] = [(p, "kernel") for p in plans] if kernels else []
    if (cfg.build_core or not kernels) and plans and plans[0].build_probe:
        jobs.insert(0, (core_plan(plans[0]), "core"))
    with _processor(cfg) as processor:
        ctx = _Context(cfg, processor)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not (cfg.show_progress and cfg.log_level <= logging.INFO),
            transient=True,
        )
        with progress, ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
            task = progress.add_task("building", total=len(jobs))
            futures = {pool.submit(_safe_build, plan, ctx, kind): plan for plan, kind in jobs}
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    summary.outcomes.append(outcome)
                    progress.advance(task)
                    _log_outcome(outcome)
            except KeyboardInterrupt:
                # Queued builds never start; running ones lose their container or
                # process group, so the pool's shutdown returns promptly. Artifacts are
                # only ever renamed into place, so nothing partial is left behind.
                ctx.cancelled.set()
                pool.shutdown(wait=False, cancel_futures=True)
                processor.cancel_all()
                raise
    summary.wall_s = time.monotonic() - started
    if cfg.show_progress:
        print_summary(summary, console)
    return summary


def _headline(error: str) -> str:
    """The line of an error worth a table cell: the first compiler error if there is one."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    for line in lines[1:]:
        if "error:" in line or "not found" in line:
            return line
    return lines[0] if lines else ""


def print_summary(summary: BuildSummary, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("artifact", "status", "time", "error", title="driverkit build")
    order = {"failed": 0, "built": 1, "skipped": 2}
    for o in sorted(summary.outcomes, key=lambda o: (order.get(o.status, 3), o.name)):
        colour = {"built": "green", "skipped": "blue"}.get(o.status, "red")
        first_error = _headline(o.error)
        table.add_row(
            escape(o.name), f"[{colour}]{o.status}[/]", f"{o.duration_s:.1f} s", escape(first_error)
        )
    console.print(table)
    console.print(
        f"built {len(summary.built)}, skipped {len(summary.skipped)}, failed {len(summary.failed)} "
        f"in {summary.wall_s:.1f} s"
    )
    for o in summary.failed:
        console.print(f"[red]{escape(o.name)}[/]: {escape(o.error)}")
