"""The loader's settings: the `loader:` section of the engine's config file, validated key
by key like the rest of it (runtime/engine/config.py), with flags and RT_ENGINE_LOADER_*
environment variables on top (flag > environment > config file > default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivercore.errors import UsageError
from drivercore.naming import validate_driver_version
from drivercore.repoindex import PUBLIC_KEY_PREFIX, RepositoryIndexError, parse_public_key
from runtime.engine.config import _bool, _choice, _int, _number, _section, _str
from runtime.loader.choose import DRIVER_TYPES

ENV_PREFIX = "RT_ENGINE_LOADER_"
DEFAULT_STATE_DIR = Path("/var/lib/rt-engine/drivers")
# The source tree's driver version (driver/VERSION), when the loader runs from a checkout;
# an installed loader is told the version by its config or --driver-version.
_SOURCE_VERSION_FILE = Path(__file__).resolve().parents[2] / "driver" / "VERSION"


def source_driver_version() -> str | None:
    try:
        return _SOURCE_VERSION_FILE.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class LoaderConfig:
    type: str = "auto"
    driver_version: str | None = None
    repos: tuple[str, ...] = ()
    public_key: str | None = None  # `ed25519:<base64>` or the path of a .pub file
    host_root: Path = Path("/")
    state_dir: Path = DEFAULT_STATE_DIR
    # Where `install --download-only` hands the driver over and `run --driver auto`
    # looks for it first (the init container and the engine container share it).
    dest: Path | None = None
    allow_build: bool = False  # no repository has it: build it here with driverkit
    kernel_release: str | None = None
    kernel_version: str | None = None
    timeout: float = 30.0
    retries: int = 2
    http_headers: Mapping[str, str] = field(default_factory=dict)

    def resolved_driver_version(self) -> str:
        version = self.driver_version or source_driver_version()
        if version is None:
            raise UsageError(
                "no driver version: pass --driver-version V (or loader.driver_version in the "
                f"config, or {ENV_PREFIX}DRIVER_VERSION)"
            )
        return validate_driver_version(version)

    def resolved_public_key(self) -> Ed25519PublicKey:
        if self.public_key is None:
            raise UsageError(
                "no repository public key: pass --public-key ed25519:... or a .pub FILE "
                f"(or loader.public_key in the config, or {ENV_PREFIX}PUBLIC_KEY)"
            )
        text = self.public_key.strip()
        if not text.startswith(PUBLIC_KEY_PREFIX):
            try:
                text = Path(text).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UsageError(
                    f"public key {self.public_key[:60]!r}: neither `{PUBLIC_KEY_PREFIX}...` nor "
                    f"a readable file ({exc.strerror})"
                ) from None
        try:
            return parse_public_key(text.splitlines()[0] if text else text)
        except RepositoryIndexError as exc:
            raise UsageError(str(exc)) from None


def _repos(where: str, raw: object) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise UsageError(f"{where}: expected a repository URL or a list of them")
    return tuple(_str(where, item) for item in items)


def _headers(where: str, raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected a mapping of header name to value")
    return {_str(where, k): _str(f"{where}.{k}", v) for k, v in raw.items()}


_KEYS: dict[str, Any] = {
    "type": lambda w, v: _choice(w, v, DRIVER_TYPES),
    "driver_version": _str,
    "repos": _repos,
    "public_key": _str,
    "host_root": lambda w, v: Path(_str(w, v)),
    "state_dir": lambda w, v: Path(_str(w, v)),
    "dest": lambda w, v: Path(_str(w, v)),
    "allow_build": _bool,
    "kernel_release": _str,
    "kernel_version": _str,
    "timeout": lambda w, v: _number(w, v, minimum=0.1),
    "retries": lambda w, v: _int(w, v, minimum=0),
    "http_headers": _headers,
}


def parse_loader_section(where: str, raw: object) -> LoaderConfig:
    section = _section(where, raw, tuple(_KEYS))
    return LoaderConfig(**{key: _KEYS[key](f"{where}.{key}", v) for key, v in section.items()})


def _env_value(key: str, text: str) -> object:
    """An environment variable's text as the config file would hold it."""
    where = f"{ENV_PREFIX}{key.upper()}"
    if key == "repos":
        return list(text.split())
    if key in ("timeout", "retries"):
        try:
            return int(text) if key == "retries" else float(text)
        except ValueError:
            raise UsageError(f"{where}: expected a number, got {text[:40]!r}") from None
    if key == "allow_build":
        flag = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
        if text.lower() not in flag:
            raise UsageError(f"{where}: expected true or false, got {text[:40]!r}")
        return flag[text.lower()]
    if key == "http_headers":
        raise UsageError(f"{where}: HTTP headers come from the config file only")
    return text


def loader_from_environment(config: LoaderConfig, environ: Mapping[str, str]) -> LoaderConfig:
    """RT_ENGINE_LOADER_<KEY> variables on top of the config file, validated as its keys."""
    values = {
        key: _KEYS[key](f"{ENV_PREFIX}{key.upper()}", _env_value(key, environ[name]))
        for key in _KEYS
        if key != "http_headers" and (name := f"{ENV_PREFIX}{key.upper()}") in environ
        and environ[name] != ""
    }
    return replace(config, **values)


def loader_with_overrides(config: LoaderConfig, **flags: object) -> LoaderConfig:
    """Flags on top; a flag left at None or () keeps the value it would replace."""
    values: dict[str, Any] = {
        key: value for key, value in flags.items() if value is not None and value != ()
    }
    unknown = set(values) - set(_KEYS)
    if unknown:  # a programming error in the CLI, not user input
        raise ValueError(f"no loader config key for {sorted(unknown)}")
    return replace(config, **values)
