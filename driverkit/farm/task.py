"""`driverkit matrix task`: one shard of a farm plan, run inside a farm image on a node.

The task finds its shard from the engine (Swarm: the job's slot; Kubernetes: the Indexed
Job's completion index; plus the offset of its image group), re-reads what the repository
lists (so a retried or rerun task builds only what is still missing), builds with the
local processor (it already runs in its suite's builder image), and publishes straight to
the shared repository: the index merge is compare-and-swap, safe with many tasks at once.

Each kernel that fails prints one `DK-FARM-FAILED {json}` line (its name and its compiler's
error lines) before the task exits non-zero, so the coordinator can name it once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import click

from drivercore.errors import UsageError
from driverkit.errors import ToolError
from driverkit.farm.plan import PLAN_MAX_BYTES, FarmShard, load_plan

FAILURE_MARK: Final = "DK-FARM-FAILED "
# Where the engines put the plan and the signing key (a Swarm config and secret, a
# ConfigMap and Secret): the task's command names them, these are the defaults.
PLAN_PATH: Final = Path("/etc/driverkit-farm/plan.json")
KEY_PATH: Final = Path("/run/secrets/driverkit-farm/signing-key")
# Swarm renders a job task's slot 0 as the node id, as it names global tasks (observed on
# Docker 20.10 and 28): the task is given both to tell that case apart from garbage.
_SLOT = re.compile(r"[0-9]{1,6}")
_NODE_ID = re.compile(r"[a-z0-9]{25}")


def shard_index(environ: Mapping[str, str]) -> int:
    """`DK_SHARD_OFFSET` plus the engine's index of this task within its job."""
    offset = environ.get("DK_SHARD_OFFSET", "0")
    if not _SLOT.fullmatch(offset):
        raise UsageError(f"DK_SHARD_OFFSET={offset[:40]!r}: not a shard offset")
    if "JOB_COMPLETION_INDEX" in environ:
        raw = environ["JOB_COMPLETION_INDEX"]
    elif "DK_TASK_SLOT" in environ:
        raw = environ["DK_TASK_SLOT"]
        if raw == environ.get("DK_NODE_ID") and _NODE_ID.fullmatch(raw):
            raw = "0"
    else:
        raise UsageError(
            "no shard: pass --shard N, or run under an engine that sets JOB_COMPLETION_INDEX "
            "(Kubernetes Indexed Job) or DK_TASK_SLOT (driverkit's Swarm jobs)"
        )
    if not _SLOT.fullmatch(raw):
        raise UsageError(f"task index {raw[:40]!r}: not a number")
    return int(offset) + int(raw)


def run_task(plan_path: Path, signing_key: Path, cache_dir: Path, index: int) -> None:
    from driverkit.config import load_config
    from driverkit.publish.cli import build_missing, matrix_plans

    try:
        with plan_path.open("rb") as fh:
            data = fh.read(PLAN_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--plan {plan_path}: cannot read it ({exc.strerror})") from None
    plan = load_plan(data, f"--plan {plan_path}")
    shard = plan.shard(index)
    click.echo(f"shard {shard.index} of {len(plan.shards)} ({shard.folder}): "
               f"{', '.join(shard.names()) or 'nothing'}")
    # The wrapper's interpreter settings are consumed; the compilers must not see them.
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONNOUSERSITE"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="dk-task-") as tmp:
        work = Path(tmp)
        cfg = load_config(_values(plan.options, shard, work, signing_key, cache_dir))
        cfg = dataclasses.replace(cfg, build_core=shard.core, show_progress=False)
        assert cfg.repo is not None  # a plan always names its repository
        failed, considered = build_missing(cfg, cfg.repo, matrix_plans(cfg))
    for failure in failed:
        click.echo(FAILURE_MARK + json.dumps(
            {"shard": shard.index, "kernel": failure.name, "errors": list(failure.errors)},
            sort_keys=True))
    if failed:
        raise ToolError(f"{len(failed)} of {considered} builds of shard {shard.index} failed")


def _values(options: Mapping[str, Any], shard: FarmShard, work: Path, signing_key: Path,
            cache_dir: Path) -> dict[str, Any]:
    catalog = work / "shard.json"
    catalog.write_text(json.dumps({"Farm": [k.to_json() for k in shard.kernels]}))
    return {
        **options,
        "catalog": catalog,
        "signing_key": signing_key,
        "cache_dir": cache_dir,
        "processor": "local",
        "output": work / "out",
        "matrix_driver_versions": (shard.driver_version,),
        "matrix_arches": (shard.arch,),
    }


@click.command("task")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), default=PLAN_PATH,
              show_default=True, help="The farm plan (a Swarm config, a ConfigMap).")
@click.option("--signing-key", type=click.Path(path_type=Path), default=KEY_PATH,
              show_default=True, help="The repository's signing key (a secret).")
@click.option("--cache-dir", type=click.Path(path_type=Path), required=True,
              help="This node's download and header cache.")
@click.option("--shard", type=click.IntRange(0, 1_000_000), default=None,
              help="Shard to run; default: from the engine's environment.")
def matrix_task(plan_path: Path, signing_key: Path, cache_dir: Path, shard: int | None) -> None:
    """Run one shard of a farm plan (what each farm task runs)."""
    index = shard if shard is not None else shard_index(os.environ)
    run_task(plan_path, signing_key, cache_dir, index)
