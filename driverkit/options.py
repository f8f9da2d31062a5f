"""One declarative table of build options: the fields of the frozen `BuildConfig`.

Each option field's metadata drives the click flag, the driverkit-compatible config-YAML
key, the `DRIVERKIT_*` environment variable and the help text; `OPTIONS` is read off the
dataclass, so there is no second list to keep in step and the sources can never
disagree about names, types or defaults. Each row also names the accepted form of its
value (a rule of driverkit.valuerules, choices, or int bounds), and `Option.convert` is the
one place every source's raw value is converted and checked, so a value that reaches a
script, a Dockerfile, an image tag or a path has passed the same rule whatever its source.
Precedence follows driverkit (viper): command-line flag > environment > config file >
default.
"""

# `option()` returns a dataclasses.field(), which RUF009 does not recognise by name.
# ruff: noqa: RUF009

from __future__ import annotations

import difflib
import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from driverkit import DRIVER_DIR
from driverkit.artifacts import RTCAP_PROBE, ProbeSpec
from driverkit.cache import default_cache_dir
from driverkit.errors import ToolError, UsageError
from driverkit.targets.base import Mirrors
from driverkit.valuerules import (
    COMMAND,
    DOCKER_HOST,
    DRIVER_NAME,
    DRIVER_VERSION,
    GCC_VERSION,
    IMAGE_REFERENCE,
    INT_TEXT,
    K8S_NAME,
    KERNEL_CONFIG_DATA,
    KERNEL_RELEASE,
    KERNEL_VERSION,
    MIRROR_URL,
    PATH,
    PUBLIC_KEY,
    REGISTRY,
    REPO_MIRROR,
    REPOSITORY,
    TARGET,
    TextRule,
    shown,
)

ENV_PREFIX = "DRIVERKIT_"

# Commands a row applies to: `build`, `resolve` and `images build` all resolve plans, so
# everything that shapes a plan's builder applies to all three.
BUILD_ONLY = frozenset({"build"})
PLAN_COMMANDS = frozenset({"build", "resolve"})
ALL_COMMANDS = frozenset({"build", "resolve", "images", "images-distribute"})
# `matrix plan` resolves plans for a catalog; `matrix run` also builds and publishes them.
MATRIX = frozenset({"matrix-plan", "matrix-run", "matrix-k8s"})
# The build farm: `matrix run --engine swarm` and the Kubernetes manifests of the same run.
FARM = frozenset({"matrix-run", "matrix-k8s"})
BUILDS = frozenset({"build", "matrix-run"})
PUBLISHES = frozenset({"build", "publish", "matrix-run"})

LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def default_driver_version() -> str:
    version_file = DRIVER_DIR / "VERSION"
    if version_file.is_file():
        return version_file.read_text().strip()
    return "0.0.0-dev"

# YAML 1.1's booleans (what driverkit's own YAML reader takes), plus 1/0 for environment
# variables (an empty variable is skipped as unset; an empty quoted YAML value is false).
_TRUE = frozenset({"y", "yes", "true", "on", "1"})
_FALSE = frozenset({"n", "no", "false", "off", "0", ""})
# Comma-separated lists are what viper reads from an environment variable.
_LIST_SEPARATOR = ","


@dataclass(frozen=True)
class Option:
    """One row of the table: a BuildConfig field, how users spell it, and the one
    accepted form of its value, held for every source (flag, YAML key, env var)."""

    name: str  # the BuildConfig field
    flags: tuple[str, ...]  # first is canonical; the rest are driverkit spellings
    yaml_key: str  # dotted for nested driverkit keys, e.g. "output.module"
    kind: str  # "str", "int", "bool", "list" (of str) or "path"
    help: str
    default_factory: Callable[[], Any]
    choices: tuple[str, ...] = ()
    commands: frozenset[str] = PLAN_COMMANDS
    env: str = ""  # only where a readable name beats the derived one
    # The accepted text of a str/list/path value (each item of a list); choices, where
    # given, are the rule instead.
    rule: TextRule | None = None
    bounds: tuple[int, int] = (0, 0)  # inclusive range of an int option

    @property
    def default(self) -> Any:
        return self.default_factory()

    @property
    def env_var(self) -> str:
        return self.env or ENV_PREFIX + self.yaml_key.replace(".", "_").replace("-", "_").upper()

    @property
    def form(self) -> str:
        """The accepted form, as an error message states it."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind == "int":
            return f"a whole number from {self.bounds[0]} to {self.bounds[1]} (decimal digits)"
        if self.kind == "bool":
            return "true or false (also yes/no, on/off)"
        assert self.rule is not None  # checked when the table is built
        return self.rule.form

    def refuse(self, value: Any, where: str) -> ToolError:
        error = self.rule.error if self.rule is not None else UsageError
        return error(f"{where}: {shown(value)} is not accepted; use {self.form}")

    def convert(self, value: Any, where: str) -> Any:
        """The typed value of one source's raw `value`; `where` names the source and the
        spelling (`option --gcc-version`, `config x.yaml: gccversion`, `environment: ...`).

        Raw text is taken as written (a config's `0.10` is the text "0.10", never 0.1), so
        what is checked is exactly what is used.
        """
        if self.kind == "bool":
            return self._bool(value, where)
        if self.kind == "int":
            return self._int(value, where)
        if self.kind == "list":
            if isinstance(value, str):
                # One text (an environment variable, a single YAML scalar): comma-separated,
                # as viper reads it; blanks around and between items are not items.
                parts = [part.strip() for part in value.split(_LIST_SEPARATOR)]
                return tuple(self._text(part, where) for part in parts if part)
            if not isinstance(value, list | tuple):
                raise self.refuse(value, where)
            return tuple(self._text(item, where) for item in value)
        if self.kind == "path":
            if isinstance(value, Path):
                value = str(value)
            path = Path(self._text(value, where))
            try:
                return path.expanduser()
            except RuntimeError:  # `~user` for a user this host does not have
                raise self.refuse(value, where) from None
        return self._text(value, where)

    def _text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.refuse(value, where)
        if self.choices:
            if value not in self.choices:
                raise self.refuse(value, where)
            return value
        assert self.rule is not None
        if not self.rule.allows(value):
            raise self.refuse(value, where)
        return value

    def _int(self, value: Any, where: str) -> int:
        if isinstance(value, bool):
            raise self.refuse(value, where)
        if isinstance(value, str):
            if not INT_TEXT.fullmatch(value):
                raise self.refuse(value, where)
            value = int(value)
        if not isinstance(value, int) or not self.bounds[0] <= value <= self.bounds[1]:
            raise self.refuse(value, where)
        return value

    def _bool(self, value: Any, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and len(value) <= 5:
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        raise self.refuse(value, where)


_OPTION_KEY = "driverkit.option"


def option(
    flags: tuple[str, ...],
    yaml_key: str,
    kind: str,
    help: str,
    *,
    default: Any = None,
    default_factory: Callable[[], Any] | None = None,
    choices: tuple[str, ...] = (),
    commands: frozenset[str] = PLAN_COMMANDS,
    env: str = "",
    rule: TextRule | None = None,
    bounds: tuple[int, int] = (0, 0),
) -> Any:
    """A BuildConfig field that is also a row of the option table.

    Typed `Any` so a field reads `jobs: int = option(...)` and mypy keeps the field's
    own annotation as its type.
    """
    row = {
        "flags": flags,
        "yaml_key": yaml_key,
        "kind": kind,
        "help": help,
        "choices": choices,
        "commands": commands,
        "env": env,
        "rule": rule,
        "bounds": bounds,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={_OPTION_KEY: row})
    return field(default=default, metadata={_OPTION_KEY: row})


@dataclass(frozen=True)
class BuildConfig:
    """The frozen, resolved configuration of one run; its option fields are the table.

    Fields made with `option(...)` are what users set (flags, YAML keys, env vars);
    the fields after them are resolved once per run (mirrors) or set by library
    callers (tests, benchmarks) and have no command-line spelling.
    """

    kernels: tuple[str, ...] = option(
        ("--kernel", "--kernelrelease"),
        "kernelrelease",
        "list",
        "Kernel release as `uname -r` prints it; repeat to build several.",
        default=(),
        commands=ALL_COMMANDS,
        rule=KERNEL_RELEASE,
    )
    kernel_version: str = option(
        ("--kernel-version", "--kernelversion"),
        "kernelversion",
        "str",
        "Kernel build number, or the whole `uname -v` text.",
        default="1",
        commands=ALL_COMMANDS,
        rule=KERNEL_VERSION,
    )
    target: str | None = option(
        ("--target",),
        "target",
        "str",
        "Distro target; inferred from the release when omitted.",
        commands=ALL_COMMANDS,
        rule=TARGET,
    )
    arch: str = option(
        ("--arch", "--architecture"),
        "architecture",
        "str",
        "Architecture of the target kernel.",
        default="amd64",
        choices=("amd64", "arm64"),
        commands=ALL_COMMANDS,
    )
    driver_version: str = option(
        ("--driver-version", "--driverversion"),
        "driverversion",
        "str",
        "Driver version to build; defaults to driver/VERSION.",
        default_factory=default_driver_version,
        rule=DRIVER_VERSION,
    )
    driver_name: str = option(
        ("--driver-name", "--drivername"),
        "drivername",
        "str",
        "Driver name used in artifact file names.",
        default="rtcap",
        commands=PLAN_COMMANDS | MATRIX,
        rule=DRIVER_NAME,
    )
    gcc_version: str | None = option(
        ("--gcc-version", "--gccversion"),
        "gccversion",
        "str",
        "Force a GCC version instead of the target's choice.",
        commands=ALL_COMMANDS,
        rule=GCC_VERSION,
    )
    builder_image: str | None = option(
        ("--builder-image", "--builderimage"),
        "builderimage",
        "str",
        "Force a builder image instead of the target's choice.",
        commands=ALL_COMMANDS,
        rule=IMAGE_REFERENCE,
    )
    kernel_config_data: str | None = option(
        ("--kernelconfigdata",),
        "kernelconfigdata",
        "str",
        "The kernel's .config, base64 (driverkit's kernelconfigdata): kernels built from "
        "kernel.org sources (vanilla, minikube, bottlerocket, talos, flatcar) need it.",
        rule=KERNEL_CONFIG_DATA,
    )
    kernel_config: Path | None = option(
        ("--kernel-config",),
        "kernelconfig",
        "path",
        "The kernel's .config file (e.g. /boot/config-<release> of the host): the same "
        "as --kernelconfigdata, read from a file.",
        rule=PATH,
    )
    kernel_urls: tuple[str, ...] = option(
        ("--kernel-urls", "--kernelurls"),
        "kernelurls",
        "list",
        "Header package URLs to use instead of the target's candidates.",
        default=(),
        rule=MIRROR_URL,
    )
    repo_mirrors: tuple[str, ...] = option(
        ("--repo-mirror",),
        "repomirrors",
        "list",
        "FROM=TO: fetch every distro repository URL starting with FROM from TO instead "
        "(an internal mirror of Amazon's, Rocky's... repositories); repeatable.",
        env="DRIVERKIT_REPO_MIRRORS",
        default=(),
        commands=ALL_COMMANDS | MATRIX,
        rule=REPO_MIRROR,
    )
    debian_mirror: str | None = option(
        ("--debian-mirror",),
        "debianmirror",
        "str",
        "Debian archive root; read from the host's apt sources when omitted.",
        env="DRIVERKIT_DEBIAN_MIRROR",
        commands=ALL_COMMANDS | MATRIX,
        rule=MIRROR_URL,
    )
    debian_security_mirror: str | None = option(
        ("--debian-security-mirror",),
        "debiansecuritymirror",
        "str",
        "Debian security archive root; read from apt sources when omitted.",
        env="DRIVERKIT_DEBIAN_SECURITY_MIRROR",
        commands=ALL_COMMANDS | MATRIX,
        rule=MIRROR_URL,
    )
    debian_keyring: str | None = option(
        ("--debian-keyring",),
        "debiankeyring",
        "str",
        "GnuPG keyring(s) the Debian archive's InRelease must be signed by "
        "(':'-separated); default: the host's debian-archive-keyring.",
        env="DRIVERKIT_DEBIAN_KEYRING",
        commands=PLAN_COMMANDS | MATRIX,
        rule=PATH,
    )
    base_from: str = option(
        ("--base-from",),
        "basefrom",
        "str",
        "Where builder base images come from: a registry, or a local debootstrap.",
        default="registry",
        choices=("registry", "debootstrap"),
        commands=ALL_COMMANDS | MATRIX,
    )
    output: Path = option(
        ("--output",),
        "output.dir",
        "path",
        "Directory for artifacts (laid out <driver-version>/<arch>/).",
        default=Path("out"),
        commands=BUILDS,
        rule=PATH,
    )
    output_module: Path | None = option(
        ("--output-module",),
        "output.module",
        "path",
        "Also copy the kernel module to this path (driverkit's output.module).",
        commands=BUILD_ONLY,
        rule=PATH,
    )
    output_probe: Path | None = option(
        ("--output-probe",),
        "output.probe",
        "path",
        "Also copy the per-kernel probe to this path (driverkit's output.probe).",
        commands=BUILD_ONLY,
        rule=PATH,
    )
    processor: str = option(
        ("--processor",),
        "processor",
        "str",
        "Where the build script runs.",
        default="docker",
        choices=("docker", "local"),
        commands=BUILDS,
    )
    build_kmod: bool = option(
        ("--kmod/--no-kmod",),
        "kmod",
        "bool",
        "Build the kernel module.",
        default=True,
        commands=PLAN_COMMANDS | MATRIX,
    )
    build_probe: bool = option(
        ("--probe/--no-probe",),
        "probe",
        "bool",
        "Build the per-kernel eBPF probe.",
        default=True,
        commands=PLAN_COMMANDS | MATRIX,
    )
    catalog: Path | None = option(
        ("--catalog",),
        "catalog",
        "path",
        "Kernel-crawler JSON listing kernels to build.",
        commands=frozenset({"build", "images", "images-distribute"}) | MATRIX,
        rule=PATH,
    )
    jobs: int = option(
        ("-j", "--jobs"),
        "jobs",
        "int",
        "Kernels built in parallel.",
        default=1,
        commands=BUILDS,
        bounds=(1, 256),
    )
    timeout: int = option(
        ("--timeout",),
        "timeout",
        "int",
        "Seconds a single build may run before it is killed.",
        default=900,
        commands=BUILDS | frozenset({"matrix-k8s"}),
        bounds=(1, 7 * 24 * 3600),
    )
    cache_dir: Path = option(
        ("--cache-dir",),
        "cachedir",
        "path",
        "Download and image cache.",
        default_factory=default_cache_dir,
        env="DRIVERKIT_CACHE_DIR",
        commands=ALL_COMMANDS | MATRIX,
        rule=PATH,
    )
    dry_run: bool = option(
        ("--dry-run", "--dryrun"),
        "dryrun",
        "bool",
        "Print the rendered Dockerfile and build script; run nothing.",
        default=False,
        commands=BUILD_ONLY,
    )
    loglevel: str = option(
        ("--loglevel",),
        "loglevel",
        "str",
        "Log verbosity.",
        default="info",
        choices=tuple(LOG_LEVELS),
        commands=ALL_COMMANDS | MATRIX | PUBLISHES,
    )

    publish_to: str | None = option(
        ("--publish",),
        "publish",
        "str",
        "Publish what was built to this repository (see --repo) with a signed index.",
        commands=BUILD_ONLY,
        rule=REPOSITORY,
    )
    repo: str | None = option(
        ("--repo",),
        "repo",
        "str",
        "Artifact repository: a directory, file://, http(s):// (WebDAV) or s3://bucket/prefix.",
        env="DRIVERKIT_REPO",
        commands=MATRIX | frozenset({"publish"}),
        rule=REPOSITORY,
    )
    publish_from: Path = option(
        ("--from",),
        "from",
        "path",
        "Build output to publish (laid out <driver-version>/<arch>/).",
        default=Path("out"),
        commands=frozenset({"publish"}),
        rule=PATH,
    )
    signing_key: Path | None = option(
        ("--signing-key",),
        "signingkey",
        "path",
        "Ed25519 private key (PEM) that signs the repository index (`driverkit keys generate`).",
        env="DRIVERKIT_SIGNING_KEY",
        commands=PUBLISHES,
        rule=PATH,
    )
    public_key: str | None = option(
        ("--public-key",),
        "publickey",
        "str",
        "Public key the repository index must be signed by: `ed25519:...` or a .pub file; "
        "default: that of --signing-key.",
        env="DRIVERKIT_REPO_PUBLIC_KEY",
        commands=MATRIX,
        rule=PUBLIC_KEY,
    )
    force: bool = option(
        ("--force",),
        "force",
        "bool",
        "Replace published artifacts whose sha256 differs from this build's.",
        default=False,
        commands=PUBLISHES,
    )
    matrix_driver_versions: tuple[str, ...] = option(
        ("--driver-version",),
        "matrix.driverversions",
        "list",
        "Driver versions the matrix covers (repeat); default: driver/VERSION.",
        default=(),
        commands=MATRIX,
        rule=DRIVER_VERSION,
    )
    matrix_arches: tuple[str, ...] = option(
        ("--arch",),
        "matrix.architectures",
        "list",
        "Architectures the matrix covers (repeat); default: amd64.",
        default=(),
        choices=("amd64", "arm64"),
        commands=MATRIX,
    )
    shards: int = option(
        ("--shards",),
        "matrix.shards",
        "int",
        "Cut the missing builds into this many CI jobs.",
        default=1,
        commands=frozenset({"matrix-plan"}),
        bounds=(1, 256),
    )
    plan_dir: Path = option(
        ("--out",),
        "matrix.out",
        "path",
        "Where `matrix plan` writes one driverkit config per kernel and matrix.json.",
        default=Path("plan"),
        commands=frozenset({"matrix-plan"}),
        rule=PATH,
    )
    github_output: Path | None = option(
        ("--github-output",),
        "matrix.githuboutput",
        "path",
        "Append `matrix=<json>` and `empty=<bool>` to this file (GitHub's $GITHUB_OUTPUT).",
        commands=frozenset({"matrix-plan"}),
        rule=PATH,
    )
    verify_command: str | None = option(
        ("--verify-command",),
        "matrix.verifycommand",
        "str",
        "A command run on the build output before publishing (the output directory is "
        "appended), e.g. `python3 -m ci.bootverify --artifacts`; it fails the run by exiting "
        "non-zero and records boot-verified kernels in bootverify.json.",
        commands=frozenset({"matrix-run"}),
        rule=COMMAND,
    )

    engine: str = option(
        ("--engine",),
        "farm.engine",
        "str",
        "Where the missing builds run: `local` (this machine, --processor) or `swarm` "
        "(one Docker Swarm job per builder image, through DOCKER_HOST's manager).",
        default="local",
        choices=("local", "swarm"),
        commands=frozenset({"matrix-run"}),
    )
    kernels_per_task: int = option(
        ("--kernels-per-task",),
        "farm.kernelspertask",
        "int",
        "Kernels one farm task builds (a task is retried whole, its published kernels "
        "skipped).",
        default=1,
        commands=FARM,
        bounds=(1, 1000),
    )
    max_concurrent: int = option(
        ("--max-concurrent",),
        "farm.maxconcurrent",
        "int",
        "Farm tasks running at once per builder image (the job's parallelism).",
        default=2,
        commands=FARM,
        bounds=(1, 1024),
    )
    retries: int = option(
        ("--retries",),
        "farm.retries",
        "int",
        "Times the engine restarts a failed farm task before it counts as failed.",
        default=2,
        commands=FARM,
        bounds=(0, 20),
    )
    registry: str | None = option(
        ("--registry",),
        "farm.registry",
        "str",
        "Registry the farm images are pushed to and pulled from (host[:port][/path]); "
        "without one, `driverkit images distribute --to` loads them into each node.",
        env="DRIVERKIT_REGISTRY",
        commands=FARM | frozenset({"images-distribute"}),
        rule=REGISTRY,
    )
    nodes: tuple[str, ...] = option(
        ("--to",),
        "farm.nodes",
        "list",
        "Docker daemons to load the farm images into (repeat): unix:///path or tcp://host:port.",
        default=(),
        commands=frozenset({"images-distribute"}),
        rule=DOCKER_HOST,
    )
    k8s_manifest: Path = option(
        ("--manifest",),
        "farm.manifest",
        "path",
        "Where `matrix k8s` writes the ConfigMap and Indexed Jobs (YAML, one document each).",
        default=Path("farm-k8s.yaml"),
        commands=frozenset({"matrix-k8s"}),
        rule=PATH,
    )
    k8s_namespace: str = option(
        ("--namespace",),
        "farm.namespace",
        "str",
        "Kubernetes namespace of the farm's objects.",
        default="driverkit",
        commands=frozenset({"matrix-k8s"}),
        rule=K8S_NAME,
    )

    # Resolved once per run, not spelled by users: the mirror roots (options over what
    # the host's apt sources name) and what library callers such as tests and benches
    # point a build at.
    mirrors: Mirrors = field(default_factory=Mirrors)
    driver_dir: Path = DRIVER_DIR
    probe_spec: ProbeSpec = RTCAP_PROBE
    build_core: bool = True  # also build the kernel-independent CO-RE probe
    make_jobs: int = 1  # make -j inside one build
    show_progress: bool = True

    @property
    def log_level(self) -> int:
        return LOG_LEVELS[self.loglevel]


def _row(f: Field[Any]) -> Option:
    row = f.metadata[_OPTION_KEY]
    factory: Callable[[], Any]
    if f.default_factory is not MISSING:
        factory = f.default_factory
    else:
        factory = functools.partial(_same, f.default)
    option = Option(name=f.name, default_factory=factory, **row)
    # A row without an accepted form would let any text through to a script or a path.
    if option.kind in ("str", "list", "path") and not (option.rule or option.choices):
        raise TypeError(f"option {f.name}: a {option.kind} option needs a rule or choices")
    low, high = option.bounds
    if option.kind == "int" and not 0 < high >= low:
        raise TypeError(f"option {f.name}: an int option needs bounds")
    return option


def _same(value: Any) -> Any:
    return value


# The table is read off BuildConfig, so a field and its flag/key/env can never drift apart.
OPTIONS: tuple[Option, ...] = tuple(
    _row(f) for f in fields(BuildConfig) if _OPTION_KEY in f.metadata
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
        dotted = f"{prefix}{key}" if isinstance(key, str) else f"{prefix}{key!r}"
        # Nested mappings are driverkit sections (output: {module, probe}); only descend
        # where the table knows the section, so a typo'd section is reported as itself.
        if isinstance(value, Mapping) and any(k.startswith(dotted + ".") for k in BY_YAML_KEY):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def values_from_yaml(document: Any, source: str) -> dict[str, Any]:
    """Option values from a driverkit config document (read with text scalars, see
    driverkit.config); unknown keys fail, and a key with no value (`key:`) is unset."""
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise UsageError(f"{source}: a config file must be a mapping of keys to values")
    values: dict[str, Any] = {}
    for key, raw in _flatten(document).items():
        option = BY_YAML_KEY.get(key)
        if option is None:
            raise UsageError(
                f"{source}: unknown key {shown(key)}{did_you_mean(key, BY_YAML_KEY)}"
            )
        if raw is None:
            continue
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
            raise UsageError(
                f"environment: unknown variable {shown(var)}{did_you_mean(var, BY_ENV)}"
            )
        if raw == "":
            continue  # an empty variable is how shells and CI systems leave one unset
        values[option.name] = option.convert(raw, f"environment: {var}")
    return values


def defaults() -> dict[str, Any]:
    return {opt.name: opt.default for opt in OPTIONS}
