"""Distro targets: header URL candidates, gcc, builder specs and artifact naming.

All of this is offline and pure. Only the Debian mirror is reachable from the build hosts, so
URL tests compare against recorded facts instead of fetching: Debian candidates against the
Filename fields recorded from the archive's real Packages indexes
(tests/fixtures/targets/debian_packages.json), Ubuntu candidates against driverkit's own
test expectations; other distros' URLs are checked for shape. The network step that checks
which candidate exists is tested elsewhere.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drivercore.kernelrelease import parse_kernel_release
from drivercore.targets import (
    bottlerocket_kernel_version,
    flatcar_release,
    minikube_kernel_version,
    talos_kernel_version,
)
from driverkit.errors import (
    InvalidKernelReleaseError,
    ToolError,
    UnknownTargetError,
    UsageError,
)
from driverkit.gcc import debian_suite_for_gcc, default_gcc, gcc_major, installable_gcc
from driverkit.render import dockerfile_context, render_dockerfile
from driverkit.targets import TARGETS, all_targets, get_target
from driverkit.targets.base import BuilderSpec, Mirrors, Target
from driverkit.targets.coverage import E2E_TESTED, PROBE_SERIES, target_row
from driverkit.targets.debian import DEBIAN_SUITES
from driverkit.targets.ubuntu import ubuntu_extra_version
from tests.falcoctl_vectors import DEBIAN_FIXUP

FIXTURES = Path(__file__).parent / "fixtures" / "targets"
DEBIAN_ROOT = "http://mirror.invalid/debian"
SECURITY_ROOT = "http://mirror.invalid/debian-security"
MIRRORS = Mirrors(debian=DEBIAN_ROOT, debian_security=SECURITY_ROOT)

DRIVERKIT_TARGETS = {
    "alinux", "almalinux", "amazonlinux", "amazonlinux2", "amazonlinux2022", "amazonlinux2023",
    "arch", "bottlerocket", "centos", "debian", "fedora", "flatcar", "minikube", "ol",
    "opensuse", "photon", "redhat", "rocky", "sles", "talos", "ubuntu", "vanilla",
}  # fmt: skip

# A real release (and `uname -v`) for every target.
SAMPLES = {
    "alinux": ("5.10.134-13.al8.x86_64", "#1 SMP Mon Jan 1 00:00:00 CST 2024"),
    "almalinux": ("5.14.0-362.8.1.el9_3.x86_64", "#1 SMP PREEMPT_DYNAMIC Tue Nov 7 2023"),
    "amazonlinux": ("4.14.355-196.647.amzn1.x86_64", "#1 SMP Fri Aug 30 2024"),
    "amazonlinux2": ("4.14.171-136.231.amzn2.x86_64", "#1 SMP Thu Feb 27 2020"),
    "amazonlinux2022": ("5.15.29-16.111.amzn2022.x86_64", "#1 SMP Thu Mar 17 2022"),
    "amazonlinux2023": ("6.1.41-63.114.amzn2023.x86_64", "#1 SMP PREEMPT_DYNAMIC Tue Aug 1"),
    "arch": ("6.7.2-arch1-2", "#1 SMP PREEMPT_DYNAMIC Wed, 31 Jan 2024 09:22:15 +0000"),
    "bottlerocket": ("5.15.108", "1_1.14.1-aws"),
    "centos": ("3.10.0-1160.el7.x86_64", "#1 SMP Mon Oct 19 16:18:59 UTC 2020"),
    "debian": ("6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"),
    "fedora": ("6.5.6-300.fc39.x86_64", "#1 SMP PREEMPT_DYNAMIC Fri Oct 6 19:57:21 UTC 2023"),
    "flatcar": ("6.1.62-flatcar", "#1 SMP PREEMPT_DYNAMIC Mon Nov 20 22:57:52 -00 2023"),
    "minikube": ("5.10.57", "1_1.26.0"),
    "ol": ("5.4.17-2136.307.3.1.el8uek.x86_64", "#2 SMP Tue Apr 12 2022"),
    "opensuse": ("5.14.21-150400.24.46-default", "#1 SMP PREEMPT_DYNAMIC Thu Jan 5 2023"),
    "photon": ("4.19.283-3.ph3", "#1-photon SMP Fri Jun 16 02:25:27 UTC 2023"),
    "redhat": ("4.18.0-477.10.1.el8_8.x86_64", "#1 SMP Wed Apr 5 13:35:01 EDT 2023"),
    "rocky": ("4.18.0-477.10.1.el8_8.x86_64", "#1 SMP Wed Apr 5 13:35:01 EDT 2023"),
    "sles": ("5.14.21-150400.24.46-default", "#1 SMP PREEMPT_DYNAMIC Thu Jan 5 2023"),
    "talos": ("6.1.58-talos", "1_1.5.5"),
    "ubuntu": ("5.15.0-1051-aws", "#26~22.04.1-Ubuntu SMP Mon Apr 24 01:58:15 UTC 2023"),
    "vanilla": ("6.4-rc1", "#1 SMP"),
}

SUITE_GCCS = {suite.codename: suite.gccs for suite in DEBIAN_SUITES}
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d+)?/[A-Za-z0-9._~+:/-]*")


def test_registry_covers_every_driverkit_target() -> None:
    assert set(TARGETS) == DRIVERKIT_TARGETS
    assert {t.name for t in all_targets()} == DRIVERKIT_TARGETS
    assert set(SAMPLES) == DRIVERKIT_TARGETS


@pytest.mark.parametrize("name", sorted(DRIVERKIT_TARGETS))
def test_every_target_resolves_offline(name: str) -> None:
    target = get_target(name)
    release, uname_v = SAMPLES[name]
    kr = parse_kernel_release(release)
    urls = target.header_urls(kr, uname_v, MIRRORS)
    assert urls, f"{name} gave no header URLs"
    assert len(set(urls)) == len(urls), "duplicate candidates"
    for url in urls:
        assert _URL.fullmatch(url), url
        assert ".." not in url
    gcc = target.gcc_version(kr)
    assert re.fullmatch(r"\d+(\.\d+){0,2}", gcc)
    spec = target.builder(kr)
    assert (spec.distro_release, spec.gcc) == installable_gcc(gcc)
    assert spec.base_image == f"debian:{spec.distro_release}"
    assert spec.gcc in SUITE_GCCS[spec.distro_release]
    assert spec.wanted_gcc == gcc
    assert target.package_format in {"deb", "rpm", "tar"}
    assert target.header_source and "\n" not in target.header_source
    assert target.gcc_rule()
    artifact = target.artifact_kernel(kr, uname_v)
    assert artifact.target_id.startswith(name)
    assert re.fullmatch(r"[0-9A-Za-z._~+-]+", artifact.kernel_release)
    assert re.fullmatch(r"[0-9A-Za-z._~+-]+", artifact.kernel_version)


@pytest.mark.parametrize(
    "name", sorted(n for n in DRIVERKIT_TARGETS if not n.startswith("amazonlinux"))
)
def test_header_urls_name_the_release(name: str) -> None:
    """Every package-level candidate carries the kernel it is for (Amazon's candidates are
    repository indexes, checked in test_amazon_candidates_are_repository_indexes)."""
    release, uname_v = SAMPLES[name]
    kr = parse_kernel_release(release)
    urls = get_target(name).header_urls(kr, uname_v, MIRRORS)
    for url in urls:
        assert kr.full_version.rsplit(".0", 1)[0] in url or kr.full_version in url, url


@pytest.mark.parametrize(
    "name", ["alinux", "almalinux", "centos", "fedora", "ol", "photon", "redhat", "rocky"]
)
def test_rpm_targets_name_exact_kernel_devel(name: str) -> None:
    release, uname_v = SAMPLES[name]
    kr = parse_kernel_release(release)
    suffix = release if release.endswith(".x86_64") else f"{release}.x86_64"
    for url in get_target(name).header_urls(kr, uname_v, MIRRORS):
        assert url.endswith(f"-devel-{suffix}.rpm"), url


def test_rpm_targets_follow_arch() -> None:
    kr = parse_kernel_release("3.10.0-957.12.2.el7.aarch64")
    urls = get_target("centos").header_urls(kr, "1", MIRRORS, arch="amd64")
    assert all("/aarch64/" in u for u in urls)
    assert all("x86_64" not in u for u in urls)
    bare = parse_kernel_release("4.18.0-425.3.1.el8")
    arm = get_target("rocky").header_urls(bare, "1", MIRRORS, arch="arm64")
    assert arm[0].endswith("kernel-devel-4.18.0-425.3.1.el8.aarch64.rpm")


def test_amazon_candidates_are_repository_indexes() -> None:
    for name, arch_part in (("amazonlinux2", "/x86_64/"), ("amazonlinux2023", "/x86_64/")):
        release, uname_v = SAMPLES[name]
        urls = get_target(name).header_urls(parse_kernel_release(release), uname_v, MIRRORS)
        assert all(u.endswith("/mirror.list") and arch_part in u for u in urls)
    al2 = get_target("amazonlinux2").header_urls(parse_kernel_release("5.10.0-amzn2"), "1", MIRRORS)
    assert any("extras/kernel-5.10" in u for u in al2)


# --- gcc ----------------------------------------------------------------------------------

# driverkit's defaultGCC, as (release, gcc) facts.
DRIVERKIT_DEFAULT_GCC = [
    ("2.6.32", "4.8"), ("3.10.0", "4.9"), ("3.17.0", "4.9"), ("3.18.0", "5"), ("4.14.0", "8"),
    ("4.19.0", "8"), ("5.4.0", "11"), ("5.14.0", "11"), ("5.15.0", "12"), ("6.1.0", "12"),
    ("6.4.0", "12"), ("6.5.0", "13"), ("6.8.0", "13"), ("6.9.0", "14"), ("6.12.0", "14"),
    ("7.0.0", "14"),
]  # fmt: skip


@pytest.mark.parametrize(("release", "gcc"), DRIVERKIT_DEFAULT_GCC)
def test_default_gcc_table(release: str, gcc: str) -> None:
    assert default_gcc(parse_kernel_release(release)) == gcc
    assert get_target("vanilla").gcc_version(parse_kernel_release(release)) == gcc


@pytest.mark.parametrize(
    ("target", "release", "gcc"),
    [
        ("amazonlinux2", "5.10.213-201.855.amzn2.x86_64", "10"),
        ("amazonlinux2", "5.10.0-amzn2", "10"),
        ("amazonlinux2", "4.14.171-136.231.amzn2.x86_64", "8"),  # default
        ("amazonlinux2", "5.15.148-97.158.amzn2.x86_64", "12"),  # default
        ("amazonlinux2023", "5.10.0-1.amzn2023.x86_64", "11"),  # the override is AL2's only
        ("centos", "3.10.0-1160.el7.x86_64", "4.8.5"),
        ("centos", "4.18.0-348.7.1.el8_5.x86_64", "9"),
        ("centos", "5.14.0-362.el9.x86_64", "11"),
        ("rocky", "4.18.0-477.10.1.el8_8.x86_64", "8"),  # driverkit's rocky has no override
        ("minikube", "4.19.202", "8"),
        ("minikube", "5.10.57", "10"),
        ("minikube", "6.6.6", "12"),
        ("ubuntu", "6.8.0-48-generic", "13"),
        ("ubuntu", "5.19.0-1006-kvm", "12"),
        ("ubuntu", "5.15.0-1004-intel-iotg", "12"),
    ],
)
def test_gcc_overrides(target: str, release: str, gcc: str) -> None:
    assert get_target(target).gcc_version(parse_kernel_release(release)) == gcc


@pytest.mark.parametrize(
    ("wanted", "suite", "installed"),
    [("8", "buster", "8"), ("9", "bullseye", "9"), ("10", "bullseye", "10"),
     ("11", "bookworm", "11"), ("12", "bookworm", "12"), ("13", "trixie", "13"),
     ("14", "trixie", "14"), ("15", "sid", "15"), ("16", "sid", "16"),
     # Not shipped by any reachable suite: driverkit's nearest-older, else oldest, fallback.
     ("17", "sid", "16"), ("4.8.5", "buster", "7"), ("4.9", "buster", "7"), ("6", "buster", "7")],
)  # fmt: skip
def test_builder_gcc_is_installable(wanted: str, suite: str, installed: str) -> None:
    assert installable_gcc(wanted) == (suite, installed)
    assert debian_suite_for_gcc(wanted) == suite
    assert installed in SUITE_GCCS[suite]


def test_builder_keeps_the_wanted_gcc_apart() -> None:
    kr = parse_kernel_release("3.10.0-1160.el7.x86_64")
    centos = get_target("centos")
    assert centos.gcc_version(kr) == "4.8.5"  # driverkit's rule, shown by `targets`
    spec = centos.builder(kr)
    assert spec.gcc == "7"  # what a reachable builder can install
    assert spec.wanted_gcc == "4.8.5" and spec.substituted
    assert centos.gcc_note(kr, spec) == (
        "wants gcc 4.8.5 (CentOS 7 built 3.10 with it); no builder ships it: building with "
        "gcc 7 (buster), which may fail"
    )
    el8 = parse_kernel_release("4.18.0-348.7.1.el8_5.x86_64")
    assert not centos.builder(el8).substituted and centos.gcc_note(el8, centos.builder(el8)) == ""


def test_a_stretch_kernel_says_its_gcc_is_substituted() -> None:
    kr = parse_kernel_release("4.9.0-19-amd64")
    debian = get_target("debian")
    spec = debian.builder(kr)
    assert (spec.wanted_gcc, spec.distro_release, spec.gcc) == ("6", "buster", "7")
    assert debian.gcc_note(kr, spec).startswith(
        "wants gcc 6 (Debian stretch built it with gcc-6); no builder ships it"
    )


def test_forced_gcc_picks_a_suite_that_ships_it() -> None:
    debian = get_target("debian")
    bookworm_kernel = parse_kernel_release("6.1.0-13-amd64")
    # The kernel's own suite when it ships the forced gcc, else the oldest suite that does.
    assert debian.builder(bookworm_kernel, forced_gcc="11").distro_release == "bookworm"
    forced = debian.builder(bookworm_kernel, forced_gcc="10.2.1")
    assert (forced.distro_release, forced.gcc, forced.wanted_gcc) == ("bullseye", "10", "10.2.1")
    assert not forced.substituted
    assert debian.builder(bookworm_kernel, forced_gcc="012").gcc == "12"
    centos = get_target("centos").builder(
        parse_kernel_release("3.10.0-1160.el7.x86_64"), forced_gcc="8"
    )
    assert (centos.distro_release, centos.gcc, centos.substituted) == ("buster", "8", False)


@pytest.mark.parametrize("forced", ["4.8.5", "4.9", "6", "17", "99.1"])
def test_forced_gcc_no_builder_ships_is_one_usage_error(forced: str) -> None:
    kr = parse_kernel_release("3.10.0-1160.el7.x86_64")
    with pytest.raises(UsageError) as refused:
        get_target("centos").builder(kr, forced_gcc=forced)
    assert str(refused.value) == (
        f"--gcc-version {forced}: no builder ships it; builders have gcc 7, 8 (buster), "
        "9, 10 (bullseye), 11, 12 (bookworm), 13, 14 (trixie), 15, 16 (sid)"
    )


def _spread(target: Target) -> list[str]:
    """Releases across every kernel series plus the target's sample (and, for Debian, every
    recorded real kernel): what the gcc and builder rules are asked about."""
    releases = [f"{v}.{p}.0" for v, p in PROBE_SERIES] + [SAMPLES[target.name][0]]
    if target.name == "debian":
        releases += [kernel["release"] for kernel in _debian_fixture()]
        releases += ["4.9.0-19-amd64", "6.12.48+deb13-amd64", "7.2.13+deb14-amd64"]
    return releases


def test_rendered_gcc_is_always_a_package_of_the_builder_suite() -> None:
    """Over every target and a spread of releases: the builder's gcc is one its suite ships,
    and the Dockerfile installs exactly that gcc-N (never a wanted 4.8.5)."""
    specs: set[BuilderSpec] = set()
    for target in all_targets():
        for release in _spread(target):
            spec = target.builder(parse_kernel_release(release))
            assert spec.gcc in SUITE_GCCS[spec.distro_release], (target.name, release, spec)
            assert spec.substituted == (gcc_major(spec.wanted_gcc) != spec.gcc)
            specs.add(dataclasses.replace(spec, wanted_gcc=""))
    for spec in specs:
        instructions = [line for line in render_dockerfile(spec).splitlines()
                        if not line.lstrip().startswith("#")]  # fmt: skip
        named = set(re.findall(r"\bgcc-[0-9.]+\b", "\n".join(instructions)))
        assert named == {f"gcc-{spec.gcc}"}, spec


def test_render_refuses_a_gcc_its_suite_does_not_ship() -> None:
    with pytest.raises(UsageError, match=r"builder suite bookworm does not ship gcc-4\.8\.5 \("
                       r"it has gcc 11, 12\)"):
        dockerfile_context(BuilderSpec("debian:bookworm", "bookworm", "4.8.5"))
    with pytest.raises(UsageError, match="does not ship gcc-9"):
        render_dockerfile(BuilderSpec("debian:bookworm", "bookworm", "9"))


# --- what `driverkit targets` says ---------------------------------------------------------


def test_targets_rows_come_from_the_rules() -> None:
    centos = target_row(get_target("centos"))
    assert centos["header_format"] == "rpm" and centos["package_format"] == "rpm"
    assert centos["builds_today"] == "4.0+"
    assert centos["builder"][-1] == (
        "wants gcc 4.8 (2.6), 4.9 (3.0-3.9, 3.11-3.17), 4.8.5 (3.10), 5 (3.18-3.19): "
        "no builder (nearest gcc 7, buster)"
    )
    pinned = [b for b in centos["builders"] if b["first"] == "3.10"]
    assert pinned == [{"kernels": "3.10", "first": "3.10", "last": "3.10", "wanted_gcc": "4.8.5",
                       "suite": "buster", "gcc": "7", "substituted": True}]
    debian = target_row(get_target("debian"))
    assert debian["builder"][:5] == [
        "buster gcc 8 (4.10-4.19)", "bullseye gcc 10 (4.20-5.10)", "bookworm gcc 12 (5.11-6.1)",
        "trixie gcc 14 (6.2-6.12)", "sid gcc 16 (6.13+)",
    ]
    assert debian["builds_today"] == "4.10+"
    al2 = target_row(get_target("amazonlinux2"))
    assert "bullseye gcc 10 (5.10)" in al2["builder"]
    assert "bookworm gcc 11 (5.0-5.9, 5.11-5.14), gcc 12 (5.15-6.4)" in al2["builder"]
    assert target_row(get_target("minikube"))["builds_today"] == "all"
    for target in all_targets():
        row = target_row(target)
        # Every probed series is in exactly one range, in order.
        spans = [(b["first"], b["last"]) for b in row["builders"]]
        assert spans[0][0] == "2.6" and spans[-1][1] is None
        for builder in row["builders"]:
            assert builder["gcc"] in SUITE_GCCS[builder["suite"]]


# Node ids in E2E_TESTED: a file, a test function, an optional parametrize id.
_NODE_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:\[([\w.-]+)\])?")
REPO = Path(__file__).resolve().parent.parent


def _parametrize_text(tree: ast.Module, source: str, function: ast.FunctionDef) -> str:
    """The source of the function's parametrize decorators and of the module-level
    assignments they name (a list of cases kept in a constant)."""
    names: set[str] = set()
    texts: list[str] = []
    for decorator in function.decorator_list:
        text = ast.get_source_segment(source, decorator) or ""
        if "parametrize" in text:
            texts.append(text)
            names |= {n.id for n in ast.walk(decorator) if isinstance(n, ast.Name)}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign)
            else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id in names for t in targets):
            texts.append(ast.get_source_segment(source, node) or "")
    return "\n".join(texts)


def test_parametrize_text_reads_inline_and_named_case_lists() -> None:
    source = (
        "import pytest\n"
        "DISTROS = [pytest.param('centos', id='centos'), ('ubuntu-generic', 2)]\n"
        "@pytest.mark.docker\n"
        "@pytest.mark.parametrize(('name', 'n'), DISTROS)\n"
        "def test_build_e2e(name, n): ...\n"
        '@pytest.mark.parametrize("name", ["arch", "fedora"])\n'
        "def test_inline(name): ...\n"
    )
    tree = ast.parse(source)
    named, inline = (node for node in tree.body if isinstance(node, ast.FunctionDef))
    assert "'ubuntu-generic'" in _parametrize_text(tree, source, named)
    assert "'arch'" not in _parametrize_text(tree, source, named)
    assert '"fedora"' in _parametrize_text(tree, source, inline)


@pytest.mark.parametrize(
    ("target", "node_id"), [pytest.param(t, n, id=t) for t, n in sorted(E2E_TESTED.items())]
)
def test_e2e_table_names_tests_that_exist(target: str, node_id: str) -> None:
    assert target in TARGETS
    found = _NODE_ID.fullmatch(node_id)
    assert found, f"{node_id}: not a tests/<file>.py::<function>[<id>] node id"
    path, name, case = found.groups()
    test_file = REPO / path
    assert test_file.is_file(), f"{target}: {path} does not exist"
    source = test_file.read_text()
    tree = ast.parse(source)
    functions = {
        node.name: node for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert name in functions, f"{target}: {path} has no test function {name}"
    if case is not None:
        function = functions[name]
        assert isinstance(function, ast.FunctionDef)
        text = _parametrize_text(tree, source, function)
        assert f'"{case}"' in text or f"'{case}'" in text, (
            f"{target}: {name}'s parametrize list has no id {case!r}"
        )


# --- Debian -------------------------------------------------------------------------------


def _debian_fixture() -> list[dict[str, Any]]:
    doc = json.loads((FIXTURES / "debian_packages.json").read_text())
    kernels: list[dict[str, Any]] = doc["kernels"]
    return kernels


@pytest.mark.parametrize("kernel", _debian_fixture(), ids=lambda k: k["release"])
def test_debian_exact_urls_include_the_real_packages(kernel: dict[str, Any]) -> None:
    kr = parse_kernel_release(kernel["release"])
    urls = get_target("debian").header_urls(kr, kernel["uname_v"], MIRRORS)
    root = SECURITY_ROOT if kernel["archive"] == "debian-security" else DEBIAN_ROOT
    for filename in kernel["files"]:
        assert f"{root}/{filename}" in urls, filename
    # Every candidate is one of the three packages of this version; rt kernels also try
    # the other spelling of the -common package (-common-rt up to 6.12, -common after).
    names = {u.rsplit("/", 1)[1] for u in urls}
    recorded = {f.rsplit("/", 1)[1] for f in kernel["files"]}
    assert recorded <= names
    extra = names - recorded
    assert all("-common" in n for n in extra)
    assert len(extra) == (1 if kr.raw.endswith("-rt-amd64") else 0)


@pytest.mark.parametrize("kernel", _debian_fixture(), ids=lambda k: k["release"])
def test_debian_gcc_matches_the_headers_compiler_dependency(kernel: dict[str, Any]) -> None:
    kr = parse_kernel_release(kernel["release"])
    wanted = re.search(r"gcc-(\d+)", kernel["compiler_dependency"])
    assert wanted is not None
    spec = get_target("debian").builder(kr)
    assert spec.gcc == wanted.group(1)
    assert spec.gcc in SUITE_GCCS[spec.distro_release]


@pytest.mark.parametrize(
    ("release", "suite", "gcc"),
    [
        ("5.10.0-30-amd64", "bullseye", "10"),
        ("5.10.0-46-cloud-amd64", "bullseye", "10"),
        ("6.1.0-56-amd64", "bookworm", "12"),
        ("6.1.0-53-rt-amd64", "bookworm", "12"),
        ("6.12.43+deb12-amd64", "bookworm", "12"),
        ("6.12.48+deb13-amd64", "trixie", "14"),
        ("6.12.48+deb13-rt-amd64", "trixie", "14"),
        ("7.2.13+deb14-amd64", "sid", "16"),
        ("6.13.5-amd64", "sid", "16"),
        ("5.10.0-0.deb10.22-rt-amd64", "buster", "8"),
        ("6.1.0-0.deb11.13-amd64", "bullseye", "10"),
        ("6.5.3-1~bpo12+1-rt-amd64", "bookworm", "12"),
        ("4.19.0-6-amd64", "buster", "8"),
        ("4.9.0-19-amd64", "buster", "7"),  # stretch (gcc 6) is gone: nearest reachable
    ],
)
def test_debian_builder_follows_the_suite(release: str, suite: str, gcc: str) -> None:
    spec = get_target("debian").builder(parse_kernel_release(release))
    assert (spec.base_image, spec.distro_release, spec.gcc) == (f"debian:{suite}", suite, gcc)


@pytest.mark.parametrize(
    ("release", "kbuild"),
    [
        ("5.10.0-30-amd64", "linux-kbuild-5.10_"),
        ("5.10.0-0.deb10.22-rt-amd64", "linux-kbuild-5.10_"),
        ("6.12.48+deb13-amd64", "linux-kbuild-6.12.48+deb13_"),
        ("6.11.10-amd64", "linux-kbuild-6.11.10_"),
    ],
)
def test_debian_kbuild_package_follows_the_abi_scheme(release: str, kbuild: str) -> None:
    uname_v = "#1 SMP PREEMPT_DYNAMIC Debian 1.2.3-1 (2025-01-01)"
    urls = get_target("debian").header_urls(parse_kernel_release(release), uname_v, MIRRORS)
    names = [u.rsplit("/", 1)[1] for u in urls if "linux-kbuild-" in u]
    assert names and names[0].startswith(kbuild)


def test_debian_without_package_version_gives_pool_directories() -> None:
    urls = get_target("debian").header_urls(parse_kernel_release("6.1.0-56-amd64"), "1", MIRRORS)
    assert urls[0] == f"{DEBIAN_ROOT}/pool/main/l/linux/"
    assert f"{SECURITY_ROOT}/pool/updates/main/l/linux/" in urls
    assert all(u.endswith("/") for u in urls)


def test_debian_security_carried_series_searches_linux_x_y_first() -> None:
    kr = parse_kernel_release("6.12.117+deb12-amd64")
    uname_v = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2025-11-10)"
    urls = get_target("debian").header_urls(kr, uname_v, MIRRORS)
    assert urls[0].startswith(f"{SECURITY_ROOT}/pool/updates/main/l/linux-6.12/")


def test_debian_needs_a_mirror() -> None:
    kr = parse_kernel_release("6.1.0-56-amd64")
    with pytest.raises(UsageError, match="DRIVERKIT_DEBIAN_MIRROR"):
        get_target("debian").header_urls(kr, "1", Mirrors())


def test_debian_rejects_non_debian_release() -> None:
    with pytest.raises(InvalidKernelReleaseError, match="not a debian release"):
        get_target("debian").header_urls(parse_kernel_release("5.15.0-91-generic"), "1", MIRRORS)


# falcoctl pkg/driver/distro/debian_test.go: (release, uname -v) -> (release, version)
FALCOCTL_DEBIAN = [
    *DEBIAN_FIXUP,
    # and the brief's example
    ("5.10.0-30-amd64", "#1 SMP Debian 5.10.218-1 (2024-06-01)", "5.10.218-1-amd64", "1"),
]  # fmt: skip


@pytest.mark.parametrize(("release", "uname_v", "fixed_release", "fixed_version"), FALCOCTL_DEBIAN)
def test_debian_artifact_naming(
    release: str, uname_v: str, fixed_release: str, fixed_version: str
) -> None:
    artifact = get_target("debian").artifact_kernel(parse_kernel_release(release), uname_v)
    assert (artifact.target_id, artifact.kernel_release, artifact.kernel_version) == (
        "debian", fixed_release, fixed_version
    )


# --- Ubuntu -------------------------------------------------------------------------------

# falcoctl pkg/driver/distro/ubuntu_test.go: (release, uname -v) -> (target id, version)
FALCOCTL_UBUNTU = [
    ("5.0.0-1028-aws-5.0", "#26~22.04.1-Ubuntu SMP Mon Apr 24 01:58:15 UTC 2023", "ubuntu-aws",
     "26~22.04.1"),
    ("5.0.0-1028-aws-5.0", "#26", "ubuntu-aws", "26"),
    ("5.0.0-1028-aws-5.0", "#26-Ubuntu", "ubuntu-aws", "26"),
    ("5.0.0", "#26", "ubuntu-generic", "26"),
    ("6.5.0-9-lowlatency", "#9.1", "ubuntu-lowlatency", "9.1"),
    ("6.5.0-1008-gcp", "#8", "ubuntu-gcp", "8"),
    ("6.5.0-1008-aws", "#8~22.04.1", "ubuntu-aws", "8~22.04.1"),
]  # fmt: skip


@pytest.mark.parametrize(("release", "uname_v", "target_id", "version"), FALCOCTL_UBUNTU)
def test_ubuntu_artifact_naming(release: str, uname_v: str, target_id: str, version: str) -> None:
    artifact = get_target("ubuntu").artifact_kernel(parse_kernel_release(release), uname_v)
    assert (artifact.target_id, artifact.kernel_release, artifact.kernel_version) == (
        target_id, release, version
    )


EDGE = "https://mirrors.edge.kernel.org/ubuntu/pool/main/l"
PORTS = "http://ports.ubuntu.com/ubuntu-ports/pool/main/l"


def _driverkit_ubuntu_cases() -> list[dict[str, Any]]:
    doc = json.loads((FIXTURES / "driverkit_ubuntu_urls.json").read_text())
    cases: list[dict[str, Any]] = doc["cases"]
    return cases


@pytest.mark.parametrize("case", _driverkit_ubuntu_cases(), ids=lambda c: c["release"])
def test_ubuntu_urls_match_driverkit(case: dict[str, Any]) -> None:
    """driverkit's own expected candidates for one pool, in driverkit's order."""
    kr = parse_kernel_release(case["release"])
    pool = case["urls"][0].split("/pool/main/l/")[0]
    urls = get_target("ubuntu").header_urls(
        kr, case["kernel_version"], Mirrors(ubuntu=(pool,)), arch=case["arch"]
    )
    assert list(urls) == case["urls"]
    assert ubuntu_extra_version(kr) == (case["first_extra"], case["flavor"])


def test_ubuntu_default_pools_by_arch() -> None:
    kr = parse_kernel_release("5.15.0-91-generic")
    amd = get_target("ubuntu").header_urls(kr, "#101-Ubuntu SMP", Mirrors())
    arm = get_target("ubuntu").header_urls(kr, "#101-Ubuntu SMP", Mirrors(), arch="arm64")
    assert any(u.startswith(EDGE) for u in amd)
    assert any("security.ubuntu.com" in u for u in amd)
    assert all(u.startswith(PORTS) for u in arm)
    assert f"{EDGE}/linux/linux-headers-5.15.0-91-generic_5.15.0-91.101_amd64.deb" in amd


# --- distros named from os-release (falcoctl) ----------------------------------------------


@pytest.mark.parametrize(
    ("version_id", "variant_id", "expected"),
    [("1.11.0", "aws-k8s-1.15", "1_1.11.0-aws"), ("1.17.0", "aws", "1_1.17.0-aws")],
)
def test_bottlerocket_kernel_version(version_id: str, variant_id: str, expected: str) -> None:
    assert bottlerocket_kernel_version(version_id, variant_id) == expected
    kr = parse_kernel_release("5.15.108")
    artifact = get_target("bottlerocket").artifact_kernel(kr, expected)
    assert artifact.kernel_version == expected


@pytest.mark.parametrize(
    ("version_id", "expected"), [("1.11.0", "1_1.11.0"), ("1.17.0", "1_1.17.0")]
)
def test_talos_kernel_version(version_id: str, expected: str) -> None:
    assert talos_kernel_version(version_id) == expected


def test_minikube_kernel_version() -> None:
    assert minikube_kernel_version("v1.26.0-1655407986-14197") == "1_1.26.0"
    with pytest.raises(InvalidKernelReleaseError):
        minikube_kernel_version("nonsense")


def test_os_release_values_are_validated() -> None:
    with pytest.raises(ToolError):
        talos_kernel_version("1.0;id")
    with pytest.raises(ToolError):
        bottlerocket_kernel_version("$(id)", "aws")


def test_flatcar_naming_and_sources() -> None:
    flatcar = get_target("flatcar")
    # falcoctl flatcar_test.go: the artifact release is the Flatcar VERSION_ID.
    assert flatcar_release("3794.0.0") == "3794.0.0"
    by_release = flatcar.artifact_kernel(parse_kernel_release("3794.0.0"), "#27 SMP PREEMPT")
    assert (by_release.kernel_release, by_release.kernel_version) == ("3794.0.0", "27")
    lists = flatcar.header_urls(parse_kernel_release("3510.2.3"), "1", MIRRORS, arch="arm64")
    assert lists[0] == (
        "https://stable.release.flatcar-linux.net/arm64-usr/3510.2.3/"
        "flatcar_production_image_packages.txt"
    )
    kernel = flatcar.header_urls(parse_kernel_release("6.1.62-flatcar"), "1", MIRRORS)
    assert kernel[0] == "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.1.62.tar.xz"


@pytest.mark.parametrize(
    ("release", "url"),
    [
        ("6.4-rc1", "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/snapshot/"
         "linux-6.4-rc1.tar.gz"),
        ("6.4.0-rc1", "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/snapshot/"
         "linux-6.4-rc1.tar.gz"),
        ("6.1.55", "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.1.55.tar.xz"),
        ("6.9.0", "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.9.tar.xz"),
    ],
)  # fmt: skip
def test_vanilla_sources(release: str, url: str) -> None:
    assert get_target("vanilla").header_urls(parse_kernel_release(release), "1", MIRRORS)[0] == url


@pytest.mark.parametrize(
    ("release", "kv", "first"),
    [
        ("6.8.1-arch1-1", "1", "https://archive.archlinux.org/packages/l/linux-headers/"
         "linux-headers-6.8.1.arch1-1-x86_64.pkg.tar.zst"),
        ("6.8.0-arch1-1", "1", "https://archive.archlinux.org/packages/l/linux-headers/"
         "linux-headers-6.8.arch1-1-x86_64.pkg.tar.zst"),
        ("5.19.3.arch1-1", "1", "https://archive.archlinux.org/packages/l/linux-headers/"
         "linux-headers-5.19.3.arch1-1-x86_64.pkg.tar.zst"),
        ("6.8.9-zen1-2-zen", "1", "https://archive.archlinux.org/packages/l/linux-zen-headers/"
         "linux-zen-headers-6.8.9.zen1-2-x86_64.pkg.tar.zst"),
        ("6.6.30-2-lts", "1", "https://archive.archlinux.org/packages/l/linux-lts-headers/"
         "linux-lts-headers-6.6.30-2-x86_64.pkg.tar.zst"),
    ],
)  # fmt: skip
def test_arch_packages(release: str, kv: str, first: str) -> None:
    assert get_target("arch").header_urls(parse_kernel_release(release), kv, MIRRORS)[0] == first


def test_suse_needs_both_rpms() -> None:
    kr = parse_kernel_release("5.14.21-150400.24.46-default")
    for name in ("opensuse", "sles"):
        urls = get_target(name).header_urls(kr, "1", MIRRORS)
        devel = "kernel-default-devel-5.14.21-150400.24.46.1.x86_64.rpm"
        assert any(u.endswith(devel) for u in urls)
        assert any(u.endswith("kernel-devel-5.14.21-150400.24.46.1.noarch.rpm") for u in urls)
    leap = get_target("opensuse").header_urls(kr, "1", MIRRORS)
    assert "/leap/15.4/" in leap[0]
    sles = get_target("sles").header_urls(kr, "1", MIRRORS)
    assert "/15-SP4/" in sles[0]


def test_photon_flavor_package() -> None:
    kr = parse_kernel_release("4.19.225-3.ph3-esx")
    urls = get_target("photon").header_urls(kr, "1", MIRRORS)
    assert urls[0] == (
        "https://packages.vmware.com/photon/3.0/photon_3.0_x86_64/x86_64/"
        "linux-esx-devel-4.19.225-3.ph3.x86_64.rpm"
    )


@pytest.mark.parametrize(
    ("target", "release"),
    [("fedora", "6.1.0-56-amd64"), ("ol", "6.1.0-56-amd64"), ("arch", "6.1.0-56-amd64"),
     ("flatcar", "6.1.55"), ("opensuse", "6.1.0-56-amd64")],
)  # fmt: skip
def test_release_of_another_distro_is_one_clear_line(target: str, release: str) -> None:
    with pytest.raises(InvalidKernelReleaseError) as info:
        get_target(target).header_urls(parse_kernel_release(release), "1", MIRRORS)
    message = str(info.value)
    assert release in message and "\n" not in message and "--target" in message


# --- lookup -------------------------------------------------------------------------------


def test_get_target_accepts_driverkit_ubuntu_flavor_names() -> None:
    assert get_target("ubuntu-aws").name == "ubuntu"
    assert get_target("ubuntu-generic").name == "ubuntu"
    assert get_target("Debian").name == "debian"


def test_unknown_target_lists_valid_ones_with_a_suggestion() -> None:
    with pytest.raises(UnknownTargetError) as info:
        get_target("debain")
    message = str(info.value)
    assert "did you mean 'debian'" in message
    for name in DRIVERKIT_TARGETS:
        assert name in message
    assert "\n" not in message
    assert info.value.exit_code == UnknownTargetError.exit_code


def test_unknown_target_without_close_match() -> None:
    with pytest.raises(UnknownTargetError) as info:
        get_target("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_targets_are_target_instances() -> None:
    assert all(isinstance(t, Target) for t in all_targets())


@pytest.mark.parametrize(
    "module",
    ["driverkit.gcc", "drivercore.kernelrelease", "driverkit.targets.base",
     "driverkit.targets.common", "driverkit.targets.debian", "driverkit.targets",
     "driverkit.mirrors", "drivercore.targets", "driverkit.render", "driverkit.images",
     "driverkit.debarchive", "driverkit.headers", "driverkit.repometa"],
)  # fmt: skip
def test_modules_import_on_their_own(module: str) -> None:
    """Import order must not matter (the registry and the mirror helpers import each other's
    modules; the suite table and the registry sit below their readers); each is imported
    first in a fresh interpreter, so no import cycle shows whichever a process loads first."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_debian_security_and_trixie_builds_of_one_version_get_distinct_names() -> None:
    """bookworm-security's 6.12.107-1~deb12u1 (gcc-12) and trixie's 6.12.107-1 (gcc-14) are
    different builds; falcoctl's fix-up would name both 6.12.107-1-amd64."""
    debian = get_target("debian")
    security = debian.artifact_kernel(
        parse_kernel_release("6.12.0-0.deb12.30-amd64"),
        "#1 SMP PREEMPT_DYNAMIC Debian 6.12.107-1~deb12u1 (2025-10-02)",
    )
    trixie = debian.artifact_kernel(
        parse_kernel_release("6.12.0-30-amd64"),
        "#1 SMP PREEMPT_DYNAMIC Debian 6.12.107-1 (2025-10-02)",
    )
    assert security.kernel_release == "6.12.107-1~deb12u1-amd64"
    assert trixie.kernel_release == "6.12.107-1-amd64"
    backport = debian.artifact_kernel(
        parse_kernel_release("6.12.38+bpo-amd64"), "#1 SMP Debian 6.12.38-1~bpo12+1 (2025-07-20)"
    )
    assert backport.kernel_release == "6.12.38-1~bpo12+1-amd64"
