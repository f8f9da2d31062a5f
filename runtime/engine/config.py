"""Engine configuration: a Falco-like YAML file, then command-line flags on top.

The YAML is validated key by key against a small schema so a typo (`tresh0ld`) fails with a
did-you-mean instead of silently falling back to a default; Falco's own config loader accepts
unknown keys, which is how misconfigured drop thresholds go unnoticed for months.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from drivercore import yamlsafe
from drivercore.errors import UsageError

if TYPE_CHECKING:
    from runtime.loader.config import LoaderConfig

DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
# The driver's ring is allocated once at this size (per CPU for the module): a typo adding
# digits must be refused here, not met as an allocation failure inside the driver.
MAX_BUFFER_BYTES = 1024 * 1024 * 1024
# auto: the loader (runtime/loader) picks, fetches and verifies one, per the `loader:` section.
DRIVER_KINDS = ("core", "ebpf", "kmod", "auto")
DROP_ACTIONS = ("ignore", "log", "alert", "exit")


@dataclass(frozen=True)
class DropConfig:
    """Falco's `syscall_event_drops`: when and how loudly to report lost events."""

    threshold: float = 0.1  # fraction of the last second's events that were lost
    actions: tuple[str, ...] = ("log", "alert")
    rate: float = 1 / 30  # actions per second the token bucket refills
    max_burst: int = 1
    simulate_drops: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    interval: float = 15.0
    output_file: Path | None = None  # JSON lines; None -> stderr
    prometheus_port: int | None = None
    prometheus_addr: str = "127.0.0.1"


@dataclass(frozen=True)
class WebhookConfig:
    url: str | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class OutputsConfig:
    queue_size: int = 10000
    stdout: bool = True
    file: Path | None = None


@dataclass(frozen=True)
class ExtraField:
    """One `extra_fields` item: a field to extract, or a fixed `name: value` pair."""

    name: str
    value: str | None = None  # None: `name` is a field, extracted per alert


@dataclass(frozen=True)
class AppendOutput:
    """One falco.yaml `append_output` entry; a rule gets it when every given match holds."""

    source: str | None = None
    tags: tuple[str, ...] = ()  # the rule must carry all of them
    rule: str | None = None
    extra_output: str = ""
    extra_fields: tuple[ExtraField, ...] = ()


@dataclass(frozen=True)
class EngineConfig:
    driver: str = "core"
    probe: Path | None = None
    # The loader's rtcap-driver.json: load the driver it names (after checking its sha256).
    driver_file: Path | None = None
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    rules_files: tuple[Path, ...] = ()
    json_output: bool = False
    priority: str = "debug"
    duration: float | None = None
    record: Path | None = None
    replay: Path | None = None
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    syscall_event_drops: DropConfig = field(default_factory=DropConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    append_output: tuple[AppendOutput, ...] = ()
    loader: LoaderConfig = field(default_factory=lambda: _loader_section("loader", None))


def _loader_section(where: str, raw: object) -> LoaderConfig:
    # Imported late: the loader's parser builds on this module's validators.
    from runtime.loader.config import parse_loader_section

    return parse_loader_section(where, raw)


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(choices)})"


def _bool(where: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"{where}: expected true or false, got {_short(value)}")


def _number(where: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{where}: expected a number, got {_short(value)}")
    # A huge integer does not fit a float; .inf/.nan would reach sleeps and rate maths.
    number = float(value) if isinstance(value, float) or abs(value) < 2**53 else math.inf
    if not math.isfinite(number):
        raise UsageError(f"{where}: expected a finite number, got {_short(value)}")
    if number < minimum:
        raise UsageError(f"{where}: must be >= {minimum}, got {_short(value)}")
    return number


def _int(where: str, value: object, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{where}: expected an integer, got {_short(value)}")
    if not minimum <= value <= maximum:
        raise UsageError(f"{where}: must be in {minimum}..{maximum}, got {_short(value)}")
    return value


def _short(value: object) -> str:
    # A hostile value (a 10,000-digit integer, a long string) must not become the message.
    if isinstance(value, int) and value.bit_length() > 64:  # repr of 4300+ digits raises
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _str(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: expected a non-empty string, got {_short(value)}")
    return value


def _path_or_none(where: str, value: object) -> Path | None:
    if value is None:
        return None
    text = _str(where, value)
    if "\0" in text:  # the OS refuses it later with a ValueError, not a message
        raise UsageError(f"{where}: a path cannot contain a NUL byte, got {_short(text)}")
    return Path(text)


def _choice(where: str, value: object, choices: tuple[str, ...]) -> str:
    text = _str(where, value)
    if text not in choices:
        raise UsageError(f"{where}: unknown value {_short(text)}{_did_you_mean(text, choices)}")
    return text


def _section(where: str, value: object, known: tuple[str, ...]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in known:
            raise UsageError(f"{where}: unknown key {key!r}{_did_you_mean(str(key), known)}")
    return value


def _drops(where: str, raw: object) -> DropConfig:
    section = _section(
        where, raw, ("threshold", "actions", "rate", "max_burst", "simulate_drops")
    )
    base = DropConfig()
    actions = base.actions
    if "actions" in section:
        items = section["actions"]
        if not isinstance(items, list) or not items:
            raise UsageError(f"{where}.actions: expected a non-empty list of {DROP_ACTIONS}")
        actions = tuple(_choice(f"{where}.actions", a, DROP_ACTIONS) for a in items)
    threshold = _number(f"{where}.threshold", section.get("threshold", base.threshold))
    if threshold > 1:
        raise UsageError(f"{where}.threshold: a fraction between 0 and 1, got {threshold}")
    return DropConfig(
        threshold=threshold,
        actions=actions,
        rate=_number(f"{where}.rate", section.get("rate", base.rate)),
        max_burst=_int(f"{where}.max_burst", section.get("max_burst", base.max_burst), minimum=1),
        simulate_drops=_bool(
            f"{where}.simulate_drops", section.get("simulate_drops", base.simulate_drops)
        ),
    )


def _metrics(where: str, raw: object) -> MetricsConfig:
    section = _section(
        where, raw, ("enabled", "interval", "output_file", "prometheus_port", "prometheus_addr")
    )
    base = MetricsConfig()
    port = section.get("prometheus_port", base.prometheus_port)
    return MetricsConfig(
        enabled=_bool(f"{where}.enabled", section.get("enabled", base.enabled)),
        interval=_number(f"{where}.interval", section.get("interval", base.interval), minimum=0.01),
        output_file=_path_or_none(f"{where}.output_file", section.get("output_file")),
        prometheus_port=None if port is None else _port(f"{where}.prometheus_port", port),
        prometheus_addr=_str(
            f"{where}.prometheus_addr", section.get("prometheus_addr", base.prometheus_addr)
        ),
    )


def _port(where: str, value: object) -> int:
    port = _int(where, value)
    if port > 65535:
        raise UsageError(f"{where}: a TCP port is 0..65535, got {port}")
    return port


def _webhook(where: str, raw: object) -> WebhookConfig:
    section = _section(where, raw, ("url", "timeout"))
    url = section.get("url")
    if url is not None and not _str(f"{where}.url", url).startswith(("http://", "https://")):
        raise UsageError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    return WebhookConfig(
        url=url,
        timeout=_number(f"{where}.timeout", section.get("timeout", 5.0), minimum=0.01),
    )


def _outputs(where: str, raw: object) -> OutputsConfig:
    section = _section(where, raw, ("queue_size", "stdout", "file"))
    return OutputsConfig(
        queue_size=_int(f"{where}.queue_size", section.get("queue_size", 10000), minimum=1),
        stdout=_bool(f"{where}.stdout", section.get("stdout", True)),
        file=_path_or_none(f"{where}.file", section.get("file")),
    )


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(text: str) -> str:
    # falco.yaml's `${HOME}` form; an unset variable expands to nothing, as in Falco.
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), text)


def _extra_field(where: str, raw: object) -> ExtraField:
    if isinstance(raw, str):
        return ExtraField(_str(where, raw))
    if isinstance(raw, dict) and len(raw) == 1:
        ((name, value),) = raw.items()
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(f"{where}: {name!r}: expected a text or number value,"
                             f" got {_short(value)}")
        return ExtraField(_str(where, name), _expand_env(str(value)))
    raise UsageError(f"{where}: expected a field name or one `name: value` pair,"
                     f" got {_short(raw)}")


def _append_output(where: str, raw: object) -> tuple[AppendOutput, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UsageError(f"{where}: expected a list of entries (match, extra_output,"
                         " extra_fields)")
    entries: list[AppendOutput] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        section = _section(at, item, ("match", "extra_output", "extra_fields"))
        match = _section(f"{at}.match", section.get("match"), ("source", "tags", "rule"))
        tags = match.get("tags", [])
        if not isinstance(tags, list):
            raise UsageError(f"{at}.match.tags: expected a list of tags, got {_short(tags)}")
        fields = section.get("extra_fields", [])
        if not isinstance(fields, list):
            raise UsageError(f"{at}.extra_fields: expected a list, got {_short(fields)}")
        extra_output = section.get("extra_output", "")
        if not isinstance(extra_output, str):
            raise UsageError(f"{at}.extra_output: expected text, got {_short(extra_output)}")
        entries.append(AppendOutput(
            source=_str(f"{at}.match.source", match["source"]) if "source" in match else None,
            tags=tuple(_str(f"{at}.match.tags", tag) for tag in tags),
            rule=_str(f"{at}.match.rule", match["rule"]) if "rule" in match else None,
            extra_output=extra_output.strip(),
            extra_fields=tuple(_extra_field(f"{at}.extra_fields[{i}]", f)
                               for i, f in enumerate(fields)),
        ))
    return tuple(entries)


def _rules_files(where: str, raw: object) -> tuple[Path, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise UsageError(f"{where}: expected a list of rule file paths")
    return tuple(Path(_str(where, item)) for item in raw)


_TOP_LEVEL: dict[str, Callable[[str, object], object]] = {
    "driver": lambda w, v: _choice(w, v, DRIVER_KINDS),
    "probe": _path_or_none,
    "driver_file": _path_or_none,
    "buffer_bytes": lambda w, v: _int(w, v, minimum=4096, maximum=MAX_BUFFER_BYTES),
    "rules_files": _rules_files,
    "json_output": _bool,
    "priority": _str,
    "duration": lambda w, v: None if v is None else _number(w, v, minimum=0.0),
    "record": _path_or_none,
    "replay": _path_or_none,
    "outputs": _outputs,
    "webhook": _webhook,
    "syscall_event_drops": _drops,
    "metrics": _metrics,
    "append_output": _append_output,
    "loader": _loader_section,
}


def parse_config(raw: object, origin: str) -> EngineConfig:
    """Validate a parsed YAML document; `origin` names it in error messages."""
    section = _section(origin, raw, tuple(_TOP_LEVEL))
    values = {key: _TOP_LEVEL[key](f"{origin}: {key}", value) for key, value in section.items()}
    return EngineConfig(**values)  # type: ignore[arg-type]


def load_config(path: Path | None) -> EngineConfig:
    if path is None:
        return EngineConfig()
    try:
        with path.open("rb") as fh:
            # One byte over the limit is enough for yamlsafe to refuse it by size.
            data = fh.read(yamlsafe.MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"config {path}: cannot read: {exc.strerror}; pass a readable"
                         " --config FILE") from None
    try:
        raw = yamlsafe.load(data)
    except yamlsafe.UnsafeYamlError as exc:
        where = f": line {exc.line} column {exc.col}" if exc.line else ""
        raise UsageError(f"config {path}{where}: refused: {exc}") from None
    except ValueError as exc:
        # PyYAML's int() of a scalar past Python's 4300-digit conversion limit.
        raise UsageError(f"config {path}: a value cannot be read ({str(exc)[:80]});"
                         " use a realistic number") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"config {path}:{where}: invalid YAML: {problem}") from None
    return parse_config(raw, f"config {path}")


def with_overrides(config: EngineConfig, **flags: object) -> EngineConfig:
    """Apply command-line flags; a flag left at None keeps the config file's value."""
    top: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None or value == ():
            continue
        if key == "metrics_port":
            metrics["prometheus_port"] = value
        elif key == "stats_interval":
            metrics["interval"] = value
            metrics["enabled"] = True
        elif key in _TOP_LEVEL:
            top[key] = value
        else:  # a programming error in the CLI, not user input
            raise ValueError(f"no config key for flag {key!r}")
    if metrics:
        top["metrics"] = replace(config.metrics, **metrics)
    return replace(config, **top)
