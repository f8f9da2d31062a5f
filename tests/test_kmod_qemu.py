"""The rtcap kernel module, proven on real Debian kernels booted under QEMU/TCG.

Per kernel of ci.kernels.TEST_KERNELS (one each of 5.10, 6.1, 6.12 and the newest 7.x,
plus RT_BOOT_KERNELS for the module alone):
build rtcap.ko with that kernel's own gcc, boot the kernel with virtme-ng, and inside it
(tests/guest/kmod_check.py): a module built for another kernel is refused with the
error surfacing, ours loads, a filtered capture of a known workload (exec, open,
loopback connect) reads back exactly those events with the right pids and args, stats
account for every event, rmmod succeeds and dmesg holds no oops/BUG/WARNING/trace.

The per-kernel and CO-RE eBPF probes are loaded in the same guests and checked with the
same workload (test_probe_on_real_kernel). Also compile-checks the module warning-free
against the cloud/rt flavors and the other 6.12 line (ci.kernels.COMPILE_ONLY_KERNELS).

Kernel packages and toolchain chroots are cached under $DK_CACHE, so reruns only boot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ci.bootverify import BootResult
from ci.kernels import COMPILE_ONLY_KERNELS, RT_BOOT_KERNELS, TEST_KERNELS
from tests.conftest import require

# Boot/compile tests. One boot per kernel is shared by several tests of one worker,
# so they stay in one xdist group.
QEMU = [pytest.mark.qemu, pytest.mark.root, pytest.mark.network, pytest.mark.slow,
        pytest.mark.xdist_group("qemu-kernels")]  # fmt: skip


def qemu_test(fn: Callable[..., None]) -> Callable[..., None]:
    for mark in QEMU:
        fn = mark(fn)
    return fn


# Which kernel's module each test kernel must refuse: any other kernel works; these
# pairs reuse modules the other tests build anyway.
FOREIGN = {"5.10": "6.1", "6.1": "7", "6.12": "5.10", "7": "6.12", "6.1-rt": "6.1"}


def _prerequisites() -> None:
    require(os.geteuid() == 0, "needs root (chroot builds, bind mounts)")
    for tool in ("vng", "debootstrap", "unshare", "dpkg-deb", "apt-get", "qemu-system-x86_64"):
        require(shutil.which(tool) is not None, f"needs {tool} (see .ci/run)")


MODULE_CHECKS = ("foreign_module_refused", "insmod", "start_refused_before_handshake",
                 "handshake", "event_execve", "event_openat", "event_connect",
                 "event_common_fields", "stats_account_for_events", "event_clone",
                 "event_exit_at_enter", "event_procexit", "event_mkdir", "event_rmdir",
                 "drops_counted_not_silent", "rmmod", "device_gone", "dmesg_clean")  # fmt: skip
PROBE_CHECKS = ("loaded", "event_execve", "event_openat", "event_connect",
                "stats_account_for_events")  # fmt: skip

# One boot per kernel serves both the module and the probe tests (a TCG boot is slow).
_boots: dict[str, BootResult] = {}


def _boot(selector: str) -> BootResult:
    from ci.bootverify import verify_kmod
    from ci.kernels import fetch, resolve

    if selector not in _boots:
        _prerequisites()
        tree = fetch(resolve(selector))
        foreign = fetch(resolve(FOREIGN[selector]))
        _boots[selector] = verify_kmod(tree, foreign, with_probes=selector in TEST_KERNELS)
        print(f"{tree.release}: timings {_boots[selector].timings}")
    return _boots[selector]


def _assert_checks(result: BootResult, names: tuple[str, ...], prefix: str) -> None:
    """Every named check ran and passed, and no other check of this group failed.

    prefix "" is the module's group: every check not belonging to a probe.
    """
    assert result.verdict is not None, f"{result.release}: no guest verdict ({result.console_log})"

    def mine(name: str) -> bool:
        return name.startswith(prefix) if prefix else not name.startswith("probe_")

    checks = {c["name"]: c for c in result.verdict.get("checks", []) if mine(c["name"])}
    problems = [f"{prefix}{n}: never ran" for n in names if prefix + n not in checks]
    # Verifier logs run to pages: the head says what failed, console_log has the rest.
    problems += [f"{n}: {str(c.get('detail', ''))[:600]}" for n, c in checks.items()
                 if not c["ok"]]  # fmt: skip
    assert not problems, f"{result.release}: " + "; ".join(problems) + f" ({result.console_log})"


@qemu_test
@pytest.mark.parametrize("selector", [*TEST_KERNELS, *RT_BOOT_KERNELS])
def test_module_on_real_kernel(selector: str) -> None:
    from ci.bootverify import module_for
    from ci.kernels import build_warnings, fetch, resolve

    result = _boot(selector)
    tree = fetch(resolve(selector))
    warnings = build_warnings((module_for(tree).parent / "build.log").read_text())
    assert not warnings, f"{tree.release}: module built with warnings: " + "\n".join(warnings)
    _assert_checks(result, MODULE_CHECKS, prefix="")


@qemu_test
@pytest.mark.parametrize("label", ["kernel", "core"])
@pytest.mark.parametrize("selector", TEST_KERNELS)
def test_probe_on_real_kernel(selector: str, label: str) -> None:
    """The per-kernel probe and the CO-RE probe, loaded in the same guest."""
    _assert_checks(_boot(selector), PROBE_CHECKS, prefix=f"probe_{label}_")


@qemu_test
@pytest.mark.docker
@pytest.mark.parametrize("selector", TEST_KERNELS)
def test_build_service_artifacts_load_and_capture(tmp_path: Path, selector: str) -> None:
    """What `driverkit build` makes in its Docker builders, not the chroot builds above: the
    module, the per-kernel probe and the CO-RE probe from one `--output` tree load and
    capture on the kernel they name, found through the build's manifests."""
    from ci.bootverify import built_drivers, verify_kmod
    from ci.kernels import fetch, resolve

    _prerequisites()
    driverkit = shutil.which("driverkit")
    require(driverkit is not None, "needs the driverkit command (pip install -e .)")
    assert driverkit is not None
    release = resolve(selector)
    out = tmp_path / "out"
    build = subprocess.run(
        [driverkit, "build", "--kernel", release, "--target", "debian",
         "--base-from", "debootstrap", "--output", str(out)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert build.returncode == 0, f"driverkit build failed: {build.stderr[-2000:]}"
    built = built_drivers(out)[release]
    assert built.kmod is not None and built.probe is not None and built.core is not None
    # Warning-free with that suite's own gcc and clang, like the chroot builds above.
    manifest = json.loads(built.kmod.with_suffix(".json").read_text())
    assert manifest["warnings"] == [], f"{release}: " + "\n".join(manifest["warnings"])
    # The repo layout <driver-version>/<arch>/ that publishing keeps.
    assert built.kmod.parent.relative_to(out).parts[1:] == ("amd64",)
    foreign = fetch(resolve(FOREIGN[selector]))
    result = verify_kmod(fetch(release), foreign, built=built)
    print(f"{release} (driverkit build): timings {result.timings}")
    _assert_checks(result, MODULE_CHECKS, prefix="")
    for label in ("kernel", "core"):
        _assert_checks(result, PROBE_CHECKS, prefix=f"probe_{label}_")


def test_built_drivers_come_from_the_manifests(tmp_path: Path) -> None:
    """The artifacts mode finds a build by its manifest, pairs the CO-RE probe of the same
    folder, and refuses an empty tree or two builds of one kernel with the fix."""

    from ci.bootverify import built_drivers
    from driverkit.errors import UsageError

    with pytest.raises(UsageError, match="driverkit build --output"):
        built_drivers(tmp_path)
    folder = tmp_path / "0.1.0" / "amd64"
    folder.mkdir(parents=True)
    stem = "rtcap_debian_6.1.0-56-amd64_1"
    for name in (f"{stem}.ko", f"{stem}.o", "rtcap_core.o"):
        (folder / name).write_bytes(b"x")
    kernel = {"inputs": {"kind": "kernel", "kernel_release": "6.1.0-56-amd64",
                         "target": "debian"},
              "artifacts": {f"{stem}.ko": {}, f"{stem}.o": {}}}  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(kernel))
    (folder / "rtcap_core.json").write_text(
        json.dumps({"inputs": {"kind": "core"}, "artifacts": {"rtcap_core.o": {}}}))
    (folder / "notes.json").write_text("[1, 2]")  # not a manifest: ignored
    built = built_drivers(tmp_path)["6.1.0-56-amd64"]
    assert (built.kmod, built.probe, built.core, built.target) == (
        folder / f"{stem}.ko", folder / f"{stem}.o", folder / "rtcap_core.o", "debian")
    other = tmp_path / "0.2.0" / "amd64"
    other.mkdir(parents=True)
    (other / f"{stem}.json").write_text(json.dumps(kernel))
    with pytest.raises(UsageError, match=r"two builds for kernel 6\.1\.0-56-amd64"):
        built_drivers(tmp_path)


@qemu_test
@pytest.mark.parametrize("selector", COMPILE_ONLY_KERNELS)
def test_module_compiles_warning_free(selector: str, tmp_path: Path) -> None:
    from ci.bootverify import DRIVER_DIR
    from ci.kernels import build_kmod, build_warnings, fetch, resolve

    _prerequisites()
    tree = fetch(resolve(selector), image=False)
    out = tmp_path
    ko = build_kmod(tree, DRIVER_DIR, out)
    assert ko.stat().st_size > 0
    warnings = build_warnings((out / "build.log").read_text())
    assert not warnings, f"{tree.release}: " + "\n".join(warnings)


# ---------------------------------------------------------------- no-VM unit tests


def test_gcc_major_comes_from_the_headers_dependencies() -> None:
    from ci.kernels import _gcc_major

    # As the three generations of Debian headers packages spell it.
    assert _gcc_major(("linux-headers-5.10.0-46-common", "linux-compiler-gcc-10-x86")) == 10
    assert _gcc_major(("linux-base", "linux-kbuild-6.12.118+deb13", "gcc-14")) == 14
    assert _gcc_major(("gcc-16-for-host", "linux-base-7.2.13+deb14-amd64")) == 16


def test_release_order_is_numeric() -> None:
    from ci.kernels import _release_key

    releases = ["5.10.0-9-amd64", "5.10.0-46-amd64", "5.10.0-10-amd64"]
    assert max(releases, key=_release_key) == "5.10.0-46-amd64"
    assert max(["6.12.9+deb13-amd64", "6.12.10+deb13-amd64"], key=_release_key).startswith(
        "6.12.10"
    )


def test_selectors_and_releases_resolve_without_guessing() -> None:
    from ci.kernels import resolve
    from driverkit.errors import UsageError

    assert resolve("6.1.0-56-amd64") == "6.1.0-56-amd64"  # a release passes through
    with pytest.raises(UsageError, match="neither a release nor a selector"):
        resolve("6.1;rm -rf /")


def test_filter_maps_decoded_syscalls_to_their_event_and_others_to_generic() -> None:
    from runtime.driver import _schema
    from runtime.driver._syscalls import SYSCALLS
    from runtime.driver.kmod import build_filter

    ids = {e["name"]: e["id"] for e in _schema.EVENTS}
    nr = SYSCALLS["x86_64"]
    table = build_filter(["openat", "exit_group", "getppid", "procexit"])
    assert len(table) == _schema.MAX_SYSCALLS
    assert table[nr["openat"]] == ids["openat"]
    assert table[nr["exit_group"]] == ids["exit"]
    assert table[nr["getppid"]] == ids["generic"]
    assert sum(1 for b in table if b) == 3  # procexit is no syscall


def test_filter_refuses_an_unknown_syscall_by_name() -> None:
    from runtime.driver.errors import DriverError
    from runtime.driver.kmod import build_filter

    with pytest.raises(DriverError, match="no_such_syscall"):
        build_filter(["openat", "no_such_syscall"])


def test_missing_device_is_one_clear_error(tmp_path: Path) -> None:
    from runtime.driver.kmod import KmodDevice, KmodError

    with pytest.raises(KmodError, match="load the rtcap module"):
        KmodDevice(tmp_path / "rtcap")
