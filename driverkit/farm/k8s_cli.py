"""`driverkit matrix k8s`: the missing builds as Kubernetes Indexed Jobs, written, not run."""

from __future__ import annotations

from typing import Any

import click

from drivercore import repoindex
from driverkit.cache import atomic_write_bytes
from driverkit.clikit import config_from, table_options


@click.command("k8s")
@table_options("matrix-k8s")
def matrix_k8s(**params: Any) -> None:
    """Write a ConfigMap of the farm plan and one Indexed Job per builder image (--manifest)."""
    from driverkit.farm.images import farm_image_ref
    from driverkit.farm.k8s import SECRET_NAME, k8s_manifest
    from driverkit.farm.plan import farm_plan
    from driverkit.farm.run import require_shared_repo, task_options
    from driverkit.matrix import summary_lines
    from driverkit.publish.backends import open_backend
    from driverkit.publish.cli import matrix_entries, missing_builds, public_key_of, require_repo

    cfg = config_from(params)
    repo = require_repo(cfg.repo, "--repo")
    require_shared_repo(repo)
    entries = matrix_entries(cfg)
    plans = [plan for _, plan in entries]
    with open_backend(repo) as backend:
        missing = missing_builds(cfg, plans, backend)
    for line in summary_lines(missing):
        click.echo(line)
    if missing.empty:
        click.echo(f"nothing to build: {repo} has every artifact; no manifest written")
        return
    plan = farm_plan(
        missing, {plan: entry for entry, plan in entries},
        lambda p: farm_image_ref(p, cfg.registry),
        task_options(cfg, repoindex.public_key_text(public_key_of(cfg))), cfg.kernels_per_task,
    )
    text = k8s_manifest(
        plan, namespace=cfg.k8s_namespace, max_concurrent=cfg.max_concurrent,
        retries=cfg.retries, timeout_s=cfg.timeout, kernels_per_task=cfg.kernels_per_task,
        cache_dir=cfg.cache_dir,
    )
    atomic_write_bytes(cfg.k8s_manifest, text.encode())
    for group in plan.groups():
        click.echo(f"job: {group.count} shards from {group.offset} in {group.image}")
    click.echo(f"wrote {cfg.k8s_manifest}: create the Secret {SECRET_NAME} "
               f"(key signing-key) in namespace {cfg.k8s_namespace}, then kubectl apply -f it")
