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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from driverkit.catalog import CatalogEntry
    from driverkit.matrix import MatrixPlan
    from driverkit.publish.backend import Backend

log = logging.getLogger("driverkit.publish")
# The verification command boots kernels under QEMU: generous, but bounded.
VERIFY_TIMEOUT_S = 3 * 3600


@click.command()
@table_options("publish")
def publish(**params: Any) -> None:
    """Publish built artifacts (--from) to a repository (--repo) with a signed index."""
    cfg = config_from(params)
    click.echo(publish_output(cfg, cfg.publish_from, require_repo(cfg.repo, "--repo")))


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


def require_repo(repo: str | None, flag: str) -> str:
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


def public_key_of(cfg: BuildConfig) -> Ed25519PublicKey:
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
    return [plan for _, plan in matrix_entries(cfg)]


def matrix_entries(cfg: BuildConfig) -> list[tuple[CatalogEntry, BuildPlan]]:
    """Every catalog kernel x driver version x arch, with the entry its plan came from."""
    from driverkit.catalog import load_catalog

    if cfg.catalog is None:
        raise UsageError("--catalog is required: a kernel-crawler JSON file")
    versions = cfg.matrix_driver_versions or (cfg.driver_version,)
    for version in versions:
        validate_driver_version(version)
    arches = cfg.matrix_arches or ("amd64",)
    entries = load_catalog(cfg.catalog, cfg.mirrors)
    pairs: list[tuple[CatalogEntry, BuildPlan]] = []
    for version in versions:
        for arch in arches:
            scoped = dataclasses.replace(cfg, driver_version=version, arch=arch)
            pairs.extend((entry, catalog_plan(entry, scoped)) for entry in entries)
    return pairs


def missing_builds(cfg: BuildConfig, plans: Sequence[BuildPlan], backend: Backend
                   ) -> MatrixPlan:
    """What the repository's verified indexes lack of `plans`."""
    from driverkit.matrix import plan_missing
    from driverkit.publish.publisher import listed_files

    public = public_key_of(cfg)
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
    with open_backend(require_repo(cfg.repo, "--repo")) as backend:
        missing = missing_builds(cfg, plans, backend)
    result = write_plan(cfg.plan_dir, missing, cfg.shards)
    if cfg.github_output is not None:
        with cfg.github_output.open("a") as out:
            out.write(f"matrix={json.dumps(result, separators=(',', ':'))}\n")
            out.write(f"empty={'true' if missing.empty else 'false'}\n")
    for line in summary_lines(missing):
        click.echo(line)
    click.echo(f"wrote {cfg.plan_dir / 'matrix.json'} ({len(result['include'])} shards)")


@dataclass(frozen=True)
class KernelFailure:
    name: str  # the artifact stem (or the CO-RE probe's label) that did not build
    errors: tuple[str, ...]  # its compiler's error lines, as the build summary kept them

    def line(self) -> str:
        return f"{self.name}: {self.errors[0] if self.errors else 'failed'}"


@matrix.command("run")
@table_options("matrix-run")
def matrix_run(**params: Any) -> None:
    """Build what the repository lacks, verify it, publish it; nothing new: nothing done."""
    cfg = config_from(params)
    repo = require_repo(cfg.repo, "--repo")
    _signing_key(cfg)  # fail before building when it cannot sign
    if cfg.engine == "swarm":
        from driverkit.farm.run import run_on_swarm

        if cfg.verify_command:
            raise UsageError(
                "--verify-command checks this machine's build output before publishing; "
                "farm tasks publish from their nodes: run it with --engine local"
            )

        run_on_swarm(cfg, repo, matrix_entries(cfg))
        return
    failed, considered = build_missing(cfg, repo, [p for _, p in matrix_entries(cfg)])
    if failed:
        for failure in failed:
            click.echo(f"failed: {failure.line()}", err=True)
        raise ToolError(f"{len(failed)} of {considered} missing kernel builds failed")


def build_missing(cfg: BuildConfig, repo: str, plans: Sequence[BuildPlan]
                  ) -> tuple[list[KernelFailure], int]:
    """Build, verify and publish what `repo` lacks of `plans`; returns the failures and how
    many kernel builds were missing. `cfg.build_core` says whether the folders' CO-RE
    probes are this run's to build (a farm gives that to one task per folder)."""
    from driverkit.build import run_builds
    from driverkit.matrix import summary_lines
    from driverkit.publish.backends import open_backend

    started = time.monotonic()
    with open_backend(repo) as backend:
        missing = missing_builds(cfg, plans, backend)
    if not cfg.build_core:
        missing = dataclasses.replace(missing, core_missing=())
    for line in summary_lines(missing):
        click.echo(line)
    if missing.empty:
        click.echo(f"nothing to build: {repo} has every artifact "
                   f"({time.monotonic() - started:.1f} s)")
        return [], 0
    failed: list[KernelFailure] = []
    kernel_jobs: dict[tuple[str, str], list[BuildPlan]] = {}
    for job in missing.jobs:
        kernel_jobs.setdefault((job.plan.driver_version, job.plan.arch), []).append(job.plan)
    first_plan = {(p.driver_version, p.arch): p for p in reversed(plans)}
    for folder, plan in sorted(first_plan.items()):
        core_missing = f"{folder[0]}/{repo_arch(folder[1])}" in missing.core_missing
        scoped = dataclasses.replace(cfg, driver_version=folder[0], arch=folder[1],
                                     build_core=core_missing)
        if folder in kernel_jobs:
            # The CO-RE probe of the folder comes along when it is missing.
            summary = run_builds(kernel_jobs[folder], scoped)
        elif core_missing:
            summary = run_builds([plan], scoped, kernels=False)
        else:
            continue
        failed += [_failure(o.name, o.error) for o in summary.failed]
    if cfg.verify_command:
        _verify(cfg.verify_command, cfg.output)
    if any(cfg.output.glob("*/*/*.json")):
        click.echo(publish_output(cfg, cfg.output, repo))
    return failed, len(missing.jobs)


def _failure(name: str, error: str) -> KernelFailure:
    # A failed build's error is its headline, then the compiler's error lines indented.
    lines = [line.strip() for line in error.splitlines()]
    return KernelFailure(name, tuple(line for line in lines[1:] if line) or tuple(lines[:1]))


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
    from driverkit.farm.k8s_cli import matrix_k8s
    from driverkit.farm.task import matrix_task
    from driverkit.publish.site import site_command

    repo.add_command(site_command, "site")
    matrix.add_command(matrix_task, "task")
    matrix.add_command(matrix_k8s, "k8s")
    for command in (publish, keys, matrix, repo):
        cli.add_command(command)
