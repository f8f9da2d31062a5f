"""`--allow-build`: when no repository has a driver for this kernel, build one here with the
build side's local processor, run as a separate program.

The runtime never imports driverkit (tests/test_core_shape.py): the host side installs
without the build side, so `driverkit` is looked up on PATH and run as a subprocess, and its
output is read from the files it writes (`<out>/<driver-version>/<arch>/`: the artifact and
a JSON manifest with its size and sha256). Each missing prerequisite is one line saying what
to install, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from drivercore.naming import ArtifactKind
from drivercore.repoindex import IndexEntry
from runtime.driver.errors import DriverError
from runtime.loader.choose import Candidate
from runtime.loader.config import LoaderConfig
from runtime.loader.fetch import Fetched, Log

BUILD_TIMEOUT_S = 1800
# driverkit prints with rich, which wraps at COLUMNS (80 off a terminal): wide enough that
# its `<artifact>: <error>` line stays one line the loader can find.
_OUTPUT_COLUMNS = "10000"
_REASON_MAX = 400
# What a local build can make for one host: the per-kernel drivers. The CO-RE probe is one
# file per driver version, published once, never built per host.
_BUILDABLE = (ArtifactKind.KMOD, ArtifactKind.PROBE)


class BuildFallbackError(DriverError):
    """--allow-build could not run (no driverkit, no headers) or its build failed."""


def headers_dir(cfg: LoaderConfig, kernel_release: str) -> Path:
    return cfg.host_root / "lib" / "modules" / kernel_release / "build"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _failure_reason(output: str, stem: str, returncode: int) -> str:
    """driverkit's reason for `stem`: its `<stem>: <error>` line, and when that says a build
    script failed, the first compiler line under it; else its last line."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    at = next((i for i, line in enumerate(lines) if line.startswith(f"{stem}: ")), None)
    if at is None:
        return lines[-1] if lines else f"exit status {returncode}"
    reason = lines[at]
    if reason.endswith(":"):  # `build of X failed (exit N):`, then indented log lines
        detail = next((line.strip() for line in lines[at + 1:] if line.startswith("  ")), None)
        reason = f"{reason} {detail}" if detail else reason.removesuffix(":")
    return reason if len(reason) <= _REASON_MAX else reason[:_REASON_MAX - 3] + "..."


def _built_entry(out: Path, driver_version: str, file: str) -> tuple[Path, IndexEntry]:
    """The artifact driverkit wrote and the manifest entry it is checked against."""
    for manifest in sorted((out / driver_version).glob("*/*.json")):
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8")).get("artifacts", {})
        except (OSError, ValueError, AttributeError):
            continue
        meta = listed.get(file) if isinstance(listed, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("sha256"), str):
            artifact = manifest.parent / file
            kind = ArtifactKind.KMOD if file.endswith(".ko") else ArtifactKind.PROBE
            return artifact, IndexEntry(file=file, kind=kind, sha256=meta["sha256"],
                                        size=int(meta.get("size", -1)))
    raise BuildFallbackError(
        f"--allow-build: driverkit finished but no manifest under {out / driver_version} "
        f"lists {file}"
    )


def checked_build(out: Path, driver_version: str, file: str) -> tuple[Path, IndexEntry]:
    """The artifact driverkit wrote under `out`, checked against its manifest's size and
    sha256, and that manifest entry."""
    artifact, entry = _built_entry(out, driver_version, file)
    if not artifact.is_file() or artifact.stat().st_size != entry.size \
            or _sha256(artifact) != entry.sha256:
        raise BuildFallbackError(
            f"--allow-build: {artifact} does not match the sha256 and size in its manifest; "
            "nothing loaded"
        )
    return artifact, entry


def build_locally(cfg: LoaderConfig, candidates: tuple[Candidate, ...], *, kernel_release: str,
                  kernel_version: str, target: str, driver_version: str,
                  log: Log) -> tuple[Candidate, Fetched]:
    """Build the first per-kernel candidate with `driverkit build --processor local`, then
    check the artifact against the manifest driverkit wrote beside it."""
    candidate = next((c for c in candidates if c.kind in _BUILDABLE), None)
    if candidate is None:
        raise BuildFallbackError(
            "--allow-build: only the CO-RE probe fits this host; it is published once per "
            "driver version, not built per host"
        )
    driverkit = shutil.which("driverkit")
    if driverkit is None:
        raise BuildFallbackError(
            "--allow-build: driverkit is not installed (pip install '.[build]' on this host); "
            "nothing built"
        )
    headers = headers_dir(cfg, kernel_release)
    if not headers.is_dir():
        raise BuildFallbackError(
            f"--allow-build: no kernel headers at {headers}; install the headers package for "
            f"{kernel_release} on the host; nothing built"
        )
    out = cfg.state_dir / "build"
    kmod = candidate.kind is ArtifactKind.KMOD
    cmd = [driverkit, "build", "--processor", "local", "--kernel", kernel_release,
           "--kernel-version", kernel_version, "--target", target,
           "--driver-version", driver_version, "--output", str(out),
           "--kmod" if kmod else "--no-kmod", "--no-probe" if kmod else "--probe"]
    log(f"loader: build: no repository has a driver for {kernel_release}; building "
        f"{candidate.kind} {candidate.file} with driverkit (--allow-build)")
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                              check=False, env={**os.environ, "COLUMNS": _OUTPUT_COLUMNS})
    except subprocess.TimeoutExpired:
        raise BuildFallbackError(
            f"--allow-build: driverkit build ran over {BUILD_TIMEOUT_S} s and was stopped"
        ) from None
    except OSError as exc:
        raise BuildFallbackError(f"--allow-build: cannot run {driverkit}: {exc.strerror}") from None
    if done.returncode != 0:
        stem = Path(candidate.file).stem
        reason = _failure_reason(done.stdout + "\n" + done.stderr, stem, done.returncode)
        raise BuildFallbackError(f"--allow-build: driverkit build failed: {reason}")
    artifact, entry = checked_build(out, driver_version, candidate.file)
    log(f"loader: build: {artifact}, sha256 {entry.sha256[:16]}... matches driverkit's "
        f"manifest ({(time.monotonic() - started) * 1000:.0f} ms)")
    return candidate, Fetched(artifact, entry, "local build")
