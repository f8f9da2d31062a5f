"""Merge option sources into a frozen BuildConfig, and resolve build plans from it.

`BuildConfig` and its option table live in driverkit.options; this module fills one from
defaults, a config file, the environment and flags, with the run's mirrors resolved once.
Plan resolution here is pure: the only inputs are the config, the target tables and the
mirror roots; nothing here reaches the network or a container engine.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from drivercore import yamlsafe
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
from driverkit.targets.base import HeaderFormat, Mirrors, Target

__all__ = [
    "BuildConfig",
    "choose_target",
    "load_config",
    "plan_to_json",
    "read_config_file",
    "resolve_plan",
]

log = logging.getLogger(__name__)


# A driverkit config is a few dozen keys: these bounds are far above any real one and far
# below what would cost memory or time (an alias bomb is refused while still composed).
CONFIG_MAX_BYTES = 1024 * 1024
CONFIG_MAX_NODES = 100_000
CONFIG_MAX_DEPTH = 32


def _one_line(message: str, limit: int = 160) -> str:
    """A parser's message, which may quote the input, as one bounded ASCII line."""
    text = ascii(message)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def read_config_file(path: Path) -> dict[str, Any]:
    """Option values from a driverkit config YAML, every scalar read as its text.

    Text scalars mean the option table sees `0.10` (not 0.1), `010` (not 8) and `1:30`
    (not 90), and decides per option what the text may be.
    """
    source = f"config {path}"
    try:
        with path.open("rb") as handle:
            data = handle.read(CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{source}: cannot read it ({exc.strerror})") from None
    try:
        document = yamlsafe.load(
            data,
            scalars="text",
            max_nodes=CONFIG_MAX_NODES,
            max_depth=CONFIG_MAX_DEPTH,
            max_bytes=CONFIG_MAX_BYTES,
        )
    except yamlsafe.UnsafeYamlError as exc:
        where = f" at line {exc.line}, column {exc.col}" if exc.line else ""
        raise UsageError(f"{source}: refused{where}: {_one_line(str(exc))}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UsageError(f"{source}: not valid YAML{where} ({_one_line(problem)})") from None
    return values_from_yaml(document, source)


MAX_KERNEL_CONFIG_BYTES = 3 << 20  # a distro .config is ~250 KB; base64 stays under 4 MiB


def read_kernel_config(path: Path) -> str:
    """A kernel .config file, base64-encoded as driverkit's kernelconfigdata carries it;
    UsageError (one line) when it is not one."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KERNEL_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--kernel-config {path}: cannot read it ({exc.strerror})") from exc
    if len(data) > MAX_KERNEL_CONFIG_BYTES:
        raise UsageError(f"--kernel-config {path}: larger than {MAX_KERNEL_CONFIG_BYTES} "
                         "bytes, not a kernel .config")
    if b"\nCONFIG_" not in b"\n" + data:
        raise UsageError(f"--kernel-config {path}: no CONFIG_ lines; pass the kernel's "
                         ".config (e.g. /boot/config-<release>)")
    return base64.b64encode(data).decode()


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
    merged["repo_mirrors"] = tuple(merged.get("repo_mirrors") or ())
    if merged.get("kernel_config") is not None:
        # Read once, here: the plan carries the content, so the build script (and the
        # skip check's hash) see exactly what was read.
        if merged.get("kernel_config_data"):
            raise UsageError("--kernel-config and kernelconfigdata both name the kernel's "
                             ".config: give one")
        merged["kernel_config_data"] = read_kernel_config(merged["kernel_config"])
    if not merged.get("driver_version"):
        merged["driver_version"] = default_driver_version()
    # The default comes from driver/VERSION, a file: held to the same form as the option,
    # since it names the output folder and the repository path.
    merged["driver_version"] = BY_NAME["driver_version"].convert(
        merged["driver_version"], "driver/VERSION"
    )
    mirrors = resolve_mirrors(
        merged["debian_mirror"],
        merged["debian_security_mirror"],
        merged["debian_keyring"],
        discovered_mirrors,
        tuple(merged.get("repo_mirrors") or ()),
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
    builder = chosen.builder(kr, forced_gcc=cfg.gcc_version)
    gcc_note = chosen.gcc_note(kr, builder)
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
        gcc_note=gcc_note,
        from_sources=chosen.header_format is HeaderFormat.VANILLA,
        kernel_config=(cfg.kernel_config_data or "")
        if chosen.header_format is HeaderFormat.VANILLA
        else "",
    )
    if gcc_note:  # once the plan stands: a kernel refused later gets only its error
        log.warning("%s: %s", kernel, gcc_note)
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
        "wanted_gcc": plan.wanted_gcc,
        "gcc_note": plan.gcc_note,
        "from_sources": plan.from_sources,
        "kernel_config_sha256": (
            hashlib.sha256(base64.b64decode(plan.kernel_config)).hexdigest()
            if plan.kernel_config
            else ""
        ),
        "builder": dataclasses.asdict(plan.builder),
        "builder_image": plan.builder_image,
        "headers": list(plan.headers),
        "driver_name": plan.driver_name,
        "driver_version": plan.driver_version,
        "artifacts": list(plan.artifact_names()),
        "output_dir": f"{plan.driver_version}/{plan.arch}",
    }
