"""What every `driverkit` command shares: options from the one table (flags, YAML, env),
the merged config, logging, and the plans a config names."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from driverkit.config import load_config, resolve_plan
from driverkit.errors import UsageError
from driverkit.options import OPTIONS, BuildConfig, Option
from driverkit.plan import BuildPlan

if TYPE_CHECKING:
    from driverkit.catalog import CatalogEntry

F = TypeVar("F", bound=Callable[..., Any])

def _click_option(opt: Option) -> Callable[[F], F]:
    if opt.kind == "bool" and "/" in opt.flags[0]:
        return click.option(*opt.flags, opt.name, default=None, help=opt.help)
    if opt.kind == "bool":
        return click.option(*opt.flags, opt.name, is_flag=True, default=None, help=opt.help)
    # Values stay text here: the option table converts and checks them, the same way as
    # a config file's and an environment variable's, so there is one accepted form.
    choices = f" (one of {', '.join(opt.choices)})" if opt.choices else ""
    kwargs: dict[str, Any] = {
        "default": None,
        "type": str,
        "help": opt.help + choices + f" [env {opt.env_var}]",
    }
    if opt.kind == "list":
        kwargs["multiple"] = True
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


_STATUS_COLOURS = {"built": "green", "skipped": "blue", "failed": "red"}


class _ConsoleLogHandler(logging.Handler):
    """Log lines on stderr through rich: while a build's progress bar is live they land
    above it, and a build's per-kernel lines (records with a `status`) are coloured."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console

        self.console = Console(stderr=True)

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        try:
            message = record.getMessage()
            status = getattr(record, "status", None)
            if status is None and record.levelno >= logging.WARNING:
                message = f"driverkit: {record.levelname.lower()}: {message}"
            text = Text(message)
            if isinstance(status, str) and message.startswith(status):
                text.stylize(_STATUS_COLOURS.get(status, "red"), 0, len(status))
            self.console.print(text, soft_wrap=True)
        except Exception:
            self.handleError(record)


def configure_logging(level: int) -> None:
    """Send the `driverkit` loggers to stderr at `level` (the --loglevel option)."""
    logger = logging.getLogger("driverkit")
    logger.setLevel(level)
    if not any(isinstance(h, _ConsoleLogHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleLogHandler())


def config_from(params: dict[str, Any]) -> BuildConfig:
    config_path = params.pop("config_path", None)
    cfg = load_config(params, config_path)
    configure_logging(cfg.log_level)
    return cfg


def catalog_plan(entry: CatalogEntry, cfg: BuildConfig) -> BuildPlan:
    """The plan for one catalog kernel: its target, `uname -v` and header URLs as listed."""
    return resolve_plan(
        entry.kernelrelease,
        cfg,
        target=entry.target,
        kernel_version=entry.kernelversion,
        kernel_urls=tuple(entry.headers),
    )


def plans_from_config(cfg: BuildConfig) -> list[BuildPlan]:
    plans = [resolve_plan(kernel, cfg) for kernel in cfg.kernels]
    if cfg.catalog is not None:
        from driverkit.catalog import load_catalog

        plans += [catalog_plan(entry, cfg) for entry in load_catalog(cfg.catalog, cfg.mirrors)]
    if not plans:
        raise UsageError("no kernel given: pass --kernel REL (repeatable) or --catalog FILE")
    return plans
