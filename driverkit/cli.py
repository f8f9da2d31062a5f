"""The `driverkit` command line. Errors are caught once, in `main`, and mapped to exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from driverkit.config import BuildConfig, load_config, plan_to_json, resolve_plan
from driverkit.errors import ToolError, UsageError
from driverkit.options import OPTIONS, Option
from driverkit.plan import BuildPlan

F = TypeVar("F", bound=Callable[..., Any])

_CLICK_TYPES: dict[str, Any] = {"int": int, "path": click.Path(path_type=Path)}


def _click_option(opt: Option) -> Callable[[F], F]:
    if opt.kind == "bool" and "/" in opt.flags[0]:
        return click.option(*opt.flags, opt.name, default=None, help=opt.help)
    if opt.kind == "bool":
        return click.option(*opt.flags, opt.name, is_flag=True, default=None, help=opt.help)
    kwargs: dict[str, Any] = {"default": None, "help": opt.help + f" [env {opt.env_var}]"}
    if opt.kind == "list":
        kwargs["multiple"] = True
    if opt.choices:
        kwargs["type"] = click.Choice(opt.choices)
    elif opt.kind in _CLICK_TYPES:
        kwargs["type"] = _CLICK_TYPES[opt.kind]
    return click.option(*opt.flags, opt.name, **kwargs)


def table_options(command: str) -> Callable[[F], F]:
    """Attach every option of the table that applies to `command`."""

    def decorate(func: F) -> F:
        for opt in reversed(OPTIONS):
            if command in opt.commands:
                func = _click_option(opt)(func)
        return click.option(
            "-c",
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            default=None,
            help="driverkit-compatible config YAML.",
        )(func)

    return decorate


def _config_from(params: dict[str, Any]) -> BuildConfig:
    config_path = params.pop("config_path", None)
    return load_config(params, config_path)


def plans_from_config(cfg: BuildConfig) -> list[BuildPlan]:
    mirrors = cfg.mirrors()
    plans = [resolve_plan(kernel, cfg, mirrors) for kernel in cfg.kernels]
    if cfg.catalog is not None:
        from driverkit.catalog import load_catalog

        for entry in load_catalog(cfg.catalog):
            plans.append(
                resolve_plan(
                    entry.kernelrelease,
                    cfg,
                    mirrors,
                    target=entry.target,
                    kernel_version=entry.kernelversion,
                    kernel_urls=tuple(entry.headers),
                )
            )
    if not plans:
        raise UsageError("no kernel given: pass --kernel REL (repeatable) or --catalog FILE")
    return plans


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="driverkit-py")
def cli() -> None:
    """Build syscall-capture drivers for many kernels."""


@cli.command()
@click.option("--check", is_flag=True, help="Ask the network which header URL exists.")
@table_options("resolve")
def resolve(check: bool, **params: Any) -> None:
    """Print the resolved build plan as JSON (offline unless --check)."""
    cfg = _config_from(params)
    plans = plans_from_config(cfg)
    documents = []
    for plan in plans:
        document = plan_to_json(plan)
        if check:
            from driverkit.headers import check_headers

            document["headers_found"] = check_headers(plan, cfg.mirrors(), cfg.cache_dir)
        documents.append(document)
    click.echo(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))


@cli.command()
@table_options("build")
def build(**params: Any) -> None:
    """Build the kernel module and eBPF probe for one or more kernels."""
    cfg = _config_from(params)
    plans = plans_from_config(cfg)
    if cfg.dry_run:
        from driverkit.render import render_build_script, render_dockerfile

        for plan in plans:
            click.echo(f"# plan: {plan.artifact_stem()}")
            click.echo(json.dumps(plan_to_json(plan), indent=2))
            click.echo(f"# Dockerfile for {plan.builder_image}")
            click.echo(render_dockerfile(plan.builder, cfg.base_from))
            click.echo("# build script")
            click.echo(render_build_script(plan))
        return
    from driverkit.build import build_options_from_config, run_builds

    summary = run_builds(plans, build_options_from_config(cfg))
    _copy_driverkit_outputs(cfg, plans, summary.artifact_paths())
    if summary.failed:
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
def targets() -> None:
    """List the supported targets."""
    from rich.console import Console
    from rich.table import Table

    from driverkit.targets import all_targets

    table = Table("target", "family", "format", "gcc rule", "header source")
    for target in all_targets():
        table.add_row(
            target.name,
            target.family,
            target.package_format,
            target.gcc_rule(),
            target.header_source,
        )
    Console(width=200).print(table)


@cli.group()
def images() -> None:
    """Builder images: list, build, prune."""


@images.command("list")
def images_list() -> None:
    from driverkit.engine import docker_engine
    from driverkit.images import list_images

    with docker_engine() as engine:
        for line in list_images(engine):
            click.echo(line)


@images.command("build")
@click.option(
    "--kernel",
    "kernels",
    multiple=True,
    required=True,
    help="Build the images these kernel releases need.",
)
@click.option("--target", default=None)
@click.option("--base-from", type=click.Choice(["registry", "debootstrap"]), default="registry")
def images_build(kernels: tuple[str, ...], target: str | None, base_from: str) -> None:
    from driverkit.engine import docker_engine
    from driverkit.images import ensure_image

    cfg = load_config({"kernels": kernels, "target": target, "base_from": base_from})
    specs = {p.builder for p in (resolve_plan(k, cfg, cfg.mirrors()) for k in cfg.kernels)}
    with docker_engine() as engine:
        for spec in sorted(specs, key=lambda s: (s.family, s.distro_release, s.gcc)):
            click.echo(ensure_image(engine, spec, base_from))


@images.command("prune")
def images_prune() -> None:
    from driverkit.engine import docker_engine
    from driverkit.images import prune_images

    with docker_engine() as engine:
        for line in prune_images(engine):
            click.echo(f"removed {line}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ToolError as exc:
        click.echo(f"driverkit: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("driverkit: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("driverkit: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
