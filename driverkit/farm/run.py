"""`driverkit matrix run --engine swarm`: plan what is missing, run it on the cluster,
report from the repository and the engine's task states.

The report never trusts the tasks' word alone: what was built is what the repository's
signed index lists afterwards; how a shard ended is the engine's task state; the task
logs only add each failing kernel's compiler error lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from drivercore import repoindex
from driverkit.errors import ToolError, UsageError
from driverkit.farm.plan import FarmPlan, farm_plan, shard_summary, waves_deadline_s

if TYPE_CHECKING:
    from driverkit.catalog import CatalogEntry
    from driverkit.farm.swarm import Failure, ShardState
    from driverkit.matrix import MatrixPlan
    from driverkit.options import BuildConfig
    from driverkit.plan import BuildPlan

SIGNING_KEY_MAX_BYTES = 64 * 1024
# Slack on top of the builds' own timeouts: image pulls, scheduling, restarts.
DEADLINE_SLACK_S = 600


def task_options(cfg: BuildConfig, public_key: str) -> dict[str, Any]:
    """What travels to the tasks, keyed as the option table names it."""
    assert cfg.repo is not None
    return {
        "repo": cfg.repo,
        "public_key": public_key,
        "driver_name": cfg.driver_name,
        "build_kmod": cfg.build_kmod,
        "build_probe": cfg.build_probe,
        "debian_mirror": cfg.mirrors.debian,
        "debian_security_mirror": cfg.mirrors.debian_security,
        "timeout": cfg.timeout,
    }


def plan_farm(cfg: BuildConfig, repo: str,
              entries: Sequence[tuple[CatalogEntry, BuildPlan]]
              ) -> tuple[MatrixPlan, FarmPlan | None]:
    """What `repo` lacks of the catalog (its summary lines printed) and the farm plan of
    it, None when nothing is missing: the first step of a Swarm run and of `matrix k8s`."""
    from driverkit.farm.images import farm_image_ref
    from driverkit.matrix import summary_lines
    from driverkit.publish.backends import open_backend
    from driverkit.publish.cli import missing_builds, public_key_of

    require_shared_repo(repo)
    plans = [plan for _, plan in entries]
    with open_backend(repo) as backend:
        missing = missing_builds(cfg, plans, backend)
    for line in summary_lines(missing):
        click.echo(line)
    if missing.empty:
        return missing, None
    plan = farm_plan(
        missing, {plan: entry for entry, plan in entries},
        lambda p: farm_image_ref(p, cfg.registry),
        task_options(cfg, repoindex.public_key_text(public_key_of(cfg))), cfg.kernels_per_task,
    )
    return missing, plan


@dataclass(frozen=True)
class FarmReport:
    built: int
    failed: tuple[str, ...]  # lines, one per kernel that is still missing
    shards: tuple[str, ...]  # lines, one per shard: its engine state and attempts

    @property
    def ok(self) -> bool:
        return not self.failed


def farm_report(
    plan: FarmPlan,
    before: MatrixPlan,
    after: MatrixPlan,
    states: Sequence[ShardState],
    failures: Sequence[Failure],
) -> FarmReport:
    """Pure: the repository before and after (as matrix plans of what is missing), the
    engine's final state per shard and the failure lines the tasks printed."""
    still = {(job.plan.driver_version, job.plan.arch, str(job.plan.kernel)): job
             for job in after.jobs}
    built = len(before.jobs) - len(after.jobs)
    by_shard = {s.shard: s for s in states}
    errors: dict[tuple[int, str], Failure] = {}
    for failure in failures:
        errors[(failure.shard, failure.kernel)] = failure
    failed: list[str] = []
    shard_lines: list[str] = []
    for shard in plan.shards:
        state = by_shard.get(shard.index)
        where = (f"shard {shard.index}: {state.state} after {state.attempts} attempt"
                 f"{'s' if state.attempts != 1 else ''}"
                 + (f" on node {state.node[:12]}" if state.node else "") if state else
                 f"shard {shard.index}: no task state")
        if state and state.state != "complete" and state.message:
            where += f" ({state.message})"
        shard_lines.append(where)
        for kernel in shard.kernels:
            key = (shard.driver_version, shard.arch, kernel.kernelrelease)
            if key not in still:
                continue
            stem = still[key].stem
            reported = [f for (n, name), f in errors.items() if n == shard.index and name == stem]
            if reported:
                lines = reported[-1].errors or ("failed",)
                failed.append(f"{stem} ({shard.folder}): " + "\n    ".join(lines))
            else:
                failed.append(f"{stem} ({shard.folder}): not in the repository; {where}")
        if shard.core and shard.folder in after.core_missing:
            failed.append(f"CO-RE probe ({shard.folder}): not in the repository; {where}")
    return FarmReport(built, tuple(failed), tuple(shard_lines))


def require_shared_repo(repo: str) -> None:
    if not repo.startswith(("http://", "https://", "s3://")):
        raise UsageError(
            f"--repo {repo}: farm tasks publish from their own nodes, which cannot write "
            "this machine's directories; use a WebDAV (http[s]://) or S3 (s3://) repository"
        )


def progress_line(states: Sequence[ShardState]) -> str:
    """One line of how the shards stand: a long run shows it is moving, and where."""
    counts: dict[str, int] = {}
    retried = sum(1 for s in states if s.attempts > 1)
    for state in states:
        key = state.state if state.state in ("complete", "running", "failed") else "waiting"
        counts[key] = counts.get(key, 0) + 1
    parts = [f"{counts[k]} {k}" for k in ("complete", "running", "waiting", "failed")
             if counts.get(k)]
    return f"{', '.join(parts)} of {len(states)} shards" + (
        f" ({retried} retried)" if retried else "")


def _progress(started: float) -> Callable[[Sequence[ShardState]], None]:
    def show(states: Sequence[ShardState]) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f} s] {progress_line(states)}")

    return show


def _key_bytes(cfg: BuildConfig) -> bytes:
    assert cfg.signing_key is not None
    try:
        with cfg.signing_key.open("rb") as fh:
            data = fh.read(SIGNING_KEY_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--signing-key {cfg.signing_key}: cannot read it ({exc.strerror})"
                         ) from None
    return data


def run_on_swarm(cfg: BuildConfig, repo: str,
                 entries: Sequence[tuple[CatalogEntry, BuildPlan]]) -> None:
    from driverkit.farm.swarm import RunSpec, SwarmEngine
    from driverkit.publish.backends import open_backend
    from driverkit.publish.cli import missing_builds

    started = time.monotonic()
    before, plan = plan_farm(cfg, repo, entries)
    if plan is None:
        click.echo(f"nothing to build: {repo} has every artifact "
                   f"({time.monotonic() - started:.1f} s)")
        return
    # Jobs run side by side, but the bound takes their shards as one queue: generous.
    deadline = waves_deadline_s(len(plan.shards), cfg.max_concurrent, timeout_s=cfg.timeout,
                                kernels_per_task=cfg.kernels_per_task, retries=cfg.retries,
                                slack_s=DEADLINE_SLACK_S)
    spec = RunSpec(cfg.cache_dir, _key_bytes(cfg), cfg.max_concurrent, cfg.retries,
                   float(deadline))
    jobs = len(plan.groups())
    click.echo(f"{len(plan.shards)} shards in {jobs} swarm job{'s' if jobs != 1 else ''} "
               f"(at most {cfg.max_concurrent} tasks at once per job, {cfg.retries} retries)")
    for line in shard_summary(plan.shards):
        click.echo(line)
    with SwarmEngine.connect() as engine:
        if cfg.registry is None:
            engine.require_images([g.image for g in plan.groups()])
        with engine.submit(plan, spec) as run:
            states = run.wait(_progress(started))
            failures = run.failures()
    with open_backend(repo) as backend:
        after = missing_builds(cfg, [p for _, p in entries], backend)
    report = farm_report(plan, before, after, states, failures)
    for line in report.shards:
        click.echo(line)
    click.echo(f"built and published {report.built} of {len(before.jobs)} missing kernels "
               f"({time.monotonic() - started:.1f} s)")
    if not report.ok:
        for line in report.failed:
            click.echo(f"failed: {line}", err=True)
        count = len(report.failed)
        raise ToolError(f"{count} build{'s are' if count != 1 else ' is'} still missing "
                        f"from {repo}")
