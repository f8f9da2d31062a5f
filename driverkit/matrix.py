"""The build matrix: catalog x driver versions x arches, minus what the repository holds.

Pure: the caller passes resolved plans and what each repository folder already lists, so
the planner tests offline. Its outputs are what Falco's build grid works from: one
driverkit config YAML per kernel, and a GitHub Actions matrix cut into shards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drivercore.errors import UsageError
from drivercore.naming import core_probe_file, repo_arch
from driverkit.cache import atomic_write_bytes
from driverkit.plan import BuildPlan

MAX_SHARDS = 256  # GitHub Actions runs at most 256 jobs from one matrix


@dataclass(frozen=True)
class MatrixJob:
    """One kernel to build for one driver version and arch, and the files it lacks."""

    plan: BuildPlan
    missing: tuple[str, ...]

    @property
    def stem(self) -> str:
        return self.plan.artifact_stem()

    @property
    def folder(self) -> str:
        return f"{self.plan.driver_version}/{repo_arch(self.plan.arch)}"


@dataclass(frozen=True)
class MatrixPlan:
    jobs: tuple[MatrixJob, ...]
    # Folders (version/arch) whose CO-RE probe is missing: built once each, not per kernel.
    core_missing: tuple[str, ...]
    considered: int  # kernel x version x arch combinations looked at

    @property
    def empty(self) -> bool:
        return not self.jobs and not self.core_missing


def plan_missing(
    plans: Iterable[BuildPlan],
    present: Callable[[str, str], frozenset[str]],
) -> MatrixPlan:
    """Jobs for every plan that lacks an artifact in its folder. `present(version, arch)`
    returns the file names the repository's verified index lists there."""
    jobs: list[MatrixJob] = []
    core_missing: list[str] = []
    considered = 0
    seen_folders: set[tuple[str, str]] = set()
    for plan in plans:
        considered += 1
        listed = present(plan.driver_version, repo_arch(plan.arch))
        missing = tuple(n for n in plan.artifact_names() if n not in listed)
        if missing:
            jobs.append(MatrixJob(plan, missing))
        folder = (plan.driver_version, repo_arch(plan.arch))
        # A folder's CO-RE probe is wanted where its kernels get probes at all.
        if folder not in seen_folders and plan.build_probe:
            seen_folders.add(folder)
            if core_probe_file(plan.driver_name) not in listed:
                core_missing.append("/".join(folder))
    return MatrixPlan(tuple(jobs), tuple(core_missing), considered)


def shard(jobs: Sequence[MatrixJob], count: int) -> list[list[MatrixJob]]:
    """`count` shards of near-equal size, each holding whole kernels; deterministic, so a
    re-planned matrix gives every runner the same work. Empty shards are dropped."""
    if not 1 <= count <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 1 and {MAX_SHARDS}, got {count}")
    shards: list[list[MatrixJob]] = [[] for _ in range(count)]
    for n, job in enumerate(sorted(jobs, key=lambda j: (j.folder, j.stem))):
        shards[n % count].append(job)
    return [s for s in shards if s]


def driverkit_config(job: MatrixJob) -> dict[str, Any]:
    """A driverkit config file for one kernel, in the keys driverkit (and our `-c`) read."""
    plan = job.plan
    output: dict[str, str] = {}
    if plan.kmod_name in job.missing:
        output["module"] = f"output/{job.folder}/{plan.kmod_name}"
    if plan.probe_name in job.missing:
        output["probe"] = f"output/{job.folder}/{plan.probe_name}"
    return {
        "kernelrelease": str(plan.kernel),
        "kernelversion": plan.kernel_version,
        "target": plan.target,
        "architecture": plan.arch,
        "driverversion": plan.driver_version,
        "drivername": plan.driver_name,
        "output": output,
    }


def config_path(job: MatrixJob) -> str:
    """Where a job's config goes below the plan directory (relative, '/'-separated)."""
    return f"config/{job.folder}/{job.stem}.yaml"


def github_matrix(shards: Sequence[Sequence[MatrixJob]], core_missing: Sequence[str]
                  ) -> dict[str, Any]:
    """`strategy.matrix` for GitHub Actions: one entry per shard, naming its config files.
    Shard 0 also builds the CO-RE probes that are missing."""
    include = [
        {
            "shard": n,
            "configs": " ".join(config_path(job) for job in jobs),
            "kernels": len(jobs),
            "core": n == 0 and bool(core_missing),
        }
        for n, jobs in enumerate(shards)
    ]
    if not include and core_missing:
        include = [{"shard": 0, "configs": "", "kernels": 0, "core": True}]
    return {"include": include}


def write_plan(out_dir: Path, matrix: MatrixPlan, shard_count: int) -> dict[str, Any]:
    """Write every job's config YAML and `matrix.json`; returns the matrix."""
    shards = shard(matrix.jobs, shard_count)
    for job in matrix.jobs:
        path = out_dir / config_path(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, yaml.safe_dump(driverkit_config(job), sort_keys=True).encode())
    result = github_matrix(shards, matrix.core_missing)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "matrix.json", (json.dumps(result, indent=1) + "\n").encode())
    return result


def summary_lines(matrix: MatrixPlan) -> list[str]:
    by_folder: dict[str, int] = {}
    for job in matrix.jobs:
        by_folder[job.folder] = by_folder.get(job.folder, 0) + 1
    lines = [
        f"{matrix.considered} kernel builds considered, {len(matrix.jobs)} missing"
        + (f", CO-RE probe missing in {', '.join(matrix.core_missing)}" if matrix.core_missing
           else "")
    ]
    lines += [f"  {folder}: {count} kernels" for folder, count in sorted(by_folder.items())]
    return lines


def present_from_indexes(listed: Mapping[tuple[str, str], frozenset[str]]
                         ) -> Callable[[str, str], frozenset[str]]:
    return lambda version, arch: listed.get((version, arch), frozenset())
