"""Render the builder Dockerfile and the build script from `templates/`.

Everything that reaches a shell goes through the `q` filter (shlex.quote) and the
environment is StrictUndefined, so a missing or mistyped variable fails the render
instead of silently producing an empty string in a script.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

from driverkit.errors import UsageError
from driverkit.plan import BuildPlan, core_probe_name
from driverkit.targets.base import BuilderSpec
from driverkit.targets.debian import builder_suites, suite_named

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


# Module build: make + the kernel's gcc + libelf (objtool) + pahole (6.x kbuild calls it
# for module BTF and fails with "pahole: not found"); probes: clang/llvm/libbpf.
_DEBIAN_COMMON_PACKAGES = (
    "make",
    "dwarves",
    "libc6-dev",
    "binutils",
    "bc",
    "kmod",
    "libelf-dev",
    "clang",
    "llvm",
    "libbpf-dev",
    "ca-certificates",
)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # output is shell and Dockerfile text, not HTML
        keep_trailing_newline=True,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def template_name_for(spec: BuilderSpec) -> str:
    """The Dockerfile template: chosen by the base image's distro, e.g. debian:bookworm."""
    distro = spec.base_image.split(":", 1)[0].rsplit("/", 1)[-1]
    name = f"Dockerfile.{distro}.j2"
    if not (TEMPLATES_DIR / name).is_file():
        raise UsageError(
            f"no builder template {name} in {TEMPLATES_DIR} for image {spec.base_image}"
        )
    return name


def dockerfile_context(spec: BuilderSpec) -> dict[str, object]:
    suite = spec.distro_release
    # Whether it has -updates and what it needs beyond the common set: the suite table.
    tools = suite_named(suite)
    if tools is None or not tools.gccs:
        known = ", ".join(builder.codename for builder in builder_suites())
        raise UsageError(f"builder suite {suite!r} has no package table; known suites: {known}")
    packages = (f"gcc-{spec.gcc}", *_DEBIAN_COMMON_PACKAGES, *tools.builder_packages)
    return {
        "header_format": spec.header_format,
        "base_image": spec.base_image,
        "suite": suite,
        "gcc": spec.gcc,
        "packages": packages,
        "has_updates": tools.has_updates,
    }


def render_dockerfile(spec: BuilderSpec, base_from: str = "registry") -> str:
    """The builder Dockerfile. `base_from` changes only where FROM's image comes from
    (registry pull vs. an imported debootstrap rootfs), never the text."""
    if base_from not in ("registry", "debootstrap"):
        raise UsageError(f"--base-from {base_from!r}: use 'registry' or 'debootstrap'")
    return _environment().get_template(template_name_for(spec)).render(dockerfile_context(spec))


def render_build_script(plan: BuildPlan, *, build_core: bool = False) -> str:
    """The build script both processors run. `build_core` adds the CO-RE probe, built
    once per driver version rather than per kernel."""
    return (
        _environment()
        .get_template("build.sh.j2")
        .render(
            stem=(
                plan.artifact_stem()
                if plan.build_kmod or plan.build_probe
                else core_probe_name(plan.driver_name)
            ),
            kernel_release=str(plan.kernel),
            kmod_name=plan.kmod_name,
            probe_name=plan.probe_name,
            core_name=core_probe_name(plan.driver_name),
            build_kmod=plan.build_kmod,
            build_probe=plan.build_probe,
            build_core=build_core,
        )
    )
