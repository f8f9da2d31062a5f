"""The `driverkit` command line. Errors are caught once, in `main`, and mapped to exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from driverkit.clikit import config_from, plans_from_config, table_options
from driverkit.config import plan_to_json
from driverkit.errors import ToolError, UsageError
from driverkit.options import BuildConfig
from driverkit.plan import BuildPlan
from driverkit.valuerules import UNSAFE_CHARACTERS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="driverkit-py")
def cli() -> None:
    """Build syscall-capture drivers for many kernels."""


@cli.command()
@click.option("--check", is_flag=True, help="Ask the network which header URL exists.")
@table_options("resolve")
def resolve(check: bool, **params: Any) -> None:
    """Print the resolved build plan as JSON (offline unless --check)."""
    cfg = config_from(params)
    plans = plans_from_config(cfg)
    documents = []
    for plan in plans:
        document = plan_to_json(plan)
        if check:
            from driverkit.headers import check_headers

            document["headers_found"] = check_headers(plan, cfg.mirrors, cfg.cache_dir)
        documents.append(document)
    click.echo(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))


@cli.command()
@table_options("build")
def build(**params: Any) -> None:
    """Build the kernel module and eBPF probe for one or more kernels."""
    cfg = config_from(params)
    plans = plans_from_config(cfg)
    if cfg.dry_run:
        from driverkit.render import render_build_script, render_dockerfile

        for plan in plans:
            click.echo(f"# plan: {plan.artifact_stem()}")
            click.echo(json.dumps(plan_to_json(plan), indent=2))
            click.echo(f"# Dockerfile for {plan.builder_image}")
            click.echo(render_dockerfile(plan.builder, plan.base_from))
            click.echo("# build script")
            click.echo(render_build_script(plan))
        return
    from driverkit.build import run_builds

    summary = run_builds(plans, cfg)
    _copy_driverkit_outputs(cfg, plans, summary.artifact_paths())
    if cfg.publish_to:
        from driverkit.publish.cli import publish_output

        # What did build is published even when other kernels failed.
        click.echo(publish_output(cfg, cfg.output, cfg.publish_to))
    if summary.failed:
        only = summary.failed[0]
        if len(plans) == 1 and len(summary.failed) == 1 and only.cause is not None:
            # One kernel asked for: its own error, and that error's exit code (headers
            # not found, build failed...), is the answer.
            raise only.cause
        raise ToolError(f"{len(summary.failed)} of {len(plans)} kernel builds failed")


def _copy_driverkit_outputs(
    cfg: BuildConfig, plans: Sequence[BuildPlan], artifacts: dict[str, Path]
) -> None:
    """Honour driverkit's output.module/output.probe for a single-kernel build."""
    wanted = [(cfg.output_module, ".ko"), (cfg.output_probe, ".o")]
    if not any(dest for dest, _ in wanted):
        return
    if len(plans) != 1:
        raise UsageError("--output-module/--output-probe name one file: build one kernel")
    for dest, suffix in wanted:
        if dest is None:
            continue
        name = plans[0].artifact_stem() + suffix
        if name not in artifacts:
            raise UsageError(f"{dest}: no {suffix} artifact was built for {name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        os.close(fd)
        shutil.copyfile(artifacts[name], tmp)
        os.replace(tmp, dest)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def targets(as_json: bool) -> None:
    """List the supported targets: headers, builders per kernel series, what builds with
    the gcc it wants today, and the end-to-end build test covering it."""
    from driverkit.targets import all_targets
    from driverkit.targets.coverage import target_row

    rows = [target_row(target) for target in all_targets()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=True, expand=True)
    table.add_column("target", no_wrap=True)
    table.add_column("format", no_wrap=True)
    table.add_column("header source", ratio=7, overflow="fold")
    table.add_column("builder: suite gcc (kernel series)", ratio=10)
    table.add_column("builds today", width=7)
    table.add_column("end-to-end test", ratio=5, overflow="fold")
    for row in rows:
        test = row["e2e_test"]
        cells = (
            row["target"],
            row["header_format"],
            row["header_source"],
            "\n".join(row["builder"]),
            row["builds_today"],
            test.rsplit("::", 1)[-1] if test else "-",
        )
        table.add_row(*(Text(cell) for cell in cells))  # as written: no rich markup
    # The terminal's width (160 when not a terminal): the table wraps rather than running
    # past the edge.
    Console(width=shutil.get_terminal_size((160, 24)).columns).print(table)


@cli.group()
def images() -> None:
    """Builder images: list, build, prune; farm images: distribute."""


@images.command("list")
def images_list() -> None:
    from driverkit.containers import docker_engine
    from driverkit.images import list_images

    with docker_engine() as engine:
        for line in list_images(engine):
            click.echo(line)


@images.command("build")
@table_options("images")
def images_build(**params: Any) -> None:
    """Build the builder images these kernels (--kernel, --catalog) need."""
    from driverkit.containers import docker_engine
    from driverkit.images import ensure_plan_image

    cfg = config_from(params)
    # One image per tag, as the plans carry it: the same resolution as `build`.
    by_image = {plan.builder_image: plan for plan in plans_from_config(cfg)}
    ordered = sorted(by_image.values(), key=lambda p: (p.builder.distro_release, p.gcc))
    with docker_engine() as engine:
        for plan in ordered:
            click.echo(ensure_plan_image(engine, plan, cfg.mirrors, cfg.cache_dir))


@images.command("runtime")
@click.option(
    "--suite",
    default=None,
    help="Debian suite of both images (default: the oldest whose packages meet pyproject).",
)
@table_options("images")
def images_runtime(suite: str | None, **params: Any) -> None:
    """Build the loader and engine images (host side only) and print their tags."""
    from driverkit.containers import docker_engine
    from driverkit.runtime_images import DEFAULT_SUITE, ensure_runtime_images

    cfg = config_from(params)
    with docker_engine() as engine:
        tags = ensure_runtime_images(
            engine, cfg.base_from, cfg.mirrors, cfg.cache_dir, suite or DEFAULT_SUITE
        )
    for role, tag in tags.items():
        click.echo(f"{role}\t{tag}")


@images.command("distribute")
@table_options("images-distribute")
def images_distribute(**params: Any) -> None:
    """Build the farm images these kernels need (their builders plus driverkit) and put
    them on every node: loaded into each --to daemon, or pushed to --registry (neither:
    built here only)."""
    from driverkit.containers import docker_engine
    from driverkit.farm.images import distribute, ensure_farm_images, push

    cfg = config_from(params)
    with docker_engine() as engine:
        tags = ensure_farm_images(engine, plans_from_config(cfg), cfg.mirrors, cfg.cache_dir)
        for tag in tags:
            click.echo(f"farm image {tag}")
        if cfg.registry:
            for name in push(engine.client, tags, cfg.registry):
                click.echo(f"pushed {name}")
        for line in distribute(engine.client, tags, cfg.nodes):
            click.echo(line)
    if not cfg.nodes and not cfg.registry:
        click.echo("built on this daemon only: pass --to DOCKER_HOST (per node) or --registry")


@images.command("prune")
def images_prune() -> None:
    from driverkit.containers import docker_engine
    from driverkit.images import prune_images

    with docker_engine() as engine:
        for line in prune_images(engine):
            click.echo(f"removed {line}")


def _register_repository_commands() -> None:
    from driverkit.publish.cli import register

    register(cli)


_register_repository_commands()


def _escaped(message: str, keep: str = "") -> str:
    """`message` with control and line-separator characters escaped, except `keep`: a
    message quoting user input stays one line whatever the input held."""
    return UNSAFE_CHARACTERS.sub(
        lambda found: found.group() if found.group() in keep else ascii(found.group())[1:-1],
        message,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ToolError as exc:
        # Our messages quote inputs escaped already; a build failure's message lists the
        # compiler's error lines on purpose, so its newlines stay.
        click.echo(f"driverkit: error: {_escaped(str(exc), keep=chr(10))}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("driverkit: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        # One line, as every other error: click's usage banner would make it three.
        click.echo(f"driverkit: error: {_escaped(exc.format_message())}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("driverkit: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
