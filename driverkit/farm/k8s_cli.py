"""`driverkit matrix k8s`: the missing builds as Kubernetes Indexed Jobs, written, not run."""

from __future__ import annotations

from typing import Any

import click

from driverkit.cache import atomic_write_bytes
from driverkit.clikit import config_from, table_options


@click.command("k8s")
@table_options("matrix-k8s")
def matrix_k8s(**params: Any) -> None:
    """Write a ConfigMap of the farm plan and one Indexed Job per builder image (--manifest)."""
    from driverkit.farm.k8s import SECRET_NAME, k8s_manifest
    from driverkit.farm.run import plan_farm
    from driverkit.publish.cli import matrix_entries, require_repo

    cfg = config_from(params)
    repo = require_repo(cfg.repo, "--repo")
    _, plan = plan_farm(cfg, repo, matrix_entries(cfg))
    if plan is None:
        click.echo(f"nothing to build: {repo} has every artifact; no manifest written")
        return
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
