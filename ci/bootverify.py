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
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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


# A kernel that panics this early never reboots (panic= is not parsed yet): QEMU would sit
# until the timeout.
_PANICS = (b"PANIC: early exception", b"Kernel panic - not syncing")
PANIC_GRACE_S = 10.0
BOOT_ATTEMPTS = 2


def _run_guest(cmd: list[str], log: IO[str], console: Path, timeout_s: int) -> int:
    """Run vng (and the QEMU it starts, in one process group) until it exits, the timeout
    passes, or the console shows a kernel panic; returns its exit code, -1 when killed."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    panicked_at: float | None = None
    while True:
        try:
            return proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if panicked_at is None and any(p in console.read_bytes()[-65536:] for p in _PANICS):
            panicked_at = now
        reason = (f"killed after {timeout_s}s" if now > deadline else
                  "killed: the kernel panicked" if panicked_at is not None
                  and now - panicked_at > PANIC_GRACE_S else "")  # fmt: skip
        if reason:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.write(f"\nbootverify: {reason}\n")
            return -1


def boot(image: KernelImage, guest_cmd: str, shared: Path, *,
         timeout_s: int = BOOT_TIMEOUT_S) -> BootResult:  # fmt: skip
    """Boot `image` with the host's userspace, run `guest_cmd`, return the guest's verdict.

    The guest command must write `shared/result.json`.
    """
    shared.mkdir(parents=True, exist_ok=True)
    verdict_path = shared / "result.json"
    console = shared / "console.log"
    # The guest marks that it got as far as our command. A TCG boot now and then dies
    # before that (QEMU gone during PCI probe, seen once in CI): nothing of ours had run,
    # so it is booted once more, and the first console is kept beside the second.
    reached = shared / "guest-reached-command"
    cmd = vng_command(image, f"touch {shlex.quote(str(reached))}; {guest_cmd}", shared)
    for attempt in range(1, BOOT_ATTEMPTS + 1):
        verdict_path.unlink(missing_ok=True)
        reached.unlink(missing_ok=True)
        with locked(cache_root() / ".qemu.lock"):
            started = time.monotonic()
            with console.open("w") as log:
                rc = _run_guest(cmd, log, console, timeout_s)
            wall = time.monotonic() - started
        if verdict_path.exists() or reached.exists() or attempt == BOOT_ATTEMPTS:
            break
        console.replace(shared / f"console-attempt{attempt}.log")
    verdict: dict[str, Any] | None = None
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
    timings = {"boot_and_test_s": round(wall, 1), "boot_attempts": attempt}
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


def _stage(built: BuiltDriver, folder: Path, foreign_ko: Path | None, with_probes: bool,
           force_load: bool = False) -> tuple[list[str], list[dict[str, Any]]]:  # fmt: skip
    """Copy one build's artifacts into `folder` (shared with the guest) and return the
    guest's kmod_check command for them, plus checks the host already failed (a probe the
    build did not produce: a failed check, not a reason to skip the module's proof)."""
    if built.kmod is None:
        raise BuildFailedError(f"{built.release}: the build output has no kernel module")
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / "rtcap.ko"
    shutil.copy2(built.kmod, staged)
    guest = [sys.executable, "-m", "tests.guest.kmod_check", "--ko", str(staged),
             "--out", str(folder / "result.json")]  # fmt: skip
    if built.kernel_version.startswith("#") and built.target == "debian":
        guest += ["--uname-v", built.kernel_version]
    if force_load:
        guest.append("--force-load")
    if foreign_ko is not None:
        foreign_staged = folder / "foreign-rtcap.ko"
        shutil.copy2(foreign_ko, foreign_staged)
        guest += ["--foreign-ko", str(foreign_staged)]
    host_checks: list[dict[str, Any]] = []
    if with_probes:
        for name, flag, obj in (("kernel", "--probe", built.probe),
                                ("core", "--core", built.core)):  # fmt: skip
            if obj is None:
                host_checks.append({"name": f"probe_{name}_built", "ok": False,
                                    "detail": f"the build output has no {name} probe"})  # fmt: skip
                continue
            target = folder / obj.name
            shutil.copy2(obj, target)
            guest += [flag, str(target)]
    return guest, host_checks


def _with_host_checks(result: BootResult, host_checks: list[dict[str, Any]]) -> BootResult:
    if result.verdict is not None and host_checks:
        result.verdict["checks"].extend(host_checks)
        result.verdict["ok"] = False
    return result


def verify_kmod(image: KernelImage, built: BuiltDriver, foreign_ko: Path | None, *,
                with_probes: bool = True, label: str = "") -> BootResult:
    """The whole driver proof on one kernel (see tests/guest/kmod_check.py) for what
    driverkit built: `foreign_ko` (a module built for another kernel) must be refused,
    the module must load and capture, and with `with_probes` the per-kernel and CO-RE
    eBPF probes load and capture in the same boot."""
    # Each proof gets its own folder: its console log stays apart.
    shared = cache_root() / "bootverify" / (image.release + (f"-{label}" if label else ""))
    guest, host_checks = _stage(built, shared, foreign_ko, with_probes)
    return _with_host_checks(boot(image, shlex.join(guest), shared), host_checks)


# Runs in the guest after the per-build checks: the boot's own verdict is that every one
# wrote a passing verdict (each build's checks stay in its folder).
_MERGE_VERDICTS = (
    "import json,sys,pathlib as p;d=p.Path(sys.argv[1]);"
    "v=[json.loads((d/n/'result.json').read_text()) if (d/n/'result.json').exists() else {}"
    " for n in sys.argv[2:]];"
    "(d/'result.json').write_text(json.dumps({'ok':all(x.get('ok') for x in v),'checks':[]}))"
)


def verify_kmods(image: KernelImage, builds: dict[str, BuiltDriver], *,
                 with_probes: bool = True, label: str = "",
                 force_load: Collection[str] = ()) -> dict[str, BootResult]:  # fmt: skip
    """The proof of `verify_kmod` for several builds made for ONE booted kernel (e.g. one
    per distro target whose headers came from it), in one boot: a TCG boot costs more
    than a module's checks. Each build's result comes back under its key; the builds
    named in `force_load` are loaded with `insmod -f` (a source build without CRCs)."""
    shared = cache_root() / "bootverify" / (image.release + (f"-{label}" if label else "-many"))
    shutil.rmtree(shared, ignore_errors=True)
    commands: list[str] = []
    host_checks: dict[str, list[dict[str, Any]]] = {}
    for name, built in builds.items():
        guest, host_checks[name] = _stage(built, shared / name, None, with_probes,
                                          name in force_load)  # fmt: skip
        commands.append(shlex.join(guest))
    merge = shlex.join([sys.executable, "-c", _MERGE_VERDICTS, str(shared), *builds])
    # virtme-ng hands the guest command over on the kernel command line, which holds 2 KiB
    # (a longer one panics the kernel at boot): the commands go in a script.
    script = shared / "run.sh"
    script.write_text("\n".join([*commands, merge]) + "\n")
    whole = boot(image, shlex.join(["/bin/sh", str(script)]), shared)
    results: dict[str, BootResult] = {}
    for name in builds:
        verdict_path = shared / name / "result.json"
        verdict = json.loads(verdict_path.read_text()) if verdict_path.is_file() else None
        timings = dict(whole.timings)
        if verdict:
            timings.update({k: round(float(v), 2) for k, v in verdict.get("timings", {}).items()})
        one = BootResult(image.release, whole.returncode, whole.wall_s, whole.console_log,
                         verdict, timings)  # fmt: skip
        results[name] = _with_host_checks(one, host_checks[name])
    return results


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
