"""One declarative table of build options.

Each `Option` row drives the click flag, the driverkit-compatible config-YAML key, the
`DRIVERKIT_*` environment variable and the help text, so the three sources can never
disagree about names, types or defaults. Precedence follows driverkit (viper):
command-line flag > environment > config file > default.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driverkit.errors import UsageError

ENV_PREFIX = "DRIVERKIT_"

Converter = Callable[[Any, str], Any]


def _as_str(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{where}: expected a string, got {value!r}")
    return str(value)


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{where}: expected a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expected a whole number, got {value!r}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{where}: expected true or false, got {value!r}")


def _as_str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        # Environment variables carry lists comma-separated, as viper reads them.
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(_as_str(item, where) for item in value)
    return (_as_str(value, where),)


CONVERTERS: dict[str, Converter] = {
    "str": _as_str,
    "int": _as_int,
    "bool": _as_bool,
    "list": _as_str_list,
    "path": lambda v, where: (v if isinstance(v, Path) else Path(_as_str(v, where))).expanduser(),
}


@dataclass(frozen=True)
class Option:
    name: str  # attribute of BuildConfig
    flags: tuple[str, ...]  # first is canonical; the rest are driverkit spellings
    yaml_key: str  # dotted for nested driverkit keys, e.g. "output.module"
    kind: str  # a key of CONVERTERS
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()
    commands: frozenset[str] = field(default_factory=lambda: frozenset({"build", "resolve"}))
    env: str = ""  # only where a readable name beats the derived one

    @property
    def env_var(self) -> str:
        return self.env or ENV_PREFIX + self.yaml_key.replace(".", "_").replace("-", "_").upper()

    def convert(self, value: Any, where: str) -> Any:
        converted = CONVERTERS[self.kind](value, where)
        if self.choices and converted not in self.choices:
            raise UsageError(f"{where}: {converted!r} is not one of {', '.join(self.choices)}")
        return converted


BUILD_ONLY = frozenset({"build"})

OPTIONS: tuple[Option, ...] = (
    Option(
        "kernels",
        ("--kernel", "--kernelrelease"),
        "kernelrelease",
        "list",
        "Kernel release as `uname -r` prints it; repeat to build several.",
    ),
    Option(
        "kernel_version",
        ("--kernel-version", "--kernelversion"),
        "kernelversion",
        "str",
        "Kernel build number, or the whole `uname -v` text.",
        default="1",
    ),
    Option(
        "target",
        ("--target",),
        "target",
        "str",
        "Distro target; inferred from the release when omitted.",
    ),
    Option(
        "arch",
        ("--arch", "--architecture"),
        "architecture",
        "str",
        "Architecture of the target kernel.",
        default="amd64",
        choices=("amd64", "arm64"),
    ),
    Option(
        "driver_version",
        ("--driver-version", "--driverversion"),
        "driverversion",
        "str",
        "Driver version to build; defaults to driver/VERSION.",
    ),
    Option(
        "driver_name",
        ("--driver-name", "--drivername"),
        "drivername",
        "str",
        "Driver name used in artifact file names.",
        default="rtcap",
    ),
    Option(
        "gcc_version",
        ("--gcc-version", "--gccversion"),
        "gccversion",
        "str",
        "Force a GCC version instead of the target's choice.",
    ),
    Option(
        "builder_image",
        ("--builder-image", "--builderimage"),
        "builderimage",
        "str",
        "Force a builder image instead of the target's choice.",
    ),
    Option(
        "kernel_urls",
        ("--kernel-urls", "--kernelurls"),
        "kernelurls",
        "list",
        "Header package URLs to use instead of the target's candidates.",
    ),
    Option(
        "debian_mirror",
        ("--debian-mirror",),
        "debianmirror",
        "str",
        "Debian archive root; read from the host's apt sources when omitted.",
        env="DRIVERKIT_DEBIAN_MIRROR",
    ),
    Option(
        "debian_security_mirror",
        ("--debian-security-mirror",),
        "debiansecuritymirror",
        "str",
        "Debian security archive root; read from apt sources when omitted.",
        env="DRIVERKIT_DEBIAN_SECURITY_MIRROR",
    ),
    Option(
        "debian_keyring",
        ("--debian-keyring",),
        "debiankeyring",
        "str",
        "GnuPG keyring(s) the Debian archive's InRelease must be signed by "
        "(':'-separated); default: the host's debian-archive-keyring.",
        env="DRIVERKIT_DEBIAN_KEYRING",
    ),
    Option(
        "base_from",
        ("--base-from",),
        "basefrom",
        "str",
        "Where builder base images come from: a registry, or a local debootstrap.",
        default="registry",
        choices=("registry", "debootstrap"),
    ),
    Option(
        "output",
        ("--output",),
        "output.dir",
        "path",
        "Directory for artifacts (laid out <driver-version>/<arch>/).",
        default=Path("out"),
        commands=BUILD_ONLY,
    ),
    Option(
        "output_module",
        ("--output-module",),
        "output.module",
        "path",
        "Also copy the kernel module to this path (driverkit's output.module).",
        commands=BUILD_ONLY,
    ),
    Option(
        "output_probe",
        ("--output-probe",),
        "output.probe",
        "path",
        "Also copy the per-kernel probe to this path (driverkit's output.probe).",
        commands=BUILD_ONLY,
    ),
    Option(
        "processor",
        ("--processor",),
        "processor",
        "str",
        "Where the build script runs.",
        default="docker",
        choices=("docker", "local"),
        commands=BUILD_ONLY,
    ),
    Option(
        "build_kmod",
        ("--kmod/--no-kmod",),
        "kmod",
        "bool",
        "Build the kernel module.",
        default=True,
    ),
    Option(
        "build_probe",
        ("--probe/--no-probe",),
        "probe",
        "bool",
        "Build the per-kernel eBPF probe.",
        default=True,
    ),
    Option(
        "catalog",
        ("--catalog",),
        "catalog",
        "path",
        "Kernel-crawler JSON listing kernels to build.",
        commands=BUILD_ONLY,
    ),
    Option(
        "jobs",
        ("-j", "--jobs"),
        "jobs",
        "int",
        "Kernels built in parallel.",
        default=1,
        commands=BUILD_ONLY,
    ),
    Option(
        "timeout",
        ("--timeout",),
        "timeout",
        "int",
        "Seconds a single build may run before it is killed.",
        default=900,
        commands=BUILD_ONLY,
    ),
    Option(
        "cache_dir",
        ("--cache-dir",),
        "cachedir",
        "path",
        "Download and image cache.",
        default=Path("~/.cache/driverkit").expanduser(),
        env="DRIVERKIT_CACHE_DIR",
    ),
    Option(
        "dry_run",
        ("--dry-run", "--dryrun"),
        "dryrun",
        "bool",
        "Print the rendered Dockerfile and build script; run nothing.",
        default=False,
        commands=BUILD_ONLY,
    ),
    Option(
        "loglevel",
        ("--loglevel",),
        "loglevel",
        "str",
        "Log verbosity.",
        default="info",
        choices=("debug", "info", "warn", "warning", "error"),
    ),
)

BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}
BY_YAML_KEY: dict[str, Option] = {opt.yaml_key: opt for opt in OPTIONS}
BY_ENV: dict[str, Option] = {opt.env_var: opt for opt in OPTIONS}


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        # Nested mappings are driverkit sections (output: {module, probe}); only descend
        # where the table knows the section, so a typo'd section is reported as itself.
        if isinstance(value, Mapping) and any(k.startswith(dotted + ".") for k in BY_YAML_KEY):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def values_from_yaml(document: Any, source: str) -> dict[str, Any]:
    """Option values from a driverkit config document; unknown keys fail."""
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise UsageError(f"{source}: a config file must be a mapping of keys to values")
    values: dict[str, Any] = {}
    for key, raw in _flatten(document).items():
        option = BY_YAML_KEY.get(key)
        if option is None:
            raise UsageError(f"{source}: unknown key {key!r}{did_you_mean(key, BY_YAML_KEY)}")
        values[option.name] = option.convert(raw, f"{source}: {key}")
    return values


def values_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Option values from DRIVERKIT_* variables; an unknown DRIVERKIT_ variable fails."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        option = BY_ENV.get(var)
        if option is None:
            raise UsageError(f"environment: unknown variable {var}{did_you_mean(var, BY_ENV)}")
        values[option.name] = option.convert(raw, f"environment: {var}")
    return values


def defaults() -> dict[str, Any]:
    return {opt.name: opt.default for opt in OPTIONS}
