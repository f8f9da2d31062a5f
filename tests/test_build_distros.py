"""`driverkit build` end to end for the non-Debian targets, each artifact booted.

For amazonlinux2, centos, rocky, fedora, ubuntu, arch and vanilla: the real CLI (Docker
processor, the shared Debian builder images) resolves the release, follows the target's
own header strategy over HTTP (mirror.list -> repomd.xml -> primary.sqlite -> kernel-devel
for Amazon Linux 2; the EL family's Packages/ paths and their repodata; Ubuntu's pool
pair; the Arch archive; kernel.org's tarball plus the kernel's .config), downloads and
checks the package against the sha256 its repository publishes, extracts it on the host
and compiles the module and the per-kernel probe in the builder. Then each artifact is
loaded and exercised in a QEMU guest booted on the Debian kernel whose headers (or
sources) it was made from (tests/guest/kmod_check.py: load, capture a known workload,
stats, unload, clean dmesg); the builds of one kernel share one boot.

What is real and what is stood in: see tests/distro_repos.py and
tests/kernel_org_standin.py. In short: the headers' and sources' bytes are a real Debian
kernel's (from the signed archive), every compiler, packaging tool (rpmbuild,
createrepo_c, dpkg-deb, tar+zstd) and the server (nginx) are real; the distros' own bytes
and release names are stood in, and the distros' hosts are reached through driverkit's
`--repo-mirror` (the plan and the manifest still name the distro's real URLs).

Vanilla: a source build has no Module.symvers, so its module carries no symbol CRCs and
its vermagic names the upstream release (6.1.192), not the Debian kernel's (6.1.0-57-amd64).
A kernel.org kernel of that release would load it as is; the Debian kernel, built from the
same sources and .config, needs `insmod -f` (CONFIG_MODULE_FORCE_LOAD=y), which the guest
uses for that build only and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci.bootverify import BootResult, BuiltDriver, built_drivers, driver_version
from tests.conftest import require
from tests.distro_repos import (
    RepoServer,
    StandInRepos,
    build_standins,
    repo_mirror_args,
    require_tools,
    serve_repos,
)

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.network, pytest.mark.qemu,
              pytest.mark.slow, pytest.mark.xdist_group("distro-e2e")]  # fmt: skip

# The targets whose builds this file proves (driverkit.targets.coverage names these ids).
E2E_TARGETS = ("amazonlinux2", "centos", "rocky", "fedora", "ubuntu", "arch", "vanilla")
BUILD_TIMEOUT_S = 1800


def _cache_root() -> Path:
    from ci.kernels import cache_root

    return cache_root()


def _prerequisites() -> None:
    require(os.geteuid() == 0, "needs root (docker builds, guest module loading)")
    for tool in ("driverkit", "docker", "vng", "qemu-system-x86_64"):
        require(shutil.which(tool) is not None, f"needs {tool} (see ci/setup.sh)")
    require_tools()


@dataclass(frozen=True)
class Case:
    """One target's build: what to pass to `driverkit build` and what it must find."""

    target: str
    release: str
    kernel_version: str
    debian_release: str  # the Debian kernel the headers/sources are, and that boots
    urls: tuple[str, ...]  # the packages as their real-host URLs
    files: tuple[Path, ...]  # the same packages, as served
    extra_args: tuple[str, ...]  # --repo-mirror ..., --kernel-config ...


class World:
    """The stand-in repositories, their servers, and what was built and booted (once per
    session: a build or a TCG boot is too slow to repeat per assertion)."""

    def __init__(self, stack: Any) -> None:
        self.repos: StandInRepos = build_standins(_cache_root())
        self.server: RepoServer = stack.enter_context(serve_repos(self.repos.root))
        from tests.kernel_org_standin import KERNEL_ORG_HOST, source_standin

        bookworm = self.repos.get("centos").debian_release  # the 6.1 kernel the others use
        source = source_standin(bookworm, _cache_root())
        vanilla_root = _cache_root() / "kernel-org-standin" / "root"
        served = source.place(vanilla_root)
        self.vanilla_server: RepoServer = stack.enter_context(serve_repos(vanilla_root))
        self.cases: dict[str, Case] = {}
        for standin in self.repos.standins:
            self.cases[standin.target] = Case(
                standin.target, standin.release, standin.kernel_version,
                standin.debian_release, standin.urls, standin.files,
                tuple(repo_mirror_args(self.server)),
            )  # fmt: skip
        self.cases["vanilla"] = Case(
            "vanilla", source.release, "1", source.debian_release,
            (f"https://{KERNEL_ORG_HOST}/{source.url_path}",), (served,),
            ("--repo-mirror", f"https://{KERNEL_ORG_HOST}/={self.vanilla_server.url}/"
             f"{KERNEL_ORG_HOST}/", "--kernel-config", str(source.config)),
        )  # fmt: skip
        self.builds: dict[str, BuiltDriver | str] = {}
        self.boots: dict[str, dict[str, BootResult]] = {}
        self.output = _cache_root() / "distro-builds"

    def build(self, target: str) -> BuiltDriver:
        """`driverkit build` through its CLI; the failure text is kept and re-raised for
        every test that needs this build."""
        if target not in self.builds:
            self.builds[target] = self._build(self.cases[target])
        built = self.builds[target]
        if isinstance(built, str):
            pytest.fail(built)
        return built

    def _build(self, case: Case) -> BuiltDriver | str:
        out = self.output / case.target
        done = driverkit("build", "--kernel", case.release, "--kernel-version",
                         case.kernel_version, "--target", case.target,
                         "--base-from", "debootstrap", "--processor", "docker",
                         "--driver-version", driver_version(),
                         "--cache-dir", str(_cache_root()), "--output", str(out),
                         *case.extra_args)  # fmt: skip
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-12:])
            return (f"driverkit build {case.target} {case.release} failed "
                    f"({done.returncode}): {tail}")
        built = built_drivers(out / driver_version() / "amd64").get(case.release)
        return built or f"{case.target}: no manifest names {case.release} under {out}"

    def boot(self, debian_release: str) -> dict[str, BootResult]:
        """One boot of `debian_release` proving every build made from it."""
        if debian_release not in self.boots:
            from ci.bootverify import verify_kmods
            from ci.kernels import fetch

            targets = [t for t, c in self.cases.items() if c.debian_release == debian_release]
            builds: dict[str, BuiltDriver] = {}
            for target in targets:
                try:
                    builds[target] = self.build(target)
                except pytest.fail.Exception:
                    continue  # that target's own test reports its build
            forced = {t for t in builds if t == "vanilla"}
            self.boots[debian_release] = verify_kmods(
                fetch(debian_release), builds, label="distros", force_load=forced
            )
        return self.boots[debian_release]


def driverkit(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("driverkit")
    assert exe is not None
    return subprocess.run([exe, *args], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    import contextlib

    _prerequisites()
    with contextlib.ExitStack() as stack:
        yield World(stack)


def _manifest(built: BuiltDriver) -> dict[str, Any]:
    assert built.kmod is not None
    path = built.kmod.with_suffix(".json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("target", E2E_TARGETS)
def test_build_e2e(world: World, target: str) -> None:
    case = world.cases[target]
    built = world.build(target)
    manifest = _manifest(built)
    # Found where the distro keeps it, by the target's own strategy, and verified.
    headers = manifest["headers"]
    assert [h["url"] for h in headers] == list(case.urls), headers
    for header, served in zip(headers, case.files, strict=True):
        assert header["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    assert manifest["inputs"]["target"] == target
    assert built.kmod is not None and built.probe is not None
    vermagic = manifest["artifacts"][built.kmod.name]["vermagic"]
    assert vermagic.startswith(case.release + " "), vermagic
    # The builder's compiler is the one the Debian kernel was built with (no substitution).
    assert not manifest["inputs"]["builder"].get("wanted_gcc") or (
        manifest["inputs"]["builder"]["wanted_gcc"].split(".")[0]
        == manifest["inputs"]["builder"]["gcc"]
    )
    # Proven on the Debian kernel the headers came from.
    result = world.boot(case.debian_release)[target]
    failed = result.failed_checks()
    assert result.ok, f"{target} on {case.debian_release}: {failed} (console {result.console_log})"


def test_a_release_amazon_does_not_hold_gets_the_nearest_it_does(world: World) -> None:
    """The mission's example, `5.10.0-amzn2`: resolved, looked up in the repositories the
    mirror lists name, and refused in one line that names the builds they hold."""
    case = world.cases["amazonlinux2"]
    done = driverkit("build", "--kernel", "5.10.0-amzn2", "--base-from", "debootstrap",
                     "--cache-dir", str(_cache_root()),
                     "--output", str(world.output / "missing"), *case.extra_args)  # fmt: skip
    from drivercore.errors import ExitCode

    lines = done.stderr.strip().splitlines()
    assert done.returncode == ExitCode.HEADERS_NOT_FOUND, done.stderr
    error = [line for line in lines if line.startswith("driverkit: error:")]
    assert len(error) == 1, lines
    assert error[0].startswith(
        "driverkit: error: no kernel-devel 5.10.0-amzn2 in amazonlinux2's repositories"
    ), error[0]
    assert f"nearest: {case.release}" in error[0]
    assert not (world.output / "missing").exists() or not any(
        (world.output / "missing").rglob("*.ko")
    )

