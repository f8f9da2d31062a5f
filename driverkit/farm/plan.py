"""The farm plan: the missing builds cut into shards, as the cluster engine runs them.

Pure: made from the matrix's missing jobs and written as one JSON document that travels
to every task (a Docker Swarm config, a Kubernetes ConfigMap). A task picks its shard by
index and runs `driverkit matrix task`, which re-reads the document with `load_plan`: the
document crosses a trust boundary (it is mounted into containers on other machines), so
every value goes back through the option table's and the catalog's own checks.

Shards never mix images: an engine's job (a swarm service, a Kubernetes Job) runs one
image, so the shards of one builder image have contiguous indices and a job is told its
offset. Nor do they mix driver version and arch, so a task publishes into one folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from drivercore.errors import UsageError
from drivercore.naming import repo_arch
from driverkit.catalog import CatalogEntry, entry_from_json
from driverkit.matrix import MAX_SHARDS, MatrixPlan
from driverkit.plan import BuildPlan
from driverkit.valuerules import DRIVER_VERSION, IMAGE_REFERENCE, TextRule, shown

PLAN_FORMAT: Final = "driverkit-farm-plan/1"
# A Swarm config holds at most 500 KiB; a plan of the whole Debian catalog is ~60 KiB.
PLAN_MAX_BYTES: Final = 500 * 1024
MAX_KERNELS_PER_TASK: Final = 1000
# The options a task takes from the plan, as the option table names them: the run's
# choices that change what is built or where it goes. Anything else in a plan is refused.
TASK_OPTIONS: Final = (
    "repo",
    "public_key",
    "driver_name",
    "build_kmod",
    "build_probe",
    "debian_mirror",
    "debian_security_mirror",
    "timeout",
)


@dataclass(frozen=True)
class FarmShard:
    index: int
    image: str  # the farm image the task runs (its suite's builder plus driverkit)
    driver_version: str
    arch: str  # amd64 | arm64
    # This shard also builds the folder's CO-RE probe when the repository lacks it: one
    # shard per folder does, so two tasks never publish two builds of one file.
    core: bool
    kernels: tuple[CatalogEntry, ...]

    @property
    def folder(self) -> str:
        return f"{self.driver_version}/{repo_arch(self.arch)}"

    def names(self) -> list[str]:
        return [k.kernelrelease for k in self.kernels] + (["CO-RE probe"] if self.core else [])


@dataclass(frozen=True)
class ImageGroup:
    """The shards one engine job runs: one image, indices offset .. offset+count-1."""

    image: str
    offset: int
    count: int


@dataclass(frozen=True)
class FarmPlan:
    options: Mapping[str, Any]  # TASK_OPTIONS only, as the option table takes them
    shards: tuple[FarmShard, ...]

    def groups(self) -> list[ImageGroup]:
        groups: list[ImageGroup] = []
        for shard in self.shards:
            if groups and groups[-1].image == shard.image:
                last = groups[-1]
                groups[-1] = ImageGroup(last.image, last.offset, last.count + 1)
            else:
                groups.append(ImageGroup(shard.image, shard.index, 1))
        return groups

    def shard(self, index: int) -> FarmShard:
        if not 0 <= index < len(self.shards):
            raise UsageError(
                f"shard {index} is not in this plan (it has shards 0..{len(self.shards) - 1})"
            )
        return self.shards[index]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "options": dict(self.options),
            "shards": [
                {
                    "index": s.index,
                    "image": s.image,
                    "driverversion": s.driver_version,
                    "architecture": s.arch,
                    "core": s.core,
                    "kernels": [k.to_json() for k in s.kernels],
                }
                for s in self.shards
            ],
        }

    def to_bytes(self) -> bytes:
        data = (json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n").encode()
        if len(data) > PLAN_MAX_BYTES:
            raise UsageError(
                f"the farm plan is {len(data)} bytes, over the {PLAN_MAX_BYTES} a Swarm "
                "config holds: pass more --kernels-per-task or fewer --driver-version"
            )
        return data


def farm_plan(
    matrix: MatrixPlan,
    entries: Mapping[BuildPlan, CatalogEntry],
    image_of: Callable[[BuildPlan], str],
    options: Mapping[str, Any],
    kernels_per_task: int = 1,
) -> FarmPlan:
    """Shards of at most `kernels_per_task` kernels, grouped by image then folder, in a
    stable order (a re-plan gives every index the same work). `entries` maps each plan
    back to the catalog entry it came from, so a task resolves exactly what was planned.
    """
    if not 1 <= kernels_per_task <= MAX_KERNELS_PER_TASK:
        raise UsageError(
            f"--kernels-per-task must be between 1 and {MAX_KERNELS_PER_TASK}, "
            f"got {kernels_per_task}"
        )
    unknown = sorted(set(options) - set(TASK_OPTIONS))
    if unknown:
        raise UsageError(f"farm plan: options {', '.join(unknown)} do not travel to tasks")
    buckets: dict[tuple[str, str, str], list[BuildPlan]] = {}
    for job in matrix.jobs:
        key = (image_of(job.plan), job.plan.driver_version, job.plan.arch)
        buckets.setdefault(key, []).append(job.plan)
    # A folder whose kernels are all present still needs its CO-RE probe built somewhere.
    for folder in matrix.core_missing:
        version, _, arch_dir = folder.partition("/")
        if not any(v == version and repo_arch(a) == arch_dir for _, v, a in buckets):
            # One present kernel carries the folder's plan; the task finds it built and
            # builds only the probe.
            plan = _first_plan_of(entries, version, arch_dir)
            buckets[(image_of(plan), plan.driver_version, plan.arch)] = [plan]
    shards: list[FarmShard] = []
    core_done: set[str] = set()
    for (image, version, arch), plans in sorted(buckets.items()):
        ordered = sorted(plans, key=lambda p: p.artifact_stem())
        chunks = [
            ordered[n : n + kernels_per_task] for n in range(0, len(ordered), kernels_per_task)
        ]
        folder = f"{version}/{repo_arch(arch)}"
        for chunk in chunks:
            core = folder in matrix.core_missing and folder not in core_done
            if core:
                core_done.add(folder)
            shards.append(
                FarmShard(len(shards), image, version, arch, core,
                          tuple(entries[p] for p in chunk))
            )
    if len(shards) > MAX_SHARDS * 64:
        raise UsageError(f"{len(shards)} shards: pass more --kernels-per-task")
    return FarmPlan(dict(options), tuple(shards))


def _first_plan_of(entries: Mapping[BuildPlan, CatalogEntry], version: str, arch_dir: str
                   ) -> BuildPlan:
    for plan in entries:
        if plan.driver_version == version and repo_arch(plan.arch) == arch_dir:
            return plan
    raise UsageError(f"farm plan: no kernel of {version}/{arch_dir} to build its CO-RE probe")


def load_plan(data: bytes, source: str) -> FarmPlan:
    """A plan document back, every value checked; one clear UsageError otherwise."""
    if len(data) > PLAN_MAX_BYTES:
        raise UsageError(f"{source}: larger than {PLAN_MAX_BYTES} bytes (a farm plan is not)")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(f"{source}: not a JSON farm plan") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise UsageError(f"{source}: not a farm plan (format must be {PLAN_FORMAT!r})")
    options = doc.get("options")
    raw_shards = doc.get("shards")
    if not isinstance(options, dict) or not isinstance(raw_shards, list):
        raise UsageError(f"{source}: a farm plan needs `options` (object) and `shards` (list)")
    unknown = sorted(str(k) for k in options if k not in TASK_OPTIONS)
    if unknown:
        raise UsageError(f"{source}: options {', '.join(map(shown, unknown))} are not "
                         f"task options ({', '.join(TASK_OPTIONS)})")
    shards = tuple(_shard(raw, n, f"{source}: shards[{n}]") for n, raw in enumerate(raw_shards))
    return FarmPlan(options, shards)


def _shard(raw: Any, position: int, where: str) -> FarmShard:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected an object")
    if raw.get("index") != position:
        raise UsageError(f"{where}: index must be {position}")
    kernels = raw.get("kernels")
    if not isinstance(kernels, list) or len(kernels) > MAX_KERNELS_PER_TASK:
        raise UsageError(f"{where}: kernels must be a list of at most {MAX_KERNELS_PER_TASK}")
    arch = raw.get("architecture")
    if arch not in ("amd64", "arm64"):
        raise UsageError(f"{where}: architecture must be amd64 or arm64")
    core = raw.get("core")
    if not isinstance(core, bool):
        raise UsageError(f"{where}: core must be true or false")
    return FarmShard(
        position,
        _text(raw.get("image"), IMAGE_REFERENCE, f"{where}: image"),
        _text(raw.get("driverversion"), DRIVER_VERSION, f"{where}: driverversion"),
        arch,
        core,
        tuple(entry_from_json(k, f"{where}: kernels[{i}]") for i, k in enumerate(kernels)),
    )


def _text(value: Any, rule: TextRule, where: str) -> str:
    if not isinstance(value, str) or not rule.allows(value):
        raise UsageError(f"{where}: {shown(value)} is not accepted; use {rule.form}")
    return value


def waves_deadline_s(shards: int, parallelism: int, *, timeout_s: int, kernels_per_task: int,
                     retries: int, slack_s: int) -> int:
    """A bound on a run of `shards` tasks, `parallelism` at once: every wave may use each
    build's timeout (and one for the CO-RE probe) on each attempt, plus `slack_s` for image
    pulls and scheduling."""
    waves = -(-shards // parallelism)
    return waves * timeout_s * (kernels_per_task + 1) * (retries + 1) + slack_s


def shard_summary(shards: Iterable[FarmShard]) -> list[str]:
    return [f"  shard {s.index} ({s.folder}, {s.image}): {', '.join(s.names()) or '-'}"
            for s in shards]
