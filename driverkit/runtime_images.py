"""The two runtime images: the loader (init container) and the engine.

Both come from `templates/Dockerfile.runtime.j2` on a Debian minbase (a debootstrap
rootfs imported under the FROM name with `--base-from debootstrap`, as the builders) and
hold only the host side: `drivercore` and `runtime`, the distro's python3 and the
distro's packages of pyproject's `dependencies`. The tag is a hash of the rendered
Dockerfile and of every file in the build context, so any edit to the host side's code
yields a new tag and an unchanged tree is never rebuilt.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from driverkit.cache import default_cache_dir
from driverkit.containers import ContainerEngine
from driverkit.errors import UsageError
from driverkit.images import _build_lock, _host_lock, ensure_debian_base, host_apt_buildargs
from driverkit.render import TEMPLATES_DIR, _environment
from driverkit.targets.base import Mirrors
from driverkit.targets.debian import suite_named

log = logging.getLogger(__name__)

REPO_ROOT: Final = TEMPLATES_DIR.parent
TEMPLATE: Final = "Dockerfile.runtime.j2"
VERSION_CHECK_SCRIPT: Final = "runtime_check_versions.py"
IMAGE_PREFIX: Final = "rtcap"
KIND_LABEL: Final = "io.driverkit.runtime-image"
APP_DIR: Final = "/opt/rtcap"
# The host side only: driverkit and the `build` extra stay out of both images.
HOST_PACKAGES: Final = ("drivercore", "runtime")
ROLES: Final = ("loader", "engine")
# pyproject `dependencies` (normalized name) -> the Debian package that provides it. A
# new dependency without a row here fails the render instead of a container at run time.
DEBIAN_PACKAGE_OF: Final[Mapping[str, str]] = {
    "click": "python3-click",
    "pyyaml": "python3-yaml",
    "prometheus-client": "python3-prometheus-client",
    "requests": "python3-requests",
    "cryptography": "python3-cryptography",
}
# The engine loads BPF objects through libbpf's shared library (drivercore.libbpf, ctypes).
ENGINE_PACKAGES: Final = ("libbpf1",)
FASTDECODE_BUILD_PACKAGES: Final = ("gcc", "libc6-dev", "python3-dev")
# Trixie, not bookworm: bookworm's python3-prometheus-client (0.16), -requests (2.28) and
# -cryptography (38) are older than pyproject's lower bounds, and 0.16's
# start_http_server returns nothing, which breaks `rt-engine run --metrics-port`.
DEFAULT_SUITE: Final = "trixie"
ENTRYPOINTS: Final[Mapping[str, tuple[str, ...]]] = {
    "loader": ("rt-engine", "driver", "install"),
    "engine": ("rt-engine", "run"),
}
_DEBIAN_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9.]*))?$")


@dataclass(frozen=True)
class RuntimeImageSpec:
    role: str  # "loader" or "engine"
    suite: str = DEFAULT_SUITE
    # The compiled batch decoder, in the engine only: the loader decodes no events.
    fastdecode: bool = True

    @property
    def base_image(self) -> str:
        return f"debian:{self.suite}"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict[str, object]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def host_side_requirements() -> tuple[tuple[str, str], ...]:
    """(normalized name, minimum version or "") of every pyproject `dependencies` entry."""
    project = _pyproject().get("project")
    raw = project.get("dependencies", []) if isinstance(project, dict) else []
    found = []
    for entry in raw:
        match = _REQUIREMENT.match(str(entry).strip())
        if match is None:
            raise UsageError(f"pyproject dependency {entry!r}: only `name>=version` is supported")
        found.append((_normalized(match.group(1)), match.group(2) or ""))
    return tuple(found)


def debian_packages(spec: RuntimeImageSpec) -> tuple[str, ...]:
    missing = [name for name, _ in host_side_requirements() if name not in DEBIAN_PACKAGE_OF]
    if missing:
        raise UsageError(
            f"no Debian package known for pyproject dependencies {', '.join(missing)}: "
            "add them to driverkit.runtime_images.DEBIAN_PACKAGE_OF"
        )
    packages = ["python3", *(DEBIAN_PACKAGE_OF[name] for name, _ in host_side_requirements())]
    if spec.role == "engine":
        packages.extend(ENGINE_PACKAGES)
    return tuple(packages)


def _package_data_globs() -> dict[str, tuple[str, ...]]:
    tool = _pyproject().get("tool")
    setuptools = tool.get("setuptools", {}) if isinstance(tool, dict) else {}
    data = setuptools.get("package-data", {}) if isinstance(setuptools, dict) else {}
    return {str(pkg): tuple(map(str, globs)) for pkg, globs in data.items()}


def _host_side_files() -> dict[str, Path]:
    """Context name -> host path of what `pip install .` would install of the host side:
    its .py files and pyproject's package data, nothing compiled, no caches."""
    package_data = _package_data_globs()
    files: dict[str, Path] = {}
    for top in HOST_PACKAGES:
        for path in sorted((REPO_ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(REPO_ROOT)
            package = ".".join(relative.parent.parts)
            wanted = path.suffix == ".py" or any(
                fnmatch.fnmatch(path.name, glob) for glob in package_data.get(package, ())
            )
            if wanted:
                files[f"app/{relative.as_posix()}"] = path
    return files


def build_context(spec: RuntimeImageSpec) -> dict[str, Path]:
    """Every file the Dockerfile COPYs, by its name in the context (the Dockerfile aside)."""
    _check_spec(spec)
    context = {VERSION_CHECK_SCRIPT: TEMPLATES_DIR / VERSION_CHECK_SCRIPT, **_host_side_files()}
    # The driver version these sources speak (their schema hash must match the driver's):
    # where the loader looks for its default version, next to the packages.
    context["app/driver/VERSION"] = REPO_ROOT / "driver" / "VERSION"
    if _wants_fastdecode(spec):
        context["fastdecode/runtime/driver/_fastdecode.c"] = (
            REPO_ROOT / "runtime" / "driver" / "_fastdecode.c"
        )
        context["fastdecode/driver/include/rtcap_schema.h"] = (
            REPO_ROOT / "driver" / "include" / "rtcap_schema.h"
        )
    return context


def _wants_fastdecode(spec: RuntimeImageSpec) -> bool:
    return spec.role == "engine" and spec.fastdecode


def _check_spec(spec: RuntimeImageSpec) -> None:
    if spec.role not in ROLES:
        raise UsageError(f"runtime image role {spec.role!r}: use one of {', '.join(ROLES)}")
    if suite_named(spec.suite) is None:
        raise UsageError(f"runtime image suite {spec.suite!r} is not in the Debian suite table")


def render_runtime_dockerfile(spec: RuntimeImageSpec) -> str:
    _check_spec(spec)
    suite = suite_named(spec.suite)
    assert suite is not None  # _check_spec
    packages = debian_packages(spec)
    fastdecode_packages = FASTDECODE_BUILD_PACKAGES if _wants_fastdecode(spec) else ()
    # Everything rendered is a fixed word from this module; the check keeps it so when a
    # row is edited (a space or a quote would change what a shell or apt sees).
    for package in (*packages, *fastdecode_packages):
        if not _DEBIAN_PACKAGE_NAME.match(package):
            raise UsageError(f"not a Debian package name: {package!r}")
    requirements = tuple(
        f"{name}>={minimum}" if minimum else name for name, minimum in host_side_requirements()
    )
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            role=spec.role,
            suite=spec.suite,
            base_image=spec.base_image,
            has_updates=suite.has_updates,
            packages=packages,
            fastdecode=_wants_fastdecode(spec),
            fastdecode_packages=fastdecode_packages,
            requirements=requirements,
            app_dir=APP_DIR,
            entrypoint=list(ENTRYPOINTS[spec.role]),
        )
    )


def runtime_image_tag(spec: RuntimeImageSpec) -> str:
    """`rtcap-loader:<hash12>`: the rendered Dockerfile and every context file's bytes."""
    hasher = hashlib.sha256()
    hasher.update(
        json.dumps({"role": spec.role, "suite": spec.suite, "fastdecode": spec.fastdecode}).encode()
    )
    hasher.update(render_runtime_dockerfile(spec).encode())
    for name, path in sorted(build_context(spec).items()):
        hasher.update(f"\0{name}\0".encode())
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{IMAGE_PREFIX}-{spec.role}:{hasher.hexdigest()[:12]}"


def ensure_runtime_image(
    engine: ContainerEngine,
    spec: RuntimeImageSpec,
    base_from: str = "registry",
    mirrors: Mirrors | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The image's tag, building it (and its debootstrap base) only if missing."""
    if base_from not in ("registry", "debootstrap"):
        raise UsageError(f"--base-from {base_from!r}: use 'registry' or 'debootstrap'")
    tag = runtime_image_tag(spec)
    if engine.image_exists(tag):
        return tag
    if mirrors is None:
        from driverkit.mirrors import host_mirrors

        mirrors = host_mirrors()
    cache = cache_dir or default_cache_dir()
    with _build_lock, _host_lock(cache):
        if engine.image_exists(tag):  # built by another process while we waited
            return tag
        log.info("building runtime image %s (base from %s)", tag, base_from)
        ensure_debian_base(engine, spec.base_image, spec.suite, base_from, mirrors, cache_dir=cache)
        engine.build_image(
            render_runtime_dockerfile(spec),
            tag,
            buildargs={"DEBIAN_MIRROR": mirrors.debian, **host_apt_buildargs()},
            labels={KIND_LABEL: spec.role, "io.driverkit.suite": spec.suite},
            context=dict(build_context(spec)),
        )
    return tag


def ensure_runtime_images(
    engine: ContainerEngine,
    base_from: str = "registry",
    mirrors: Mirrors | None = None,
    cache_dir: Path | None = None,
    suite: str = DEFAULT_SUITE,
) -> dict[str, str]:
    """Role -> tag of both images (loader first: it is the smaller build)."""
    return {
        role: ensure_runtime_image(
            engine, RuntimeImageSpec(role, suite), base_from, mirrors, cache_dir
        )
        for role in ROLES
    }
