"""The loader across a fleet of kernels: QEMU guests, each fetching its drivers from a
signed repository served on its own loopback.

For each kernel (default: ci.kernels.TEST_KERNELS, resolved to the newest on the mirror):
driverkit builds the module, per-kernel probe and CO-RE probe (ci.bootverify.driverkit_build;
unchanged inputs are a skip), ci/ writes them as a repository tree signed with a throwaway
Ed25519 key (drivercore.repoindex, as publishers sign) into a folder shared with the guest,
and virtme-ng boots the kernel to run tests/guest/fleet_check.py: an HTTP server on the
guest's 127.0.0.1 over that tree, `rt-engine driver install --type auto` (must pick core),
then rt-engine with each driver forced, reporting fetch and load times, events and drops.

CLI: ``python -m ci.fleet [KERNEL ...]`` prints one row per kernel and exits non-zero when
any guest check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci.bootverify import ARCH, BootResult, BuiltDriver, boot, driver_version, driverkit_build
from ci.kernels import TEST_KERNELS, cache_root, fetch, resolve
from drivercore.naming import ArtifactKind, repo_arch
from drivercore.repoindex import (
    ArchIndex,
    IndexEntry,
    RootIndex,
    generate_private_key,
    public_key_text,
    sign_index,
)
from driverkit.errors import BuildFailedError, DownloadError, UsageError

FLEET_TIMEOUT_S = 600
DRIVERS = ("core", "kmod", "probe")
GUEST_MARKER = "FLEET-CHECK"  # the guest script's first console line


@dataclass(frozen=True)
class FleetRow:
    kernel: str
    result: BootResult

    @property
    def verdict(self) -> dict[str, Any]:
        return self.result.verdict or {}

    def driver(self, kind: str) -> dict[str, Any]:
        drivers = self.verdict.get("drivers", {})
        return dict(drivers.get(kind, {})) if isinstance(drivers, dict) else {}

    @property
    def chosen(self) -> str:
        return str(self.verdict.get("auto", {}).get("chosen") or "-")

    def problems(self) -> list[str]:
        """What this row fails on; empty when auto chose core and every driver loaded,
        produced events and reported its drop counters."""
        if self.result.verdict is None:
            return [f"no guest verdict (see {self.result.console_log})"]
        found = [f"{c['name']}: {str(c.get('detail', ''))[:300]}"
                 for c in self.verdict.get("checks", []) if not c.get("ok")]
        if self.chosen != "core":
            found.append(f"auto chose {self.chosen}, not core")
        for kind in DRIVERS:
            got = self.driver(kind)
            if got.get("loaded") != kind:
                found.append(f"{kind}: not loaded")
            if not (got.get("events") or 0) > 0:
                found.append(f"{kind}: no events")
            if got.get("drops") is None:
                found.append(f"{kind}: no drop stats")
        return found


def _entry(path: Path, kind: ArtifactKind, target: str) -> IndexEntry:
    data = path.read_bytes()
    per_kernel = kind is not ArtifactKind.CORE
    release, version = _artifact_kernel(path.name) if per_kernel else ("", "")
    return IndexEntry(file=path.name, kind=kind, sha256=hashlib.sha256(data).hexdigest(),
                      size=len(data), target=target if per_kernel else "",
                      kernelrelease=release, kernelversion=version)


def _artifact_kernel(name: str) -> tuple[str, str]:
    """(release, version) of `rtcap_<target>_<release>_<version>.<ext>`."""
    stem = name.rsplit(".", 1)[0]
    _driver, _target, rest = stem.split("_", 2)
    release, _, version = rest.rpartition("_")
    return release, version


def write_signed_repo(root: Path, built: BuiltDriver, version: str) -> str:
    """`built`'s three artifacts as a repository tree signed with a fresh key; returns the
    public key line the loader pins."""
    key = generate_private_key()
    shutil.rmtree(root, ignore_errors=True)
    arch = repo_arch(ARCH)
    folder = root / version / arch  # on disk as named; URLs spell "+" as %2B
    folder.mkdir(parents=True)
    entries = []
    for kind, path in ((ArtifactKind.KMOD, built.kmod), (ArtifactKind.PROBE, built.probe),
                       (ArtifactKind.CORE, built.core)):
        if path is None:
            raise BuildFailedError(f"{built.release}: the build output has no {kind} artifact")
        shutil.copy2(path, folder / path.name)
        entries.append(_entry(folder / path.name, kind, built.target))
    index = ArchIndex(version, arch).with_entries(entries).to_bytes()
    (folder / "index.json").write_bytes(index)
    (folder / "index.json.sig").write_bytes(sign_index(index, key))
    root_index = RootIndex().with_arch(version, arch).to_bytes()
    (root / "index.json").write_bytes(root_index)
    (root / "index.json.sig").write_bytes(sign_index(root_index, key))
    return public_key_text(key.public_key())


# The Oops TCG guests occasionally die of while the kernel patches its own text.
TCG_INT3_OOPS = "Oops: int3"


def run_kernel(selector: str, *, cli: bool = False) -> FleetRow:
    """Build (or reuse), publish to a shared folder, boot, and read the guest's verdict."""
    release = resolve(selector)
    image = fetch(release)
    built = driverkit_build(release)
    version = driver_version()
    shared = cache_root() / "fleet" / release
    shared.mkdir(parents=True, exist_ok=True)
    public_key = write_signed_repo(shared / "repo", built, version)
    guest = [sys.executable, "-m", "tests.guest.fleet_check", "--repo-dir",
             str(shared / "repo"), "--public-key", public_key, "--driver-version", version,
             "--out", str(shared / "result.json"), *(["--cli"] if cli else [])]
    result = boot(image, shlex.join(guest), shared, timeout_s=FLEET_TIMEOUT_S)
    console = _text(result.console_log)
    if result.verdict is None and (GUEST_MARKER not in console or TCG_INT3_OOPS in console):
        # The kernel died before our script started (seen once on 7.x under TCG: an int3
        # Oops in its own crypto self-test, no module loaded), or died of the same int3
        # Oops while code was being patched (seen once on 6.12 as tracepoints were
        # enabled): a TCG fault, so one more boot; the first log is kept to look at.
        shutil.copy2(result.console_log, shared / "console-first-boot.log")
        print(f"{release}: the guest never ran the check (see "
              f"{shared / 'console-first-boot.log'}); booting once more", flush=True)
        result = boot(image, shlex.join(guest), shared, timeout_s=FLEET_TIMEOUT_S)
    return FleetRow(release, result)


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _ms(value: object) -> str:
    return "-" if value is None else str(value)


def table(rows: list[FleetRow]) -> str:
    """One row per kernel; per-driver columns read core/kmod/probe."""
    head = ("kernel", "chosen", "fetch ms c/k/p", "load ms c/k/p", "events c/k/p",
            "drops c/k/p", "boot s", "ok")
    lines = [head]
    for row in rows:
        per = {k: row.driver(k) for k in DRIVERS}

        def cols(field: str, per: dict[str, dict[str, Any]] = per) -> str:
            return "/".join(_ms(per[k].get(field)) for k in DRIVERS)

        lines.append((row.kernel, row.chosen, cols("fetch_ms"), cols("load_ms"),
                      cols("events"), cols("drops"), f"{row.result.wall_s:.0f}",
                      "PASS" if not row.problems() else "FAIL"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kernels", nargs="*", help="selectors or releases (default: "
                        + " ".join(TEST_KERNELS) + ")")
    parser.add_argument("--json", type=Path, help="also write every guest verdict here")
    parser.add_argument("--cli", action="store_true",
                        help="run the rt-engine commands in the guest (~4x the guest time)")
    args = parser.parse_args(argv)
    rows: list[FleetRow] = []
    status = 0
    for selector in args.kernels or TEST_KERNELS:
        started = time.monotonic()
        try:
            row = run_kernel(selector, cli=args.cli)
        except (BuildFailedError, DownloadError, UsageError) as exc:
            print(f"{selector}: FAILED {exc}", flush=True)
            status = 1
            continue
        rows.append(row)
        print(f"{row.kernel}: {'PASS' if not row.problems() else 'FAIL'} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
        for problem in row.problems():
            print(f"    {problem}", flush=True)
        status |= bool(row.problems())
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({r.kernel: r.verdict for r in rows}, indent=1) + "\n")
    return status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
