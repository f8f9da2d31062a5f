"""The farm plan as Kubernetes objects: a ConfigMap of the plan and one Indexed Job per
builder image, from one template (`templates/farm-k8s.yaml.j2`) a cluster user can adapt.

Pure: the same FarmPlan `matrix run --engine swarm` runs, rendered. A pod's shard is
`DK_SHARD_OFFSET` (its Job's first shard) plus `JOB_COMPLETION_INDEX`, which Kubernetes
sets in Indexed Jobs; its command is the same `driverkit matrix task` a Swarm task runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from drivercore.errors import UsageError
from driverkit.farm.plan import FarmPlan, waves_deadline_s
from driverkit.farm.task import KEY_PATH, PLAN_PATH
from driverkit.render import _environment
from driverkit.valuerules import K8S_NAME, PATH

TEMPLATE: Final = "farm-k8s.yaml.j2"
APP_LABEL: Final = "driverkit-farm"
SECRET_NAME: Final = "driverkit-farm-signing-key"
# A build is two compilers on one core at a time; headers and objects need a few GB.
RESOURCES: Final[Mapping[str, Mapping[str, str]]] = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"memory": "4Gi"},
}
# Finished Jobs (and their pods' logs) stay a day for whoever reads the failures.
TTL_AFTER_FINISHED_S: Final = 86400
# Image pulls and scheduling on top of the builds' own timeouts.
DEADLINE_SLACK_S: Final = 1800


@dataclass(frozen=True)
class JobSpec:
    name: str
    image: str
    offset: str  # an env value: text
    count: int
    parallelism: int
    deadline: int


def run_id(plan: FarmPlan) -> str:
    """Names from the plan's bytes: the same plan gives the same objects (apply is
    idempotent), another plan other ones."""
    return hashlib.sha256(plan.to_bytes()).hexdigest()[:10]


def k8s_manifest(
    plan: FarmPlan,
    *,
    namespace: str,
    max_concurrent: int,
    retries: int,
    timeout_s: int,
    kernels_per_task: int,
    cache_dir: Path,
) -> str:
    """The YAML text: the ConfigMap, then one Job per image group."""
    if not K8S_NAME.allows(namespace):
        raise UsageError(f"--namespace {namespace!r}: use {K8S_NAME.form}")
    cache = str(cache_dir)
    if not cache.startswith("/") or not PATH.allows(cache):
        raise UsageError(f"--cache-dir {cache!r}: the nodes' cache must be an absolute path")
    if not plan.shards:
        raise UsageError("the farm plan has no shards: nothing to write")
    rid = run_id(plan)
    jobs = []
    for n, group in enumerate(plan.groups()):
        parallelism = min(max_concurrent, group.count)
        jobs.append(JobSpec(
            f"{APP_LABEL}-{rid}-{n}", group.image, str(group.offset), group.count, parallelism,
            waves_deadline_s(group.count, parallelism, timeout_s=timeout_s,
                             kernels_per_task=kernels_per_task, retries=retries,
                             slack_s=DEADLINE_SLACK_S),
        ))
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            run_id=rid,
            namespace=namespace,
            configmap=f"{APP_LABEL}-{rid}-plan",
            secret=SECRET_NAME,
            labels={"app.kubernetes.io/name": APP_LABEL, "io.driverkit.farm.run": rid},
            plan_json=plan.to_bytes().decode(),
            jobs=jobs,
            retries=retries,
            ttl=TTL_AFTER_FINISHED_S,
            command=["/usr/local/bin/driverkit-farm", "matrix", "task", "--plan",
                     str(PLAN_PATH), "--signing-key", str(KEY_PATH), "--cache-dir", cache],
            resources=RESOURCES,
            plan_dir=str(PLAN_PATH.parent),
            key_dir=str(KEY_PATH.parent),
            cache_dir=cache,
        )
    )
