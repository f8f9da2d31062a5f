"""Pure tests: rendered Dockerfiles and build scripts, image tags, artifact naming."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from driverkit.artifacts import manifest_name, output_dir
from driverkit.config import load_config, resolve_plan
from driverkit.errors import UsageError
from driverkit.images import builder_image_tag
from driverkit.plan import BuildPlan
from driverkit.render import render_build_script, render_dockerfile
from driverkit.targets.base import BuilderSpec, Mirrors

BOOKWORM = BuilderSpec("debian:bookworm", "bookworm", "12")
MIRRORS = Mirrors(debian="http://mirror.invalid/debian")


def _plan(release: str = "6.1.0-47-amd64", **changes: Any) -> BuildPlan:
    cfg = load_config({})
    plan = resolve_plan(release, cfg, MIRRORS, target="debian")
    return dataclasses.replace(plan, **changes) if changes else plan


@pytest.mark.parametrize(
    ("suite", "gcc"), [("bullseye", "10"), ("bookworm", "12"), ("trixie", "14"), ("sid", "16")]
)
def test_dockerfile_per_suite(suite: str, gcc: str) -> None:
    text = render_dockerfile(BuilderSpec(f"debian:{suite}", suite, gcc), "registry")
    assert f"\nFROM debian:{suite}\n" in text
    assert f"gcc-{gcc}" in text
    for tool in ("make", "clang", "llvm", "libbpf-dev", "libelf-dev", "bc"):
        assert re.search(rf"\s{re.escape(tool)}(\s|;)", text), tool
    # The mirror is a build argument: no host name is ever written into the Dockerfile.
    assert "ARG DEBIAN_MIRROR" in text
    assert "http://" not in text and "https://" not in text
    assert ("$suite-updates main" in text) == (suite != "sid")


def test_base_from_does_not_change_the_dockerfile_but_changes_the_tag() -> None:
    assert render_dockerfile(BOOKWORM, "registry") == render_dockerfile(BOOKWORM, "debootstrap")
    assert builder_image_tag(BOOKWORM, "registry") != builder_image_tag(BOOKWORM, "debootstrap")


def test_image_tag_is_a_pure_content_hash() -> None:
    tag = builder_image_tag(BOOKWORM)
    assert re.fullmatch(r"driverkit-builder-bookworm-gcc12:[0-9a-f]{12}", tag)
    assert builder_image_tag(BOOKWORM) == tag
    other_gcc = dataclasses.replace(BOOKWORM, gcc="11")
    assert builder_image_tag(other_gcc) != tag
    assert builder_image_tag(other_gcc).startswith("driverkit-builder-bookworm-gcc11:")


def test_unknown_suite_or_base_from_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="jessie"):
        render_dockerfile(BuilderSpec("debian:jessie", "jessie", "4.9"))
    with pytest.raises(UsageError, match="base-from"):
        render_dockerfile(BOOKWORM, "quay")
    with pytest.raises(UsageError, match=r"Dockerfile\.centos\.j2"):
        render_dockerfile(BuilderSpec("centos:7", "7", "4.8"))


def test_build_script_names_the_plan_artifacts_and_is_valid_sh() -> None:
    plan = _plan()
    script = render_build_script(plan)
    assert f"KMOD_NAME={plan.kmod_name}" in script
    assert f"PROBE_NAME={plan.probe_name}" in script
    assert "\nstep kmod kmod " in script and "\nstep probe probe " in script
    assert "\nstep core" not in script
    sh = shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n"], input=script, text=True, check=True)


def test_build_script_sections_follow_the_plan_flags() -> None:
    only_probe = render_build_script(_plan(build_kmod=False))
    assert "\nstep kmod" not in only_probe and "\nstep probe probe " in only_probe
    core = render_build_script(_plan(build_kmod=False, build_probe=False), build_core=True)
    assert "\nstep core core " in core and "DK_KERNELDIR" not in core
    assert "CORE_NAME=rtcap_core.o" in core


def test_build_script_quotes_what_it_renders() -> None:
    # Release validation already refuses metacharacters; quoting is the second wall. A
    # KernelRelease made by hand skips the parser, so only the template's quoting is left.
    plan = _plan()
    odd_kernel = dataclasses.replace(plan.kernel, full_extra_version="-x $(id)")
    script = render_build_script(dataclasses.replace(plan, kernel=odd_kernel))
    assert "KERNEL_RELEASE='6.1.0-x $(id)'" in script
    assert script.count("$(id)") == 1


def test_the_plan_refuses_what_the_option_table_refuses() -> None:
    # Library callers build and replace plans without the option table.
    with pytest.raises(UsageError, match=r"build plan: driver name 'rt cap\$\(id\)'"):
        _plan(driver_name="rt cap$(id)")
    with pytest.raises(UsageError, match=r"build plan: driver version '/etc'"):
        _plan(driver_version="/etc")


def test_output_layout() -> None:
    plan = _plan()
    assert output_dir(Path("/o"), plan) == Path("/o") / plan.driver_version / "amd64"
    assert manifest_name(plan) == plan.artifact_stem() + ".json"
    assert plan.kmod_name == "rtcap_debian_6.1.0-47-amd64_1.ko"


def test_kernels_sharing_an_artifact_name_fail_up_front() -> None:
    from driverkit.build import split_collisions

    bookworm_612 = _plan("6.12.107+deb12-amd64", kernel_version="#1 SMP Debian 6.12.107-1~deb12u1")
    trixie_612 = _plan("6.12.107+deb13-amd64", kernel_version="#1 SMP Debian 6.12.107-1")
    bookworm_612 = dataclasses.replace(
        bookworm_612, artifact=dataclasses.replace(trixie_612.artifact)
    )  # what a lossy naming fix-up produces
    kept, failed = split_collisions([bookworm_612, trixie_612, bookworm_612])
    assert kept == [bookworm_612]
    assert [o.plan for o in failed] == [trixie_612]
    assert "6.12.107+deb12-amd64" in failed[0].error and "overwrite" in failed[0].error


def test_manifest_warnings_are_the_compilers_warning_lines() -> None:
    from driverkit.processors.base import warning_lines

    log = ("  CC [M]  /src/rtcap_main.o\n"
           "/src/a.c:3:5: warning: unused variable 'x' [-Wunused-variable]\n"
           "note: a note\nwarnings: 0 is not a warning line\n"
           "/src/b.bpf.c:9:1: warning: default initialization [-Wdefault-const-init]  \n")
    assert warning_lines(log) == [
        "/src/a.c:3:5: warning: unused variable 'x' [-Wunused-variable]",
        "/src/b.bpf.c:9:1: warning: default initialization [-Wdefault-const-init]",
    ]


def test_the_plan_carries_its_builder_image_and_base_from() -> None:
    from driverkit.build import CORE_BUILDER, core_plan

    cfg = load_config({"base_from": "debootstrap"}, environ={})
    plan = resolve_plan("6.1.0-47-amd64", cfg, MIRRORS, target="debian")
    assert plan.base_from == "debootstrap" and not plan.builder_image_forced
    assert plan.builder_image == builder_image_tag(plan.builder, "debootstrap")
    # The CO-RE probe's plan is resolved for the same base as the kernel plan it follows.
    assert core_plan(plan).builder_image == builder_image_tag(CORE_BUILDER, "debootstrap")
    forced = resolve_plan(
        "6.1.0-47-amd64", load_config({"builder_image": "mine/builder:1"}, environ={}), MIRRORS
    )
    assert forced.builder_image == "mine/builder:1" and forced.builder_image_forced


class _Engine:
    """Just the ContainerEngine calls an image build makes, recorded."""

    def __init__(self, present: tuple[str, ...] = ()) -> None:
        self.present = set(present)
        self.built: list[str] = []

    def image_exists(self, tag: str) -> bool:
        return tag in self.present

    def build_image(
        self, dockerfile: str, tag: str, buildargs: dict[str, str], labels: dict[str, str]
    ) -> str:
        assert "FROM debian:bookworm" in dockerfile
        self.built.append(tag)
        self.present.add(tag)
        return "sha256:0"


def test_the_processor_side_uses_the_plans_image_tag_without_hashing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import cast

    from driverkit import images
    from driverkit.containers import ContainerEngine
    from driverkit.errors import ContainerEngineError

    plan = _plan()
    forced = dataclasses.replace(plan, builder_image="mine/builder:1", builder_image_forced=True)

    def rehash(*_: object) -> str:
        raise AssertionError("the builder image tag was derived again after resolution")

    monkeypatch.setattr(images, "builder_image_tag", rehash)
    engine = _Engine(present=("debian:bookworm",))
    assert images.ensure_plan_image(cast(ContainerEngine, engine), plan, MIRRORS, tmp_path) == (
        plan.builder_image
    )
    assert engine.built == [plan.builder_image]
    # A present forced image is used as it is.
    engine = _Engine(present=("mine/builder:1",))
    assert images.ensure_plan_image(cast(ContainerEngine, engine), forced, MIRRORS, tmp_path) == (
        "mine/builder:1"
    )
    # A missing forced image is an error naming the template's tag, and nothing is built.
    monkeypatch.undo()
    engine = _Engine(present=("debian:bookworm",))
    with pytest.raises(ContainerEngineError, match=r"mine/builder:1 does not exist.*renders"):
        images.ensure_plan_image(cast(ContainerEngine, engine), forced, MIRRORS, tmp_path)
    assert engine.built == []


def test_core_probe_script_is_the_same_for_every_kernel_plan() -> None:
    """The CO-RE probe depends on no kernel: one build serves every kernel of a run, and a
    later single-kernel build into the same output does not rebuild it."""
    from driverkit.build import core_plan
    from driverkit.config import load_config, resolve_plan

    cfg = load_config({})
    scripts = {
        render_build_script(core_plan(resolve_plan(rel, cfg, kernel_version="1")),
                            build_core=True)
        for rel in ("6.1.0-57-amd64", "5.10.0-46-amd64", "6.12.118+deb13-amd64")
    }
    assert len(scripts) == 1
    assert "6.1.0" not in next(iter(scripts))
