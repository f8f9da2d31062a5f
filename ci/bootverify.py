"""Boot real Debian kernels under QEMU/TCG and prove the rtcap driver inside them.

The driver is built by the build service itself, through its stable interface: the
`driverkit build` command (Docker processor, the builder images ci/setup.sh makes), for
the exact kernel booted (`--kernel-version` is the `uname -v` read from the kernel
image). Builds land in ``<cache>/ci-builds`` (the cache driverkit and ci.kernels share),
and driverkit skips a kernel whose inputs (driver sources, script, builder) are
unchanged, so a rerun only boots. The build's manifest says which compiler warnings it
saw; ci/ does not parse logs.

We use virtme-ng: it boots a kernel image with the host's own userspace shared over 9p,
so the guest runs our Python reader and the shared decoder unchanged; a busybox initramfs
would need a second, static reader. The guest writes its verdict as JSON into a directory
shared read-write (virtme's script channel does not work with Debian kernels, and
without --verbose the command's output is lost), and prints marker lines we keep in the
console log for diagnosis.

Booting is slow under TCG and the machine is shared, so boots are serialised by a lock
file under the cache, and each boot records its wall time.

CLI: ``python -m ci.bootverify [KERNEL ...]`` has driverkit build the module and probes
for each kernel (default: ci.kernels.TEST_KERNELS), boots it, runs
tests/guest/kmod_check.py, prints per-kernel verdicts and timings, and exits non-zero if
any kernel failed or built with warnings.

``python -m ci.bootverify --artifacts DIR [KERNEL ...]`` proves what an earlier
`driverkit build --output DIR` wrote instead (found through the manifests, so a
published `<version>/<arch>/` tree works too), for every Debian kernel there or only the
ones named; it is what `driverkit matrix run --verify-command` runs. Either way each
artifact that passed is listed, with its kernel, in `bootverify.json` beside the
manifests, which the publisher reads.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci.kernels import TEST_KERNELS, KernelImage, cache_root, fetch, kernel_version, locked, resolve
from driverkit.errors import BuildFailedError, DownloadError, UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
DRIVER_DIR = REPO_ROOT / "driver"
BOOT_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1800
ARCH = "amd64"


@dataclass(frozen=True)
class BootResult:
    release: str
    returncode: int
    wall_s: float
    console_log: Path
    verdict: dict[str, Any] | None  # the guest's JSON, None if it never wrote one
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict is not None and bool(self.verdict.get("ok"))

    def failed_checks(self) -> list[dict[str, Any]]:
        if self.verdict is None:
            return [{"name": "guest_verdict", "ok": False,
                     "detail": f"no verdict; see {self.console_log}"}]  # fmt: skip
        return [c for c in self.verdict.get("checks", []) if not c.get("ok")]


@dataclass(frozen=True)
class BuiltDriver:
    """What `driverkit build` wrote for one kernel, as its manifests list it."""

    release: str
    target: str
    kmod: Path | None
    probe: Path | None
    core: Path | None  # the CO-RE probe of the same output tree
    kernel_version: str = ""  # as the build was told (a build number or `uname -v`)
    warnings: tuple[str, ...] = ()  # compiler warnings of the kernel build (module + probe)
    core_warnings: tuple[str, ...] = ()  # ... and of the CO-RE probe's build


def driver_version() -> str:
    """The driver version driverkit builds by default (driver/VERSION)."""
    version_file = DRIVER_DIR / "VERSION"
    return version_file.read_text().strip() if version_file.is_file() else "0.0.0-dev"


def builds_dir() -> Path:
    """Where the boot tests' driverkit builds live, reused across runs."""
    return cache_root() / "ci-builds"


def driverkit_build(release: str, *, output: Path | None = None,
                    uname_v: str | None = None) -> BuiltDriver:  # fmt: skip
    """`driverkit build` for one Debian kernel (module, per-kernel probe, CO-RE probe) with
    the Docker processor; returns what its manifests list. Unchanged inputs are a skip
    inside driverkit, so calling this again is cheap. Raises BuildFailedError."""
    exe = shutil.which("driverkit")
    if exe is None:
        raise UsageError("the driverkit command is not installed: pip install -e .")
    out = output or builds_dir()
    version = driver_version()
    cmd = [exe, "build", "--kernel", release,
           "--kernel-version", uname_v or kernel_version(release),
           "--target", "debian", "--base-from", "debootstrap", "--processor", "docker",
           "--driver-version", version, "--cache-dir", str(cache_root()),
           "--output", str(out)]  # fmt: skip
    log_path = out / ".logs" / f"{release}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with locked(out / ".logs" / ".build.lock"):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise BuildFailedError(f"driverkit build {release}: no result after "
                                   f"{BUILD_TIMEOUT_S}s") from exc  # fmt: skip
    log_path.write_text(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BuildFailedError(f"driverkit build {release} failed ({proc.returncode}): "
                               f"{tail} (log: {log_path})")  # fmt: skip
    built = built_drivers(out / version / ARCH).get(release)
    if built is None:
        raise BuildFailedError(f"driverkit build {release} succeeded but no manifest under "
                               f"{out / version / ARCH} names it (log: {log_path})")  # fmt: skip
    return built


# virtme-ng's guest mounts fresh tmpfs over these, hiding the host's files there.
GUEST_MASKED_DIRS = (
    Path("/tmp"), Path("/var/tmp"), Path("/var/log"), Path("/run"), Path("/dev/shm"),
    Path("/var/spool"), Path("/var/lib/portables"), Path("/var/lib/machines"),
)


def masked_shares(paths: list[Path]) -> list[str]:
    """`--rodir` shares for host paths the guest would otherwise not see.

    CI clones the repo into a folder we do not choose, and a virtualenv may live in
    /var/tmp; the guest must still run this repo's code with this interpreter.
    """
    args: list[str] = []
    for path in dict.fromkeys(p.resolve() for p in paths):
        if any(path == d or d in path.parents for d in GUEST_MASKED_DIRS):
            args += ["--rodir", f"{path}={path}"]
    return args


def vng_command(image: KernelImage, guest_cmd: str, shared: Path, *, cpus: int = 2,
                memory: str = "1G") -> list[str]:  # fmt: skip
    vng = shutil.which("vng")
    if vng is None:
        raise UsageError("virtme-ng (vng) is not installed: pip install virtme-ng")
    shares = masked_shares([REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix)])
    return [
        vng, "--run", str(image.vmlinuz), "--disable-kvm", "--verbose",
        "--cpus", str(cpus), "--memory", memory,
        "--rwdir", str(shared), *shares, "--cwd", str(REPO_ROOT),
        "--exec", guest_cmd,
    ]  # fmt: skip


def boot(image: KernelImage, guest_cmd: str, shared: Path, *,
         timeout_s: int = BOOT_TIMEOUT_S) -> BootResult:  # fmt: skip
    """Boot `image` with the host's userspace, run `guest_cmd`, return the guest's verdict.

    The guest command must write `shared/result.json`.
    """
    shared.mkdir(parents=True, exist_ok=True)
    verdict_path = shared / "result.json"
    verdict_path.unlink(missing_ok=True)
    console = shared / "console.log"
    cmd = vng_command(image, guest_cmd, shared)
    with locked(cache_root() / ".qemu.lock"):
        started = time.monotonic()
        with console.open("w") as log:
            try:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=timeout_s, check=False, cwd=REPO_ROOT)  # fmt: skip
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = -1
                log.write(f"\nbootverify: killed after {timeout_s}s\n")
        wall = time.monotonic() - started
    verdict: dict[str, Any] | None = None
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
    timings = {"boot_and_test_s": round(wall, 1)}
    if verdict:
        timings.update({k: round(float(v), 2) for k, v in verdict.get("timings", {}).items()})
    return BootResult(image.release, rc, wall, console, verdict, timings)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def built_drivers(root: Path) -> dict[str, BuiltDriver]:
    """Kernel release -> its artifacts, from the build manifests below `root`.

    Raises UsageError when there are none, or when two builds claim one release (two
    driver versions in one tree: name the version's folder instead)."""
    builds: list[tuple[Path, dict[str, Any], list[Path], tuple[str, ...]]] = []
    for manifest in sorted(root.rglob("*.json")):
        try:
            data = json.loads(manifest.read_text())
            inputs = dict(data["inputs"])
            files = [manifest.parent / str(n) for n in data["artifacts"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a build manifest
        warnings = _strings(data.get("warnings"))
        builds.append((manifest.parent, inputs, [f for f in files if f.is_file()], warnings))
    cores = {folder: (f, warnings) for folder, inputs, files, warnings in builds
             if inputs.get("kind") == "core" for f in files if f.suffix == ".o"}  # fmt: skip
    kernels: dict[str, BuiltDriver] = {}
    for folder, inputs, files, warnings in builds:
        release = inputs.get("kernel_release")
        if inputs.get("kind") != "kernel" or not isinstance(release, str):
            continue
        if release in kernels:
            raise UsageError(f"{root}: two builds for kernel {release}; pass the folder of "
                             "one driver version (<version>/<arch>/)")
        by_suffix = {f.suffix: f for f in files}
        core, core_warnings = cores.get(folder, (None, ()))
        kernels[release] = BuiltDriver(release, str(inputs.get("target", "")),
                                       by_suffix.get(".ko"), by_suffix.get(".o"), core,
                                       str(inputs.get("kernel_version", "")),
                                       warnings, core_warnings)  # fmt: skip
    if not kernels:
        raise UsageError(f"{root}: no driverkit build manifests found; run "
                         f"`driverkit build --output {root}` first")
    return kernels


def verify_kmod(image: KernelImage, built: BuiltDriver, foreign_ko: Path | None, *,
                with_probes: bool = True, label: str = "") -> BootResult:
    """The whole driver proof on one kernel (see tests/guest/kmod_check.py) for what
    driverkit built: `foreign_ko` (a module built for another kernel) must be refused,
    the module must load and capture, and with `with_probes` the per-kernel and CO-RE
    eBPF probes load and capture in the same boot."""
    if built.kmod is None:
        raise BuildFailedError(f"{image.release}: the build output has no kernel module")
    # Each proof gets its own folder: its console log stays apart.
    shared = cache_root() / "bootverify" / (image.release + (f"-{label}" if label else ""))
    shared.mkdir(parents=True, exist_ok=True)
    # The guest sees the host's filesystem read-only except `shared`: stage files there.
    staged = shared / "rtcap.ko"
    shutil.copy2(built.kmod, staged)
    guest = [sys.executable, "-m", "tests.guest.kmod_check", "--ko", str(staged),
             "--out", str(shared / "result.json")]  # fmt: skip
    if built.kernel_version.startswith("#"):
        guest += ["--uname-v", built.kernel_version]
    if foreign_ko is not None:
        foreign_staged = shared / "foreign-rtcap.ko"
        shutil.copy2(foreign_ko, foreign_staged)
        guest += ["--foreign-ko", str(foreign_staged)]
    # A missing probe is a failed probe check, not a reason to skip the module's proof
    # in this boot.
    host_checks: list[dict[str, Any]] = []
    if with_probes:
        for name, flag, obj in (("kernel", "--probe", built.probe),
                                ("core", "--core", built.core)):  # fmt: skip
            if obj is None:
                host_checks.append({"name": f"probe_{name}_built", "ok": False,
                                    "detail": f"the build output has no {name} probe"})  # fmt: skip
                continue
            target = shared / obj.name
            shutil.copy2(obj, target)
            guest += [flag, str(target)]
    result = boot(image, shlex.join(guest), shared)
    if result.verdict is not None and host_checks:
        result.verdict["checks"].extend(host_checks)
        result.verdict["ok"] = False
    return result


# Beside the manifests, for the publisher (driverkit.publish.publisher.BOOT_RESULTS_FILE):
# {artifact file name: [kernel releases it was proven on]}.
BOOT_RESULTS_FILE = "bootverify.json"


def record_boot(built: BuiltDriver, result: BootResult) -> None:
    """Note in the build folder which kernel each artifact passed on (only what the
    guest proved: the module, and the probes it loaded)."""
    if not result.ok:
        return
    proven = [built.kmod]
    if any(c["name"].startswith("probe_") for c in (result.verdict or {}).get("checks", [])):
        proven += [built.probe, built.core]
    for path in (p for p in proven if p is not None):
        results = path.parent / BOOT_RESULTS_FILE
        with locked(path.parent / f".{BOOT_RESULTS_FILE}.lock"):
            try:
                data = json.loads(results.read_text()) if results.is_file() else {}
            except ValueError:
                data = {}
            releases = set(data.get(path.name, [])) | {result.release}
            data[path.name] = sorted(releases)
            tmp = results.with_name(f".{results.name}.tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, results)


def sample_per_suite(releases: list[str]) -> list[str]:
    """The newest release of each Debian suite: a matrix run boots a sample, not all."""
    from drivercore.kernelrelease import parse_kernel_release
    from driverkit.targets.debian import debian_release_for

    newest: dict[str, tuple[tuple[int, ...], str]] = {}
    for release in releases:
        kr = parse_kernel_release(release)
        suite = debian_release_for(kr).codename
        key = (kr.version, kr.patch_level, kr.sublevel, *map(int, _numbers(release)))
        if suite not in newest or key > newest[suite][0]:
            newest[suite] = (key, release)
    return sorted(release for _, release in newest.values())


def _numbers(release: str) -> list[str]:
    return [part for part in release.replace("+", "-").replace(".", "-").split("-")
            if part.isdigit()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.bootverify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kernels", nargs="*", help="selectors or releases")
    parser.add_argument("--artifacts", type=Path, metavar="DIR",
                        help="prove the artifacts `driverkit build --output DIR` wrote")
    parser.add_argument("--sample", action="store_true",
                        help="with --artifacts: boot one kernel per Debian suite, the newest")
    args = parser.parse_args(argv)
    try:
        given: dict[str, BuiltDriver] = {}
        if args.artifacts is not None:
            given = built_drivers(args.artifacts)
            # Only Debian kernels boot here (their images are on the mirror we reach).
            releases = ([resolve(k) for k in args.kernels] if args.kernels else
                        sorted(r for r, b in given.items() if b.target == "debian"))
            if args.sample:
                releases = sample_per_suite(releases)
            missing = [r for r in releases if r not in given]
            if missing or not releases:
                raise UsageError(f"{args.artifacts}: no Debian kernel build for "
                                 f"{', '.join(missing) or 'any kernel'}; built: "
                                 f"{', '.join(sorted(given))}")
        else:
            releases = [resolve(k) for k in (args.kernels or TEST_KERNELS)]
        images = [fetch(r) for r in releases]
    except (DownloadError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    builds: dict[str, BuiltDriver] = dict(given)

    def built_for(release: str) -> BuiltDriver:
        if release not in builds:
            started = time.monotonic()
            builds[release] = driverkit_build(release)
            print(f"{release}: driverkit build {time.monotonic() - started:.1f}s", flush=True)
        return builds[release]

    status = 0
    for i, image in enumerate(images):
        foreign = images[(i + 1) % len(images)] if len(images) > 1 else None
        try:
            built = built_for(image.release)
            foreign_ko = built_for(foreign.release).kmod if foreign is not None else None
            result = verify_kmod(image, built, foreign_ko,
                                 label="artifacts" if given else "")  # fmt: skip
        except (BuildFailedError, UsageError) as exc:
            print(f"{image.release}: BUILD FAILED {exc}")
            status = 1
            continue
        record_boot(built, result)
        warnings = built.warnings + built.core_warnings
        verdict = "PASS" if result.ok and not warnings else "FAIL"
        print(f"{image.release}: {verdict} {json.dumps(result.timings)}")
        for check in result.failed_checks():
            print(f"    {check['name']}: {check.get('detail', '')}")
        for line in warnings:
            print(f"    build warning: {line}")
        status |= verdict != "PASS"
    return status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
