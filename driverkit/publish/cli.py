"""`driverkit publish`, `driverkit keys`, `driverkit matrix` and `driverkit repo`: the
commands that end the build side in a repository hosts fetch from."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from drivercore.errors import ToolError, UsageError
from drivercore.naming import repo_arch, validate_driver_version
from drivercore.repoindex import parse_public_key
from driverkit.clikit import catalog_plan, config_from, table_options
from driverkit.options import BuildConfig
from driverkit.plan import BuildPlan

log = logging.getLogger("driverkit.publish")
# The verification command boots kernels under QEMU: generous, but bounded.
VERIFY_TIMEOUT_S = 3 * 3600


@click.command()
@table_options("publish")
def publish(**params: Any) -> None:
    """Publish built artifacts (--from) to a repository (--repo) with a signed index."""
    cfg = config_from(params)
    click.echo(publish_output(cfg, cfg.publish_from, _require_repo(cfg.repo, "--repo")))


def publish_output(cfg: BuildConfig, source: Path, repo: str) -> str:
    """Publish everything under `source`; returns the summary line."""
    from driverkit.publish.backends import open_backend
    from driverkit.publish.publisher import collect
    from driverkit.publish.publisher import publish as publish_artifacts

    key = _signing_key(cfg)
    artifacts = collect(source)
    with open_backend(repo) as backend:
        summary = publish_artifacts(artifacts, backend, key, force=cfg.force, log=log.info)
    return f"{summary.line()} in {repo}"


def _require_repo(repo: str | None, flag: str) -> str:
    if not repo:
        raise UsageError(
            f"{flag} is required: a directory, file://, http(s):// (WebDAV) or s3://bucket/prefix"
        )
    return repo


def _signing_key(cfg: BuildConfig) -> Ed25519PrivateKey:
    from driverkit.publish.keys import load_signing_key

    if cfg.signing_key is None:
        raise UsageError(
            "--signing-key (or DRIVERKIT_SIGNING_KEY) is required to sign the index; "
            "make a key with `driverkit keys generate`"
        )
    return load_signing_key(cfg.signing_key)


def _public_key(cfg: BuildConfig) -> Ed25519PublicKey:
    if cfg.public_key:
        text = cfg.public_key
        if not text.startswith("ed25519:"):
            path = Path(text)
            try:
                text = path.read_text(errors="replace")[:1024]
            except OSError as exc:
                raise UsageError(
                    f"--public-key {path}: neither `ed25519:...` nor a readable .pub file "
                    f"({exc.strerror})"
                ) from None
        return parse_public_key(text)
    if cfg.signing_key is not None:
        return _signing_key(cfg).public_key()
    raise UsageError(
        "--public-key (or DRIVERKIT_REPO_PUBLIC_KEY) is required: the index is trusted only "
        "if it is signed by that key"
    )


@click.group()
def keys() -> None:
    """The repository's Ed25519 signing key."""


@keys.command("generate")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="Directory for NAME.key (0600) and NAME.pub.")
@click.option("--name", default="repo-signing", show_default=True, help="File stem.")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
def keys_generate(out_dir: Path, name: str, force: bool) -> None:
    """Make a signing key; clients pin the public key line it prints."""
    from driverkit.publish.keys import generate_keys

    pair = generate_keys(out_dir, name, force=force)
    click.echo(f"private key: {pair.private_path} (keep it secret; publishers sign with it)")
    click.echo(f"public key:  {pair.public_path} (id {pair.key_id}); clients pin:")
    click.echo(pair.public_text)


@click.group()
def matrix() -> None:
    """Catalog x driver versions x arches, minus what the repository holds."""


def matrix_plans(cfg: BuildConfig) -> list[BuildPlan]:
    from driverkit.catalog import load_catalog

    if cfg.catalog is None:
        raise UsageError("--catalog is required: a kernel-crawler JSON file")
    versions = cfg.matrix_driver_versions or (cfg.driver_version,)
    for version in versions:
        validate_driver_version(version)
    arches = cfg.matrix_arches or ("amd64",)
    entries = load_catalog(cfg.catalog, cfg.mirrors)
    plans: list[BuildPlan] = []
    for version in versions:
        for arch in arches:
            scoped = dataclasses.replace(cfg, driver_version=version, arch=arch)
            plans.extend(catalog_plan(entry, scoped) for entry in entries)
    return plans


def _plan(cfg: BuildConfig, plans: Sequence[BuildPlan], backend: Any) -> Any:
    from driverkit.matrix import plan_missing
    from driverkit.publish.publisher import listed_files

    public = _public_key(cfg)
    folders = {(p.driver_version, repo_arch(p.arch)) for p in plans}
    listed = {folder: listed_files(backend, public, *folder) for folder in sorted(folders)}
    return plan_missing(plans, lambda version, arch: listed[(version, arch)])


@matrix.command("plan")
@table_options("matrix-plan")
def matrix_plan(**params: Any) -> None:
    """Write a driverkit config per missing kernel and a sharded GitHub Actions matrix."""
    from driverkit.matrix import summary_lines, write_plan
    from driverkit.publish.backends import open_backend

    cfg = config_from(params)
    plans = matrix_plans(cfg)
    with open_backend(_require_repo(cfg.repo, "--repo")) as backend:
        missing = _plan(cfg, plans, backend)
    result = write_plan(cfg.plan_dir, missing, cfg.shards)
    if cfg.github_output is not None:
        with cfg.github_output.open("a") as out:
            out.write(f"matrix={json.dumps(result, separators=(',', ':'))}\n")
            out.write(f"empty={'true' if missing.empty else 'false'}\n")
    for line in summary_lines(missing):
        click.echo(line)
    click.echo(f"wrote {cfg.plan_dir / 'matrix.json'} ({len(result['include'])} shards)")


@matrix.command("run")
@table_options("matrix-run")
def matrix_run(**params: Any) -> None:
    """Build what the repository lacks, verify it, publish it; nothing new: nothing done."""
    from driverkit.build import run_builds
    from driverkit.matrix import summary_lines
    from driverkit.publish.backends import open_backend

    started = time.monotonic()
    cfg = config_from(params)
    repo = _require_repo(cfg.repo, "--repo")
    _signing_key(cfg)  # fail before building when it cannot sign
    plans = matrix_plans(cfg)
    with open_backend(repo) as backend:
        missing = _plan(cfg, plans, backend)
    for line in summary_lines(missing):
        click.echo(line)
    if missing.empty:
        click.echo(f"nothing to build: {repo} has every artifact "
                   f"({time.monotonic() - started:.1f} s)")
        return
    failed: list[str] = []
    kernel_jobs: dict[tuple[str, str], list[BuildPlan]] = {}
    for job in missing.jobs:
        kernel_jobs.setdefault((job.plan.driver_version, job.plan.arch), []).append(job.plan)
    first_plan = {(p.driver_version, p.arch): p for p in reversed(plans)}
    for folder, plan in sorted(first_plan.items()):
        scoped = dataclasses.replace(cfg, driver_version=folder[0], arch=folder[1])
        if folder in kernel_jobs:
            # The CO-RE probe of the folder comes along (skipped when built already).
            summary = run_builds(kernel_jobs[folder], scoped)
        elif f"{folder[0]}/{repo_arch(folder[1])}" in missing.core_missing:
            summary = run_builds([plan], scoped, kernels=False)
        else:
            continue
        failed += [
            f"{o.name}: {o.error.splitlines()[0] if o.error else 'failed'}"
            for o in summary.failed
        ]
    if cfg.verify_command:
        _verify(cfg.verify_command, cfg.output)
    click.echo(publish_output(cfg, cfg.output, repo))
    if failed:
        for line in failed:
            click.echo(f"failed: {line}", err=True)
        raise ToolError(f"{len(failed)} of {len(missing.jobs)} missing kernel builds failed")


def _verify(command: str, output: Path) -> None:
    argv = [*shlex.split(command), str(output)]
    log.info("verifying: %s", shlex.join(argv))
    try:
        done = subprocess.run(argv, timeout=VERIFY_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise UsageError(f"--verify-command: {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"--verify-command ran past {VERIFY_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ToolError(
            f"--verify-command exited {done.returncode}: nothing was published"
        )


@click.group()
def repo() -> None:
    """Read a published repository."""


def register(cli: click.Group) -> None:
    from driverkit.publish.site import site_command

    repo.add_command(site_command, "site")
    for command in (publish, keys, matrix, repo):
        cli.add_command(command)
