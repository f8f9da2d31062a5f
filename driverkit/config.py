"""Merge option sources into a frozen BuildConfig, and resolve build plans from it.

`BuildConfig` and its option table live in driverkit.options; this module fills one from
defaults, a config file, the environment and flags, with the run's mirrors resolved once.
Plan resolution here is pure: the only inputs are the config, the target tables and the
mirror roots; nothing here reaches the network or a container engine.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from drivercore.kernelrelease import KernelRelease, parse_kernel_release, parse_kernel_version
from driverkit.errors import UsageError
from driverkit.options import (
    BY_NAME,
    BuildConfig,
    default_driver_version,
    defaults,
    values_from_env,
    values_from_yaml,
)
from driverkit.plan import BuildPlan
from driverkit.targets import get_target, infer_target
from driverkit.targets.base import Mirrors, Target

__all__ = [
    "BuildConfig",
    "choose_target",
    "load_config",
    "plan_to_json",
    "read_config_file",
    "resolve_plan",
]

log = logging.getLogger(__name__)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"config {path}: cannot read it ({exc.strerror})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"config {path}: not valid YAML{where}") from None
    return values_from_yaml(document, f"config {path}")


def load_config(
    cli_values: Mapping[str, Any],
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    discovered_mirrors: Mirrors | None = None,
) -> BuildConfig:
    """defaults < config file < environment < command line (driverkit's order).

    The mirrors are resolved here, once: the mirror options over `discovered_mirrors`
    (default: the host's apt sources, read once per process).
    """
    from driverkit.mirrors import resolve_mirrors

    merged: dict[str, Any] = defaults()
    if config_path is not None:
        merged.update(read_config_file(config_path))
    merged.update(values_from_env(environ))
    for name, value in cli_values.items():
        if value is None or value == ():
            continue
        option = BY_NAME[name]
        merged[name] = option.convert(value, f"option {option.flags[0]}")
    merged["kernels"] = tuple(merged.get("kernels") or ())
    merged["kernel_urls"] = tuple(merged.get("kernel_urls") or ())
    if not merged.get("driver_version"):
        merged["driver_version"] = default_driver_version()
    if merged["jobs"] < 1:
        raise UsageError(f"--jobs must be at least 1, got {merged['jobs']}")
    if merged["timeout"] < 1:
        raise UsageError(f"--timeout must be at least 1 second, got {merged['timeout']}")
    mirrors = resolve_mirrors(
        merged["debian_mirror"],
        merged["debian_security_mirror"],
        merged["debian_keyring"],
        discovered_mirrors,
    )
    return BuildConfig(**merged, mirrors=mirrors)


def choose_target(kr: KernelRelease, name: str | None) -> Target:
    return get_target(name) if name else infer_target(kr)


def resolve_plan(
    kernel: str,
    cfg: BuildConfig,
    mirrors: Mirrors | None = None,
    *,
    target: str | None = None,
    kernel_version: str | None = None,
    kernel_urls: tuple[str, ...] = (),
) -> BuildPlan:
    """release → target → gcc → builder → image tag → header URLs → artifact names; no I/O.

    The builder image tag is hashed here and only here: everything after resolution
    (dry run, processors, `images build`) reads it from the plan. `mirrors` defaults to
    the config's resolved ones.
    """
    from driverkit.images import builder_image_tag

    kr = parse_kernel_release(kernel)
    raw_version = kernel_version or cfg.kernel_version
    parse_kernel_version(raw_version)  # validates; targets keep the raw text for fix-ups
    chosen = choose_target(kr, target or cfg.target)
    builder = chosen.builder(kr)
    if cfg.gcc_version:
        builder = dataclasses.replace(builder, gcc=cfg.gcc_version)
    headers = (
        kernel_urls
        or cfg.kernel_urls
        or chosen.header_urls(kr, raw_version, cfg.mirrors if mirrors is None else mirrors,
                              arch=cfg.arch)
    )
    plan = BuildPlan(
        kernel=kr,
        kernel_version=raw_version,
        arch=cfg.arch,
        target=chosen.name,
        artifact=chosen.artifact_kernel(kr, raw_version),
        gcc=builder.gcc,
        builder=builder,
        builder_image=cfg.builder_image or builder_image_tag(builder, cfg.base_from),
        builder_image_forced=bool(cfg.builder_image),
        base_from=cfg.base_from,
        headers=tuple(headers),
        driver_name=cfg.driver_name,
        driver_version=cfg.driver_version,
        build_kmod=cfg.build_kmod,
        build_probe=cfg.build_probe,
    )
    log.debug(
        "%s: target %s, gcc %s, builder image %s (%s)",
        kernel,
        plan.target,
        plan.gcc,
        plan.builder_image,
        "forced" if plan.builder_image_forced else f"base from {plan.base_from}",
    )
    return plan


def plan_to_json(plan: BuildPlan) -> dict[str, Any]:
    """The shape `driverkit resolve` prints."""
    return {
        "kernel": plan.kernel.to_json(),
        "kernel_version": plan.kernel_version,
        "arch": plan.arch,
        "target": plan.target,
        "target_id": plan.artifact.target_id,
        "artifact_kernel_release": plan.artifact.kernel_release,
        "artifact_kernel_version": plan.artifact.kernel_version,
        "gcc": plan.gcc,
        "builder": dataclasses.asdict(plan.builder),
        "builder_image": plan.builder_image,
        "headers": list(plan.headers),
        "driver_name": plan.driver_name,
        "driver_version": plan.driver_version,
        "artifacts": list(plan.artifact_names()),
        "output_dir": f"{plan.driver_version}/{plan.arch}",
    }
