"""The rtcap driver, as the build service builds it, proven on real Debian kernels
booted under QEMU/TCG.

Per kernel of ci.kernels.TEST_KERNELS (one each of 5.10, 6.1, 6.12 and the newest 7.x,
plus RT_BOOT_KERNELS for the module alone): `driverkit build` (its Docker processor and
builder images, through the CLI) builds rtcap.ko and the per-kernel and CO-RE eBPF probes
for that kernel's exact `uname -v`, warning-free by the build's manifest; then virtme-ng
boots the kernel and inside it (tests/guest/kmod_check.py): it is the kernel built for, a
module built for another kernel is refused with the error surfacing, ours loads, a
filtered capture of a known workload (exec, open, loopback connect) reads back exactly
those events with the right pids and args, execs from a memfd, through a symlink, of an
unlinked file and in a chroot carry the exe path d_path() prints (proc.exepath
"/memfd:<name> (deleted)" for the memfd), stats account for every event, rmmod
succeeds and dmesg holds no oops/BUG/WARNING/trace.

The per-kernel and CO-RE eBPF probes are loaded in the same guests and checked with the
same workload (test_probe_on_real_kernel). Also builds the module warning-free for the
cloud/rt flavors and the other 6.12 line (ci.kernels.COMPILE_ONLY_KERNELS).

Kernel images and driverkit's builds are cached in the shared cache (ci.kernels.cache_root),
and driverkit skips unchanged kernels, so reruns only boot.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ci.bootverify import BootResult, BuiltDriver
from ci.kernels import COMPILE_ONLY_KERNELS, RT_BOOT_KERNELS, TEST_KERNELS
from tests.conftest import require

# Boot/compile tests. One boot per kernel is shared by several tests of one worker,
# so they stay in one xdist group.
QEMU = [pytest.mark.qemu, pytest.mark.docker, pytest.mark.root, pytest.mark.network,
        pytest.mark.slow, pytest.mark.xdist_group("qemu-kernels")]  # fmt: skip


def qemu_test(fn: Callable[..., None]) -> Callable[..., None]:
    for mark in QEMU:
        fn = mark(fn)
    return fn


# Which kernel's module each test kernel must refuse: any other kernel works; these
# pairs reuse modules the other tests build anyway.
FOREIGN = {"5.10": "6.1", "6.1": "7", "6.12": "5.10", "7": "6.12", "6.1-rt": "6.1"}
BOOTED = (*TEST_KERNELS, *RT_BOOT_KERNELS)


def _prerequisites() -> None:
    require(os.geteuid() == 0, "needs root (docker builds, guest module loading)")
    for tool in ("vng", "driverkit", "docker", "dpkg-deb", "qemu-system-x86_64"):
        require(shutil.which(tool) is not None, f"needs {tool} (see ci/setup.sh)")


MODULE_CHECKS = ("uname_v_is_the_built_one", "foreign_module_refused", "insmod",
                 "start_refused_before_handshake", "handshake", "event_execve",
                 "event_exepath", "event_openat", "event_connect", "event_udp",
                 "event_common_fields",
                 "stats_account_for_events", "event_clone", "event_exit_at_enter",
                 "event_procexit", "event_mkdir", "event_rmdir", "drops_counted_not_silent",
                 "complete_mark_waits_for_an_emptying_read",
                 "rmmod", "device_gone", "dmesg_clean")  # fmt: skip
PROBE_CHECKS = ("loaded", "event_execve", "event_exepath", "event_openat", "event_connect",
                "event_udp", "stats_account_for_events")  # fmt: skip

# One build and one boot per kernel serve the module and the probe tests (a TCG boot is
# slow; a build that driverkit skips still costs a docker ping and manifest hashing).
_builds: dict[str, BuiltDriver] = {}
_boots: dict[str, BootResult] = {}


def _built(selector: str) -> BuiltDriver:
    from ci.bootverify import driverkit_build
    from ci.kernels import fetch, resolve

    if selector not in _builds:
        _prerequisites()
        release = resolve(selector)
        if selector in BOOTED:
            fetch(release)  # the image's own `uname -v` is what the build is told
        _builds[selector] = driverkit_build(release)
    return _builds[selector]


def _boot(selector: str) -> BootResult:
    from ci.bootverify import verify_kmod
    from ci.kernels import fetch, resolve

    if selector not in _boots:
        _prerequisites()
        image = fetch(resolve(selector))
        built, foreign = _built(selector), _built(FOREIGN[selector])
        assert foreign.kmod is not None, f"{foreign.release}: no module was built"
        _boots[selector] = verify_kmod(image, built, foreign.kmod,
                                       with_probes=selector in TEST_KERNELS)  # fmt: skip
        print(f"{image.release}: timings {_boots[selector].timings}")
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


def _assert_module_built(built: BuiltDriver) -> None:
    """driverkit published a module for the kernel, in the repo layout
    <driver-version>/<arch>/, and its compilers (that suite's gcc and clang) warned of
    nothing, by the build's manifest."""
    from ci.bootverify import builds_dir

    assert built.kmod is not None and built.kmod.stat().st_size > 0, built
    assert built.kmod.parent.relative_to(builds_dir()).parts[1:] == ("amd64",)
    assert not built.warnings, f"{built.release}: built with warnings:\n" + "\n".join(
        built.warnings)


@qemu_test
@pytest.mark.parametrize("selector", BOOTED)
def test_module_on_real_kernel(selector: str) -> None:
    result = _boot(selector)
    _assert_module_built(_built(selector))
    _assert_checks(result, MODULE_CHECKS, prefix="")


@qemu_test
@pytest.mark.parametrize("label", ["kernel", "core"])
@pytest.mark.parametrize("selector", TEST_KERNELS)
def test_probe_on_real_kernel(selector: str, label: str) -> None:
    """The per-kernel probe and the CO-RE probe, loaded in the same guest."""
    result = _boot(selector)
    built = _built(selector)
    assert (built.probe if label == "kernel" else built.core) is not None, built
    if label == "core":
        assert not built.core_warnings, "\n".join(built.core_warnings)
    _assert_checks(result, PROBE_CHECKS, prefix=f"probe_{label}_")


@qemu_test
@pytest.mark.parametrize("selector", COMPILE_ONLY_KERNELS)
def test_module_compiles_warning_free(selector: str) -> None:
    _assert_module_built(_built(selector))


def test_built_drivers_come_from_the_manifests(tmp_path: Path) -> None:
    """The artifacts mode finds a build by its manifest, pairs the CO-RE probe of the same
    folder, takes the compiler warnings from the manifests, and refuses an empty tree or
    two builds of one kernel with the fix."""

    from ci.bootverify import built_drivers
    from driverkit.errors import UsageError

    with pytest.raises(UsageError, match="driverkit build --output"):
        built_drivers(tmp_path)
    folder = tmp_path / "0.1.0" / "amd64"
    folder.mkdir(parents=True)
    stem = "rtcap_debian_6.1.192-3-amd64_1"
    for name in (f"{stem}.ko", f"{stem}.o", "rtcap_core.o"):
        (folder / name).write_bytes(b"x")
    uname_v = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"
    kernel = {"inputs": {"kind": "kernel", "kernel_release": "6.1.0-57-amd64",
                         "kernel_version": uname_v, "target": "debian"},
              "warnings": ["rtcap.c:1:2: warning: unused variable 'x'"],
              "artifacts": {f"{stem}.ko": {}, f"{stem}.o": {}}}  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(kernel))
    (folder / "rtcap_core.json").write_text(json.dumps(
        {"inputs": {"kind": "core"}, "warnings": [], "artifacts": {"rtcap_core.o": {}}}))
    (folder / "notes.json").write_text("[1, 2]")  # not a manifest: ignored
    built = built_drivers(tmp_path)["6.1.0-57-amd64"]
    assert (built.kmod, built.probe, built.core, built.target) == (
        folder / f"{stem}.ko", folder / f"{stem}.o", folder / "rtcap_core.o", "debian")
    assert built.kernel_version == uname_v
    assert built.warnings == ("rtcap.c:1:2: warning: unused variable 'x'",)
    assert built.core_warnings == ()
    other = tmp_path / "0.2.0" / "amd64"
    other.mkdir(parents=True)
    (other / f"{stem}.json").write_text(json.dumps(kernel))
    with pytest.raises(UsageError, match=r"two builds for kernel 6\.1\.0-57-amd64"):
        built_drivers(tmp_path)


# ---------------------------------------------------------------- no-VM unit tests


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

    assert resolve("6.1.0-57-amd64") == "6.1.0-57-amd64"  # a release passes through
    with pytest.raises(UsageError, match="neither a release nor a selector"):
        resolve("6.1;rm -rf /")


def test_uname_v_is_read_from_the_kernel_image(tmp_path: Path) -> None:
    """The build is told the `uname -v` the image itself carries (bzImage setup header)."""
    import struct

    from ci.kernels import uname_v_of
    from driverkit.errors import DownloadError

    banner = (b"7.2.13+deb14-amd64 (debian-kernel@lists.debian.org) "
              b"#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)\0")  # fmt: skip
    head = bytearray(0x4000)
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x20E, 0x3000 - 0x200)
    head[0x3000 : 0x3000 + len(banner)] = banner
    image = tmp_path / "vmlinuz"
    image.write_bytes(bytes(head))
    assert uname_v_of(image) == "#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)"
    image.write_bytes(b"\x7fELF" + bytes(0x4000))
    with pytest.raises(DownloadError, match="not an x86 bzImage"):
        uname_v_of(image)


def test_a_7x_image_is_its_binary_and_modules_packages() -> None:
    """Since 7.x linux-image-<rel> is a metapackage: the boot needs the exact
    linux-binary and linux-modules uploads it names, not linux-base."""
    from typing import cast

    from ci.kernels import image_packages
    from driverkit.debarchive import DebianArchive, DebPackage

    rel = "7.2.13+deb14-amd64"

    def pkg(name: str, version: str, depends: tuple[str, ...] = ()) -> DebPackage:
        return DebPackage(name, version, "amd64", f"pool/main/l/{name}_{version}.deb", 1,
                          "0" * 64, depends, "http://mirror.invalid/debian", "sid")  # fmt: skip

    image = pkg(f"linux-image-{rel}", "7.2.13-1",
                (f"linux-base-{rel} (= 7.2.13-1)", f"linux-binary-{rel} (= 7.2.13-1)",
                 f"linux-modules-{rel} (= 7.2.13-1)"))  # fmt: skip
    index = {p.name: [p] for p in (image, pkg(f"linux-base-{rel}", "7.2.13-1"))}
    for name in (f"linux-binary-{rel}", f"linux-modules-{rel}"):
        index[name] = [pkg(name, "7.2.13-1"), pkg(name, "7.2.14-1")]

    class Archive:
        suites = (("sid", "http://mirror.invalid/debian"),)

        def packages(self, suite: str) -> dict[str, list[DebPackage]]:
            return index

        def find_image(self, release: str) -> DebPackage | None:
            return image if release == rel else None

    chosen = image_packages(rel, cast(DebianArchive, Archive()))
    assert [(p.name, p.version) for p in chosen] == [
        (f"linux-image-{rel}", "7.2.13-1"),
        (f"linux-binary-{rel}", "7.2.13-1"),
        (f"linux-modules-{rel}", "7.2.13-1"),
    ]


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
