"""Render the builder Dockerfile and the build script from `templates/`.

Every value a template prints is one shell word: the `q` filter quotes it (shlex.quote)
and refuses a value with a control or line-separator character, which quoting cannot make
safe in a comment line or a Dockerfile instruction; `qwords` does the same for a list and
`exec_form` writes a JSON exec-form array. The environment's `finalize` refuses anything
printed without one of them, so a future template cannot print a raw value by mistake,
and StrictUndefined fails a missing or mistyped variable instead of printing nothing.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import jinja2

from driverkit.errors import UsageError
from driverkit.plan import BuildPlan, core_probe_name
from driverkit.targets.base import BuilderSpec
from driverkit.targets.debian import builder_suites, suite_named
from driverkit.valuerules import UNSAFE_CHARACTERS, shown

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


# Module build: make + the kernel's gcc + libelf (objtool) + pahole (6.x kbuild calls it
# for module BTF and fails with "pahole: not found"); probes: clang/llvm/libbpf; preparing
# kernel.org sources (vanilla targets): flex/bison (kconfig), libssl-dev (sign-file) and
# python3 (resolve_btfids generates its libbpf headers with a Python script).
_DEBIAN_COMMON_PACKAGES = (
    "make",
    "flex",
    "bison",
    "libssl-dev",
    "python3",
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


class QuotedText(str):
    """Template output that went through a quoting filter; the only text `finalize` lets
    through."""

    __slots__ = ()


class UnquotedValueError(RuntimeError):
    """A template printed a value without a quoting filter: a bug in the template."""


def _word(value: object) -> str:
    text = str(value)
    if UNSAFE_CHARACTERS.search(text) or not text:
        # The option table refuses such values first; this is the renderer's own wall.
        raise UsageError(
            f"cannot render {shown(text)} into a script or Dockerfile: empty, or a control "
            "or line-separator character"
        )
    return text


def quote_word(value: object) -> QuotedText:
    """One sh word, on one line."""
    return QuotedText(shlex.quote(_word(value)))


def quote_words(values: Iterable[object]) -> QuotedText:
    """Space-separated sh words."""
    return QuotedText(" ".join(shlex.quote(_word(value)) for value in values))


def exec_form(values: Iterable[object]) -> QuotedText:
    """A Dockerfile exec-form array (ENTRYPOINT, CMD): JSON strings, one line."""
    return QuotedText(json.dumps([_word(value) for value in values]))


def yaml_value(value: object) -> QuotedText:
    """A YAML value on one line: JSON (a string, number, bool, list or object), which YAML
    reads as the same value whatever characters it holds."""
    return QuotedText(json.dumps(value, sort_keys=True))


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)


def base64_lines(value: object) -> QuotedText:
    """Base64 text as lines of 76 for a quoted heredoc: its alphabet has no shell meaning
    and can never spell the heredoc's end line (which holds a '-')."""
    text = str(value)
    if not _BASE64.fullmatch(text):
        raise UsageError(f"cannot render {shown(text)} as base64: not base64 text")
    return QuotedText("\n".join(text[i : i + 76] for i in range(0, len(text), 76)))


def _only_quoted(value: object) -> object:
    if isinstance(value, QuotedText):
        return value
    raise UnquotedValueError(
        f"a template printed {shown(value)} without | q, | qwords, | exec_form or | yaml"
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # output is shell and Dockerfile text, not HTML
        keep_trailing_newline=True,
        finalize=_only_quoted,
    )
    env.filters["q"] = quote_word
    env.filters["qwords"] = quote_words
    env.filters["exec_form"] = exec_form
    env.filters["yaml"] = yaml_value
    env.filters["base64_lines"] = base64_lines
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
    # The renderer's own wall first (a line break is refused as such), then the promise
    # every builder rule keeps: the gcc is a package this suite installs, never a wanted
    # version such as 4.8.5 that apt cannot find.
    gcc = _word(spec.gcc)
    if gcc not in tools.gccs:
        raise UsageError(
            f"builder suite {suite} does not ship gcc-{gcc} (it has gcc "
            f"{', '.join(tools.gccs)}); a builder's gcc must be one its suite installs"
        )
    packages = (f"gcc-{gcc}", *_DEBIAN_COMMON_PACKAGES, *tools.builder_packages)
    return {
        "base_image": spec.base_image,
        "suite": suite,
        "gcc": gcc,
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
            # kernel.org sources come with the kernel's .config to prepare them with.
            kernel_config_b64=plan.kernel_config if plan.build_kmod or plan.build_probe else "",
        )
    )
