"""Boot real Debian kernels under QEMU/TCG and prove the rtcap driver inside them.

We use virtme-ng: it boots a kernel image with the host's own userspace shared over 9p,
so the guest runs our Python reader and the shared decoder unchanged; a busybox initramfs
would need a second, static reader. The guest writes its verdict as JSON into a directory
shared read-write (virtme's script channel does not work with Debian kernels, and
without --verbose the command's output is lost), and prints marker lines we keep in the
console log for diagnosis.

Booting is slow under TCG and the machine is shared, so boots are serialised by a lock
file under $DK_CACHE, and each boot records its wall time.

CLI: ``python -m ci.bootverify [KERNEL ...]`` builds rtcap.ko for each kernel (default:
ci.kernels.TEST_KERNELS), boots it, runs tests/guest/kmod_check.py, prints per-kernel
verdicts and timings, and exits non-zero if any kernel failed.

``python -m ci.bootverify --artifacts DIR [KERNEL ...]`` proves what the build service
made instead: the module and probes `driverkit build --output DIR` wrote (found through
their manifests, so a published `<version>/<arch>/` tree works too), for every Debian
kernel there or only the ones named.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci.kernels import (
    TEST_KERNELS,
    KernelTree,
    _locked,
    build_kmod,
    cache_root,
    fetch,
    resolve,
)
from driverkit.errors import BuildFailedError, DownloadError, UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
DRIVER_DIR = REPO_ROOT / "driver"
BOOT_TIMEOUT_S = 900


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


def _driver_digest(parts: tuple[str, ...] = ("kmod", "include")) -> str:
    """Content hash of driver sources: rebuild an artifact only when they change."""
    h = hashlib.sha256()
    for sub in parts:
        base = DRIVER_DIR / sub
        paths = sorted(base.rglob("*")) if base.is_dir() else [base]
        for path in paths:
            if path.is_file():
                h.update(str(path.relative_to(DRIVER_DIR)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


_PROBE_SOURCES = ("bpf", "include", "Makefile", "VERSION")


def module_for(tree: KernelTree) -> Path:
    """rtcap.ko for this kernel, built once per driver-source revision."""
    out = cache_root() / "kmod-builds" / tree.release / _driver_digest()
    ko = out / "rtcap.ko"
    with _locked(out.parent / ".build.lock"):
        if not ko.exists():
            build_kmod(tree, DRIVER_DIR, out)
    return ko


def _make_driver(target: str, out: Path, *extra: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"rtcap-{target}-") as tmp:
        proc = subprocess.run(
            ["make", "-C", str(DRIVER_DIR), target, f"OUT={tmp}", *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            raise BuildFailedError(f"make -C driver {target} failed: {tail}")
        built = [p for p in Path(tmp).glob("*.o")]
        if len(built) != 1:
            raise BuildFailedError(f"make -C driver {target} left {len(built)} objects")
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = out.with_suffix(".tmp")
        shutil.copy2(built[0], staged)
        os.replace(staged, out)


def probe_for(tree: KernelTree) -> Path:
    """The per-kernel eBPF probe (helper target `make -C driver probe`) for this kernel."""
    out = cache_root() / "probe-builds" / tree.release / _driver_digest(_PROBE_SOURCES)
    obj = out / "rtcap_probe.o"
    with _locked(out.parent / ".build.lock"):
        if not obj.exists():
            _make_driver("probe", obj, f"KERNELDIR={tree.headers}")
    return obj


def core_probe() -> Path:
    """The CO-RE probe (`make -C driver core`), built once per source revision."""
    out = cache_root() / "probe-builds" / "core" / _driver_digest(_PROBE_SOURCES)
    obj = out / "rtcap_core.o"
    with _locked(out.parent / ".build.lock"):
        if not obj.exists():
            _make_driver("core", obj)
    return obj


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


def vng_command(tree: KernelTree, guest_cmd: str, shared: Path, *, cpus: int = 2,
                memory: str = "1G") -> list[str]:  # fmt: skip
    vng = shutil.which("vng")
    if vng is None:
        raise UsageError("virtme-ng (vng) is not installed: pip install virtme-ng")
    shares = masked_shares([REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix)])
    return [
        vng, "--run", str(tree.vmlinuz), "--disable-kvm", "--verbose",
        "--cpus", str(cpus), "--memory", memory,
        "--rwdir", str(shared), *shares, "--cwd", str(REPO_ROOT),
        "--exec", guest_cmd,
    ]  # fmt: skip


def boot(tree: KernelTree, guest_cmd: str, shared: Path, *,
         timeout_s: int = BOOT_TIMEOUT_S) -> BootResult:  # fmt: skip
    """Boot `tree` with the host's userspace, run `guest_cmd`, return the guest's verdict.

    The guest command must write `shared/result.json`.
    """
    shared.mkdir(parents=True, exist_ok=True)
    verdict_path = shared / "result.json"
    verdict_path.unlink(missing_ok=True)
    console = shared / "console.log"
    cmd = vng_command(tree, guest_cmd, shared)
    with _locked(cache_root() / ".qemu.lock"):
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
    return BootResult(tree.release, rc, wall, console, verdict, timings)


@dataclass(frozen=True)
class BuiltDriver:
    """What `driverkit build` wrote for one kernel, as its manifests list it."""

    release: str
    target: str
    kmod: Path | None
    probe: Path | None
    core: Path | None  # the CO-RE probe of the same output tree


def built_drivers(root: Path) -> dict[str, BuiltDriver]:
    """Kernel release -> its artifacts, from the build manifests below `root`.

    Raises UsageError when there are none, or when two builds claim one release (two
    driver versions in one tree: name the version's folder instead)."""
    builds: list[tuple[Path, dict[str, Any], list[Path]]] = []
    for manifest in sorted(root.rglob("*.json")):
        try:
            data = json.loads(manifest.read_text())
            inputs = dict(data["inputs"])
            files = [manifest.parent / str(n) for n in data["artifacts"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a build manifest
        builds.append((manifest.parent, inputs, [f for f in files if f.is_file()]))
    cores = {folder: f for folder, inputs, files in builds if inputs.get("kind") == "core"
             for f in files if f.suffix == ".o"}  # fmt: skip
    kernels: dict[str, BuiltDriver] = {}
    for folder, inputs, files in builds:
        release = inputs.get("kernel_release")
        if inputs.get("kind") != "kernel" or not isinstance(release, str):
            continue
        if release in kernels:
            raise UsageError(f"{root}: two builds for kernel {release}; pass the folder of "
                             "one driver version (<version>/<arch>/)")
        by_suffix = {f.suffix: f for f in files}
        kernels[release] = BuiltDriver(release, str(inputs.get("target", "")),
                                       by_suffix.get(".ko"), by_suffix.get(".o"),
                                       cores.get(folder))  # fmt: skip
    if not kernels:
        raise UsageError(f"{root}: no driverkit build manifests found; run "
                         f"`driverkit build --output {root}` first")
    return kernels


def verify_kmod(tree: KernelTree, foreign: KernelTree | None, *,
                with_probes: bool = True, built: BuiltDriver | None = None) -> BootResult:
    """The whole driver proof on one kernel (see tests/guest/kmod_check.py): the module,
    and with `with_probes` the per-kernel and CO-RE eBPF probes in the same boot. With
    `built`, the build service's artifacts are proven instead of ones built here."""
    if built is not None and built.kmod is None:
        raise BuildFailedError(f"{tree.release}: the build output has no kernel module")
    ko = built.kmod if built is not None and built.kmod is not None else module_for(tree)
    # The build service's artifacts get their own folder: its console log stays apart.
    shared = cache_root() / "bootverify" / (tree.release + ("-built" if built else ""))
    shared.mkdir(parents=True, exist_ok=True)
    # The guest sees the host's filesystem read-only except `shared`: stage files there.
    staged = shared / "rtcap.ko"
    shutil.copy2(ko, staged)
    guest = [sys.executable, "-m", "tests.guest.kmod_check", "--ko", str(staged),
             "--out", str(shared / "result.json")]  # fmt: skip
    if foreign is not None:
        foreign_staged = shared / "foreign-rtcap.ko"
        shutil.copy2(module_for(foreign), foreign_staged)
        guest += ["--foreign-ko", str(foreign_staged)]
    # A probe that does not build is a failed probe check, not a reason to skip the
    # module's proof in this boot.
    host_checks: list[dict[str, Any]] = []
    if with_probes:
        builds: list[tuple[str, str, Callable[[], Path]]] = [
            ("kernel", "--probe", functools.partial(probe_for, tree)),
            ("core", "--core", core_probe),
        ]
        if built is not None:
            builds = [(label, flag, functools.partial(_built_probe, path, label))
                      for (label, flag, _), path in zip(builds, (built.probe, built.core),
                                                        strict=True)]  # fmt: skip
        for label, flag, build in builds:
            try:
                obj = build()
            except BuildFailedError as exc:
                host_checks.append({"name": f"probe_{label}_built", "ok": False,
                                    "detail": str(exc)})  # fmt: skip
                continue
            target = shared / obj.name
            shutil.copy2(obj, target)
            guest += [flag, str(target)]
    result = boot(tree, shlex.join(guest), shared)
    if result.verdict is not None and host_checks:
        result.verdict["checks"].extend(host_checks)
        result.verdict["ok"] = False
    return result


def _built_probe(path: Path | None, label: str) -> Path:
    if path is None:
        raise BuildFailedError(f"the build output has no {label} probe")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.bootverify", description=__doc__)
    parser.add_argument("kernels", nargs="*", help="selectors or releases")
    parser.add_argument("--artifacts", type=Path, metavar="DIR",
                        help="prove the artifacts `driverkit build --output DIR` wrote")
    args = parser.parse_args(argv)
    try:
        built: dict[str, BuiltDriver] = {}
        if args.artifacts is not None:
            built = built_drivers(args.artifacts)
            # Only Debian kernels boot here (their images are on the mirror we reach).
            releases = ([resolve(k) for k in args.kernels] if args.kernels else
                        sorted(r for r, b in built.items() if b.target == "debian"))
            missing = [r for r in releases if r not in built]
            if missing or not releases:
                raise UsageError(f"{args.artifacts}: no Debian kernel build for "
                                 f"{', '.join(missing) or 'any kernel'}; built: "
                                 f"{', '.join(sorted(built))}")
        else:
            releases = [resolve(k) for k in (args.kernels or TEST_KERNELS)]
        trees = [fetch(r) for r in releases]
    except (DownloadError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    status = 0
    for i, tree in enumerate(trees):
        foreign = trees[(i + 1) % len(trees)] if len(trees) > 1 else None
        try:
            result = verify_kmod(tree, foreign, built=built.get(tree.release))
        except BuildFailedError as exc:
            print(f"{tree.release}: BUILD FAILED {exc}")
            status = 1
            continue
        verdict = "PASS" if result.ok else "FAIL"
        print(f"{tree.release}: {verdict} {json.dumps(result.timings)}")
        for check in result.failed_checks():
            print(f"    {check['name']}: {check.get('detail', '')}")
        status |= not result.ok
    return status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
