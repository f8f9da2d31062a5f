"""Merge option sources into a frozen BuildConfig, and resolve build plans from it.

Resolution here is pure: the only inputs are the config, the target tables and the
mirror roots; nothing here reaches the network or a container engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drivercore.kernelrelease import KernelRelease, parse_kernel_release, parse_kernel_version
from driverkit import DRIVER_DIR
from driverkit.errors import UsageError
from driverkit.options import OPTIONS, defaults, values_from_env, values_from_yaml
from driverkit.plan import BuildPlan
from driverkit.targets import get_target, infer_target
from driverkit.targets.base import Mirrors, Target


@dataclass(frozen=True)
class BuildConfig:
    kernels: tuple[str, ...]
    kernel_version: str
    target: str | None
    arch: str
    driver_version: str
    driver_name: str
    gcc_version: str | None
    builder_image: str | None
    kernel_urls: tuple[str, ...]
    debian_mirror: str | None
    debian_security_mirror: str | None
    debian_keyring: str | None
    base_from: str
    output: Path
    output_module: Path | None
    output_probe: Path | None
    processor: str
    build_kmod: bool
    build_probe: bool
    catalog: Path | None
    jobs: int
    timeout: int
    cache_dir: Path
    dry_run: bool
    loglevel: str

    def mirrors(self) -> Mirrors:
        # Imported here: mirror discovery reads /etc/apt, which pure callers may not want.
        from driverkit.mirrors import default_mirrors

        discovered = default_mirrors()
        return Mirrors(
            debian=(self.debian_mirror or discovered.debian).rstrip("/"),
            debian_security=(self.debian_security_mirror or discovered.debian_security).rstrip("/"),
            ubuntu=discovered.ubuntu,
            debian_keyring=self.debian_keyring or discovered.debian_keyring,
        )


def default_driver_version() -> str:
    version_file = DRIVER_DIR / "VERSION"
    if version_file.is_file():
        return version_file.read_text().strip()
    return "0.0.0-dev"


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
) -> BuildConfig:
    """defaults < config file < environment < command line (driverkit's order)."""
    merged: dict[str, Any] = defaults()
    if config_path is not None:
        merged.update(read_config_file(config_path))
    merged.update(values_from_env(environ))
    for name, value in cli_values.items():
        if value is None or value == ():
            continue
        option = next(opt for opt in OPTIONS if opt.name == name)
        merged[name] = option.convert(value, f"option {option.flags[0]}")
    merged["kernels"] = tuple(merged.get("kernels") or ())
    merged["kernel_urls"] = tuple(merged.get("kernel_urls") or ())
    if not merged.get("driver_version"):
        merged["driver_version"] = default_driver_version()
    if merged["jobs"] < 1:
        raise UsageError(f"--jobs must be at least 1, got {merged['jobs']}")
    if merged["timeout"] < 1:
        raise UsageError(f"--timeout must be at least 1 second, got {merged['timeout']}")
    field_names = {f.name for f in dataclasses.fields(BuildConfig)}
    return BuildConfig(**{k: v for k, v in merged.items() if k in field_names})


def choose_target(kr: KernelRelease, name: str | None) -> Target:
    return get_target(name) if name else infer_target(kr)


def resolve_plan(
    kernel: str,
    cfg: BuildConfig,
    mirrors: Mirrors,
    *,
    target: str | None = None,
    kernel_version: str | None = None,
    kernel_urls: tuple[str, ...] = (),
) -> BuildPlan:
    """release → target → gcc → builder → header URLs → artifact names; no I/O."""
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
        or chosen.header_urls(kr, raw_version, mirrors, arch=cfg.arch)
    )
    return BuildPlan(
        kernel=kr,
        kernel_version=raw_version,
        arch=cfg.arch,
        target=chosen.name,
        artifact=chosen.artifact_kernel(kr, raw_version),
        gcc=builder.gcc,
        builder=builder,
        builder_image=cfg.builder_image or builder_image_tag(builder, cfg.base_from),
        headers=tuple(headers),
        driver_name=cfg.driver_name,
        driver_version=cfg.driver_version,
        build_kmod=cfg.build_kmod,
        build_probe=cfg.build_probe,
    )


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
