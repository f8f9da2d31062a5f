"""`driverkit matrix k8s`: the farm plan as a ConfigMap and Indexed Jobs, checked offline.

No Kubernetes control plane can run on this machine (none is installable here), so the
objects are not applied: they are validated against the `kubernetes` client's API models
(pydantic models that refuse unknown fields and require the required ones), then checked
for what they must mean: one Indexed Job per builder image whose completion indexes plus
its offset cover every shard once, bounded parallelism, per-shard retries, a deadline,
the plan and key mounted where `driverkit matrix task` reads them, and a plan that the
task's own loader reads back unchanged.

Real: the committed Debian catalog and plan resolution, the signed WebDAV repository (nginx
on 127.0.0.1) `matrix k8s` reads, the template and the API models. Stood in: the cluster.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from driverkit import KERNELS_DIR
from driverkit.catalog import CatalogEntry
from driverkit.farm.k8s import k8s_manifest
from driverkit.farm.plan import FarmPlan, FarmShard, load_plan
from driverkit.farm.task import KEY_PATH, PLAN_PATH, shard_index
from driverkit.publish.keys import generate_keys
from tests.publish_helpers import driverkit
from tests.repo_servers import WebDavServer

if TYPE_CHECKING:
    from pydantic import BaseModel

pytest.importorskip("kubernetes", reason="pip install '.[dev]' (the kubernetes client)")

OPTIONS = {"repo": "https://repo.example/drivers", "public_key": "ed25519:AAAA",
           "driver_name": "rtcap", "build_kmod": True, "build_probe": True,
           "debian_mirror": "http://deb.example/debian", "debian_security_mirror": "",
           "timeout": 900}
IMAGES = ("driverkit-farm-bookworm-gcc12:0123456789ab",
          "driverkit-farm-trixie-gcc14:ba9876543210")


def _plan() -> FarmPlan:
    def kernel(n: int) -> CatalogEntry:
        # A kernelversion as long and odd as the rule allows: it lands inside plan.json.
        return CatalogEntry(f"6.1.0-{n}-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.1-1 (x: y)",
                            "debian", ())

    shards = [FarmShard(n, IMAGES[0], "0.1.0", "amd64", n == 0, (kernel(n),)) for n in range(3)]
    shards.append(FarmShard(3, IMAGES[1], "0.1.0", "amd64", False, (kernel(9),)))
    return FarmPlan(OPTIONS, tuple(shards))


def _docs(plan: FarmPlan, **overrides: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"namespace": "farm", "max_concurrent": 2, "retries": 3,
                            "timeout_s": 900, "kernels_per_task": 1,
                            "cache_dir": Path("/var/cache/driverkit"), **overrides}
    return [d for d in yaml.safe_load_all(k8s_manifest(plan, **args)) if d is not None]


def _validated(doc: dict[str, Any]) -> Any:
    from kubernetes import client

    models: dict[str, type[BaseModel]] = {"ConfigMap": client.V1ConfigMap, "Job": client.V1Job}
    model = models[doc["kind"]]
    return model.model_validate(doc)


def test_objects_are_valid_and_mean_what_the_task_reads() -> None:
    plan = _plan()
    docs = _docs(plan)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job", "Job"]
    config_map = _validated(docs[0])
    # The plan travels byte for byte and the task's loader takes it back unchanged.
    assert load_plan(config_map.data["plan.json"].encode(), "configmap") == plan
    jobs = [_validated(d) for d in docs[1:]]
    covered: list[int] = []
    for job, image in zip(jobs, IMAGES, strict=True):
        spec = job.spec
        assert spec.completion_mode == "Indexed"
        assert spec.parallelism == min(2, spec.completions)
        assert spec.backoff_limit_per_index == 3
        assert spec.max_failed_indexes == spec.completions
        assert spec.active_deadline_seconds >= 900 * 2 * 4
        pod = spec.template.spec
        assert pod.restart_policy == "Never"
        (container,) = pod.containers
        assert container.image == image
        assert container.command[:3] == ["/usr/local/bin/driverkit-farm", "matrix", "task"]
        assert container.resources.requests["cpu"] and container.resources.limits["memory"]
        volumes = {v.name: v for v in pod.volumes}
        mounts = {m.mount_path: m.name for m in container.volume_mounts}
        assert mounts[str(PLAN_PATH.parent)] == "plan"
        assert volumes["plan"].config_map.name == config_map.metadata.name
        assert mounts[str(KEY_PATH.parent)] == "signing-key"
        assert volumes["signing-key"].secret.secret_name == "driverkit-farm-signing-key"
        assert volumes["cache"].host_path.path == "/var/cache/driverkit" == container.command[-1]
        env = {e.name: e.value for e in container.env}
        for index in range(spec.completions):
            # What Kubernetes sets in the pod, through the task's own index function.
            shard = shard_index({**env, "JOB_COMPLETION_INDEX": str(index)})
            assert plan.shards[shard].image == image
            covered.append(shard)
        assert job.metadata.namespace == "farm"
        assert len(job.metadata.name) <= 63
    assert sorted(covered) == list(range(len(plan.shards)))
    # Same plan, same names (apply is idempotent).
    assert _docs(plan) == docs


@pytest.mark.parametrize(("path", "wrong_key"), [
    (("spec",), "completionIndex"),  # not a Job field
    (("spec", "template", "spec", "containers", 0), "volumeMount"),  # misspelt
])
def test_the_models_catch_a_wrong_field(path: tuple[str | int, ...], wrong_key: str) -> None:
    """The check can fail: what an API server would refuse fails here too."""
    from pydantic import ValidationError

    doc = copy.deepcopy(_docs(_plan())[1])
    node: Any = doc
    for step in path:
        node = node[step]
    node[wrong_key] = 1
    with pytest.raises(ValidationError, match=wrong_key):
        _validated(doc)


def test_no_value_breaks_the_document() -> None:
    """Values full of YAML's own characters stay values: the plan's JSON (quotes, colons,
    braces, newlines) and a repository URL with `#` and `: `-like parts."""
    plan = FarmPlan({**OPTIONS, "repo": "https://repo.example/a:b/%23c"}, _plan().shards)
    docs = _docs(plan)
    assert json.loads(docs[0]["data"]["plan.json"])["options"]["repo"].endswith("%23c")
    with pytest.raises(Exception, match="namespace"):
        _docs(plan, namespace="Bad Namespace")


def test_matrix_k8s_writes_the_catalogs_missing_kernels(
    tmp_path: Path, webdav_server: WebDavServer
) -> None:
    keys = generate_keys(tmp_path / "k")
    manifest = tmp_path / "farm.yaml"
    # The pods publish from their nodes: a directory of this machine is refused.
    local = driverkit("matrix", "k8s", "--catalog", str(KERNELS_DIR / "debian.json"), "--repo",
                      str(tmp_path / "repo"), "--public-key", str(keys.public_path))
    assert local.returncode == 2 and "WebDAV" in local.stderr, local.stderr
    assert not manifest.exists()
    done = driverkit("matrix", "k8s", "--catalog", str(KERNELS_DIR / "debian.json"), "--repo",
                     f"{webdav_server.url}/k8s-{tmp_path.name}", "--public-key",
                     str(keys.public_path),
                     "--manifest", str(manifest), "--max-concurrent", "8", "--retries", "1",
                     "--base-from", "debootstrap")
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    jobs = [_validated(d) for d in docs if d["kind"] == "Job"]
    total = sum(len(v) for v in json.loads((KERNELS_DIR / "debian.json").read_text()).values())
    # One shard per kernel, one Job per builder image (the catalog spans four suites).
    assert sum(j.spec.completions for j in jobs) == total
    assert len(jobs) == len({j.spec.template.spec.containers[0].image for j in jobs}) >= 4
    assert all(j.spec.parallelism <= 8 for j in jobs)
    assert f"wrote {manifest}" in done.stdout
