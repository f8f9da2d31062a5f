"""`rt-engine driver detect | printenv | install | cleanup`: the loader's commands.

Every option also comes from the engine config file's `loader:` section (`--config`) and
from an RT_ENGINE_LOADER_<KEY> environment variable (runtime/loader/config.py); a flag beats
the environment, which beats the file. Progress goes to stderr, one line per step; results
go to stdout.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drivercore.errors import ToolError
from drivercore.naming import ArtifactKind
from runtime.engine.config import load_config
from runtime.loader.choose import DRIVER_TYPES
from runtime.loader.config import (
    LoaderConfig,
    loader_from_environment,
    loader_with_overrides,
)
from runtime.loader.fetch import cleanup as cleanup_cache
from runtime.loader.install import HANDOVER_FILE, Detection, detect, install
from runtime.loader.kmodload import load_module


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_PATH = click.Path(path_type=Path)
_LOADER_OPTIONS: tuple[Callable[[Any], Any], ...] = (
    click.option("--config", "config_path", type=_PATH, default=None,
                 help="Engine config YAML (its `loader:` section)."),
    click.option("--type", "type", type=click.Choice(DRIVER_TYPES), default=None,
                 help="Driver type; auto picks by host (default auto)."),
    click.option("--driver-version", default=None,
                 help="Driver version folder in the repository."),
    click.option("--repo", "repos", multiple=True,
                 help="Repository URL or directory (repeatable; tried in order)."),
    click.option("--public-key", default=None,
                 help="Pinned index key: `ed25519:...` or the .pub FILE."),
    click.option("--host-root", type=_PATH, default=None, help="The host's / (default /)."),
    click.option("--state-dir", type=_PATH, default=None, help="Cache folder for artifacts."),
    click.option("--kernel-release", default=None, help="Override `uname -r`."),
    click.option("--kernel-version", default=None, help="Override `uname -v`."),
    click.option("--timeout", type=click.FloatRange(min=0.1), default=None,
                 help="Seconds per HTTP try (default 30)."),
    click.option("--retries", type=click.IntRange(min=0), default=None,
                 help="Retries per repository (default 2)."),
    click.option("--allow-build", "allow_build", is_flag=True, default=None,
                 help="When no repository has the driver, build it with driverkit here."),
)


_FLAG_KEYS = ("type", "driver_version", "repos", "public_key", "host_root", "state_dir",
              "kernel_release", "kernel_version", "timeout", "retries", "allow_build")


def loader_options(command: Callable[..., None]) -> Callable[..., None]:
    """The shared options, resolved into one LoaderConfig passed as `cfg`; a ToolError
    becomes one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(config_path: Path | None, **kwargs: Any) -> None:
        flags = {key: kwargs.pop(key) for key in list(kwargs) if key in _FLAG_KEYS}
        try:
            from_file = load_config(config_path).loader
            cfg = loader_with_overrides(loader_from_environment(from_file, os.environ), **flags)
            command(cfg, **kwargs)
        except ToolError as exc:
            click.echo(f"rt-engine: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    decorated: Callable[..., None] = wrapper
    for option in reversed(_LOADER_OPTIONS):
        decorated = option(decorated)
    return decorated


@click.group()
def driver() -> None:
    """Find, fetch and verify the rtcap driver that fits this host."""


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def detection_lines(found: Detection) -> list[tuple[str, str]]:
    """(key, value) pairs shared by `detect` (aligned text) and `printenv` (KEY=VALUE)."""
    host, target, choice = found.host, found.target, found.choice
    osr = host.os_release
    first = choice.candidates[0]
    return [
        ("host_root", str(host.host_root)),
        ("kernel_release", host.kernel_release),
        ("kernel_version", host.kernel_version),
        ("arch", host.machine),
        ("distro_id", osr.id),
        ("distro_version_id", osr.version_id),
        ("distro_source", osr.source),
        ("btf", _yes(host.btf)),
        ("ring_buffer", _yes(host.ring_buffer)),
        ("modules", _yes(host.modules.can_load)),
        ("modules_reason", host.modules.reason),
        ("lockdown", host.lockdown or "none"),
        ("secure_boot", "unknown (no EFI variables)" if host.secure_boot is None
         else _yes(host.secure_boot)),
        ("target", target.kernel.target_id),
        ("target_reason", target.reason),
        ("artifact_release", target.kernel.kernel_release),
        ("artifact_version", target.kernel.kernel_version),
        ("core_file", target.artifact_file(ArtifactKind.CORE)),
        ("kmod_file", target.artifact_file(ArtifactKind.KMOD)),
        ("probe_file", target.artifact_file(ArtifactKind.PROBE)),
        ("requested", str(choice.requested)),
        ("choice", str(first.kind)),
        ("choice_file", first.file),
        ("choice_reason", first.reason),
        ("candidates", " ".join(str(c.kind) for c in choice.candidates)),
        ("ruled_out", "; ".join(f"{kind}: {why}" for kind, why in choice.ruled_out)),
        ("warnings", "; ".join(target.warnings)),
    ]


@driver.command("detect")
@loader_options
def detect_command(cfg: LoaderConfig) -> None:
    """Print what the loader sees on this host, the names it would fetch and its choice."""
    for key, value in detection_lines(detect(cfg, _log)):
        click.echo(f"{key.replace('_', ' ') + ':':<18} {value}")


@driver.command("printenv")
@loader_options
def printenv_command(cfg: LoaderConfig) -> None:
    """The same as `detect`, as RTCAP_KEY=value lines a shell can `eval`."""
    for key, value in detection_lines(detect(cfg, _log)):
        click.echo(f"RTCAP_{key.upper()}={shlex.quote(value)}")


@driver.command("install")
@loader_options
@click.option("--download-only", is_flag=True, default=False,
              help="Only fetch and verify; with --dest, hand the artifact to an engine.")
@click.option("--dest", type=_PATH, default=None,
              help=f"With --download-only: write it and {HANDOVER_FILE} here "
                   "(default: loader.dest in the config).")
def install_command(cfg: LoaderConfig, download_only: bool, dest: Path | None) -> None:
    """Fetch the chosen driver, verify it against the signed index and cache it; a module
    is then loaded (vermagic checked first), unless --download-only."""
    if dest is not None and not download_only:
        raise click.UsageError("--dest goes with --download-only")
    if download_only and dest is None:
        dest = cfg.dest  # the config both containers read names the hand-over folder
    done = install(cfg, _log, dest=dest)
    where = done.handed_over or done.fetched.path
    if done.candidate.kind is ArtifactKind.KMOD and not download_only:
        loaded = load_module(done.fetched.path, kernel_root=done.detection.host.kernel_root)
        _log(f"loader: load: {done.candidate.file} {loaded.action} ({loaded.millis:.0f} ms)")
    click.echo(
        f"{done.candidate.kind} {done.candidate.file} sha256 {done.fetched.entry.sha256} "
        f"from {done.fetched.source}: {where}"
    )


@driver.command("cleanup")
@loader_options
def cleanup_command(cfg: LoaderConfig) -> None:
    """Remove the cached artifacts of this driver from the state directory."""
    removed = cleanup_cache(cfg.state_dir, _log)
    click.echo(f"removed {removed} files from {cfg.state_dir}")
